"""A small circuit breaker, so an LWA outage fails fast instead of queueing.

After ``threshold`` consecutive upstream failures the breaker *opens*: for
``cooldown`` seconds every lookup is refused at once (503, with the seconds
left as ``Retry-After``). Then one lookup is let through as a *probe*; its
success closes the breaker, its failure opens it again. Answers from LWA that
reject a token are successes here: LWA is up.
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Thread-safe; cheap enough to consult on every cache miss.

    :param threshold: consecutive failures that open the breaker.
    :param cooldown: seconds it stays open before a probe.
    """

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
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
            now = time.monotonic()
            left = self._opened_at + self.cooldown - now
            # A probe that never reported (its request was cancelled) must not
            # keep the breaker open for ever: after another cooldown, probe again.
            if left <= 0 and (not self._probing or left <= -self.cooldown):
                self._probing = True
                self._opened_at = now - self.cooldown
                return None
            return max(1, math.ceil(left))

    def success(self) -> None:
        if self._failures or self._opened_at is not None:
            with self._lock:
                self._failures = 0
                self._opened_at = None
                self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = time.monotonic()
                self._probing = False
