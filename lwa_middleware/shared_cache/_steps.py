"""The steps a plan yields, and the type of a plan.

A plan is a generator: it yields :class:`_Call` (one Redis round trip, sent
back its reply; a failed one is thrown into the plan), :class:`_Sleep` (a
pause, sent back ``None``), and :class:`_Subscribe`/:class:`_Listen` (wait
for a lease holder's "done"), and returns its result. Like :mod:`...flow`, the
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


@dataclass(frozen=True, slots=True)
class _Subscribe:
    """Subscribe to ``channel`` (a lease key: its holder publishes there when
    it is done) for the rest of the plan; sent ``None``. The driver closes the
    subscription when the plan ends."""

    channel: str


@dataclass(frozen=True, slots=True)
class _Listen:
    """Wait up to ``seconds`` for a message on the subscribed channel; sent
    whether one came (a failure is thrown in, like a round trip's)."""

    seconds: float


_T = TypeVar("_T")
_Plan = Generator[_Call | _Sleep | _Subscribe | _Listen, Any, _T]


def _nothing() -> _Plan[None]:
    """A plan with no round trip, for an operation with nothing to do."""
    return None
    yield  # a generator, so the drivers can run it like any plan
