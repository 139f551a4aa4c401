"""A clock that only moves when a test says so, for anything that takes ``clock=``.

Every clock-dependent part of the library (caches, breaker, warning limiter,
resolver deadlines) reads time through ``settings.clock``, so a test holds time
still during a burst (no probe falls due, however slow the machine) and then
steps past a TTL or a cooldown without sleeping.
"""

from __future__ import annotations

import threading


class FakeClock:
    """Callable like ``time.monotonic``; starts at ``start`` and moves by :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._now += seconds
