"""The suite's one fake clock, for anything that takes ``clock=``.

Every clock-dependent part of the library (caches, breaker, warning limiter,
resolver deadlines, sign-in sessions and leases) and the emulator
(``LWAEmulator(clock=...)``) read time through an injected clock, so a test
holds time still during a burst (no probe falls due, however slow the machine)
and then steps past a TTL, a cooldown or a token's lifetime without sleeping.
"""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Callable like ``time.monotonic``; starts at ``start`` and moves by :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    @classmethod
    def starting_now(cls) -> FakeClock:
        """Epoch seconds, for clocks read as ``time.time`` (session and token expiry)."""
        return cls(time.time())

    @property
    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._now += seconds
