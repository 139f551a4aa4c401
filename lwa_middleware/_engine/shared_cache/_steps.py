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


@dataclass(slots=True)
class _Waiting:
    """A read's wait on another worker's lease: until when, on which holder
    (its fencing id), and whether subscribed to its publish yet."""

    deadline: float | None = None
    holder: Any = None
    subscribed: bool = False

    def step(
        self, now: float, reply: Any, limit: float, channel: str
    ) -> _Subscribe | _Listen | None:
        """The next step of the wait, told the lease's PTTL and holder (in a
        read's ``reply``), or ``None`` once it is over: ask LWA. It lasts as
        long as the lease says its holder may take, at most ``limit``."""
        left = int(reply[1]) / 1000 if len(reply) > 1 else limit
        current = reply[2] if len(reply) > 2 else None
        if self.deadline is None or current != self.holder:
            # A new holder (the last one's lease ran out): its deadline.
            self.holder = current
            self.deadline = now + max(0.0, min(left, limit))
        if now >= self.deadline:
            return None
        if not self.subscribed:
            # Subscribe, then read again: a publish between the two reads
            # cannot be missed.
            self.subscribed = True
            return _Subscribe(channel)
        return _Listen(self.deadline - now)


_T = TypeVar("_T")
_Plan = Generator[_Call | _Sleep | _Subscribe | _Listen, Any, _T]


def _nothing() -> _Plan[None]:
    """A plan with no round trip, for an operation with nothing to do."""
    return None
    yield  # a generator, so the drivers can run it like any plan
