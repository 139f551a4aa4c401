"""The suite's one fake clock, for anything that takes ``clock=``.

Every clock-dependent part of the library (caches, breaker, warning limiter,
resolver deadlines, sign-in sessions and leases) and the emulator
(``LWAEmulator(clock=...)``) read time through an injected clock, so a test
holds time still during a burst (no probe falls due, however slow the machine)
and then steps past a TTL, a cooldown or a token's lifetime without sleeping.

It is a clock as ``clock=`` takes one everywhere (like the ``time`` module:
``monotonic()`` and ``time()``), so one ``FakeClock`` can serve the
middleware (which reads ``monotonic()``), ``SignIn`` and the emulator (which
read ``time()``) at once. Both faces give the same number: only their
differences matter to the middleware, and a test that compares the epoch face
with real time (a TTL in Redis) starts it at :meth:`starting_now`.
"""

from __future__ import annotations

import threading
import time


class FakeClock:
    """A clock like the ``time`` module; starts at ``start`` and moves by :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    @classmethod
    def starting_now(cls) -> FakeClock:
        """At the real epoch seconds: for a ``time()`` compared with real time
        (session ends stored in Redis with a TTL)."""
        return cls(time.time())

    @property
    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now

    def __call__(self) -> float:
        """The same number, for tests that read the clock themselves."""
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._now += seconds
