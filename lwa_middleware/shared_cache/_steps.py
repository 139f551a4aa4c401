"""The steps a plan yields, and the type of a plan.

A plan is a generator: it yields :class:`_Call` (one Redis round trip, sent
back its reply; a failed one is thrown into the plan) and :class:`_Sleep` (a
pause, sent back ``None``), and returns its result. Like :mod:`...flow`, the
logic is written once this way and the sync and async drivers only carry it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class _Call:
    """One Redis round trip: a script of :data:`._scripts.SCRIPTS`, or ``"delete"`` (DEL keys)."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Sleep:
    """A pause, in seconds, before the plan goes on (it is sent ``None``)."""

    seconds: float


_T = TypeVar("_T")
_Plan = Generator[_Call | _Sleep, Any, _T]


def _nothing() -> _Plan[None]:
    """A plan with no round trip, for an operation with nothing to do."""
    return None
    yield  # a generator, so the drivers can run it like any plan
