"""A small circuit breaker, so an LWA outage fails fast instead of queueing.

After ``threshold`` consecutive upstream failures the breaker *opens*: for
``cooldown`` seconds every lookup is refused at once (503, with the seconds
left as ``Retry-After``). Then one lookup is let through as a *probe*; its
success closes the breaker, its failure opens it again. Answers from LWA that
reject a token are successes here: LWA is up. So is this process being too
busy to ask (:class:`~.errors.Saturated`): that is never reported here at all.

Both classes read time through an injected ``clock`` (``time.monotonic`` by
default), so tests can hold time still or step past a cooldown without
sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker", "Throttle"]

Clock = Callable[[], float]


class CircuitBreaker:
    """Thread-safe; cheap enough to consult on every cache miss.

    :param threshold: consecutive failures that open the breaker.
    :param cooldown: seconds it stays open before a probe.
    :param clock: monotonic seconds.
    """

    def __init__(self, threshold: int, cooldown: float, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> int | None:
        """``None`` to go ahead, else whole seconds until a retry makes sense."""
        if self._opened_at is None:
            return None
        with self._lock:
            if self._opened_at is None:
                return None
            now = self._clock()
            left = self._opened_at + self.cooldown - now
            # A probe that never reported (its request was cancelled) must not
            # keep the breaker open for ever: after another cooldown, probe again.
            if left <= 0 and (not self._probing or left <= -self.cooldown):
                self._probing = True
                self._opened_at = now - self.cooldown
                return None
            return max(1, math.ceil(left))

    def refusing(self) -> int | None:
        """Like :meth:`check`, but only looks: never claims the probe.

        Whole seconds until the cooldown ends while the breaker is open and no
        probe can be due, else ``None`` (closed, or :meth:`check` decides). A
        lookup asks this before it queues for an in-flight slot, so the
        breaker's refusals never wait behind other lookups (and never turn
        into ``Saturated`` on a busy machine).
        """
        opened = self._opened_at
        if opened is None:
            return None
        left = opened + self.cooldown - self._clock()
        return max(1, math.ceil(left)) if left > 0 else None

    def success(self) -> None:
        if self._failures or self._opened_at is not None:
            with self._lock:
                self._failures = 0
                self._opened_at = None
                self._probing = False

    def failure(self) -> bool:
        """Count a failure; ``True`` when it is the one that opened a closed breaker.

        A failed probe, or a late failure while open, restarts the cooldown
        but is not a new opening: metrics count outages, not failures.
        """
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                opened = self._opened_at is None
                self._opened_at = self._clock()
                self._probing = False
                return opened
            return False


class Throttle:
    """Lets an event through at most once per ``interval`` and counts the rest.

    Used for log lines: an outage or a flood fails thousands of lookups a
    second, and one warning per interval, saying how many it stands for,
    tells an operator as much without drowning the log.
    """

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: float | None = None
        self._suppressed = 0

    def allow(self) -> int | None:
        """``None`` to stay quiet, else how many were held back since the last one."""
        with self._lock:
            now = self._clock()
            if self._next is not None and now < self._next:
                self._suppressed += 1
                return None
            self._next = now + self.interval
            held, self._suppressed = self._suppressed, 0
            return held
