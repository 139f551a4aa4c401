"""Whether, and how hard, to ask Redis: back-off after a failure, the
durable retries of revoke() and invalidate(), the failure log throttle, and
the counters tests and metrics read.

A mixin of the plans' state. Its two wrappers are plans themselves
(:meth:`_Health._guarded` for a request's lookups, :meth:`_Health._durable`
for writes that must land), so the drivers have only one way to run
anything. Every reading is of the injected monotonic clock, so a test can
step past :data:`BACKOFF` or a retry pause without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import redis

from ..errors import SharedCacheError
from ._steps import _T, _Plan, _Sleep

logger = logging.getLogger("lwa_middleware.shared_cache")

#: Seconds Redis is skipped after a failure.
BACKOFF: Final = 1.0
#: Failures are logged at most once per this many seconds.
LOG_INTERVAL: Final = 30.0
_POOL_EXHAUSTED: Final = "No connection available."
#: revoke() and invalidate(): attempts, each attempt's deadline, the whole
#: budget and the first pause between attempts (doubled each time), in seconds.
DURABLE_ATTEMPTS: Final = 3
DURABLE_TIMEOUT: Final = 0.5
DURABLE_BUDGET: Final = 1.0
DURABLE_BACKOFF: Final = 0.05


class _Health:
    """Back-off and throttled logging, on the monotonic ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._skip_until = 0.0
        self._next_log = 0.0
        self._down = False
        #: Counters, for tests and metrics: Redis errors, calls skipped while
        #: backing off.
        self.errors = 0
        self.skipped = 0

    def _guarded(self, plan: _Plan[_T], default: _T) -> _Plan[_T]:
        """``plan``, or ``default`` while backing off or when it fails."""
        if not self._usable():
            plan.close()
            return default
        try:
            result = yield from plan
        except Exception as exc:  # never let Redis fail a request
            self._failed(exc)
            return default
        self._succeeded()
        return result

    def _durable(self, what: str, make_plan: Callable[[], _Plan[None]]) -> _Plan[None]:
        """Run an idempotent plan even while backing off, with DURABLE_ATTEMPTS
        attempts within DURABLE_BUDGET seconds; raise SharedCacheError if all fail."""
        deadline = self._clock() + DURABLE_BUDGET
        error: Exception | None = None
        for attempt in range(DURABLE_ATTEMPTS):
            try:
                yield from make_plan()
            except Exception as exc:
                error = exc
            else:
                self._succeeded()
                return None
            pause = DURABLE_BACKOFF * 2**attempt
            if self._clock() + pause >= deadline:
                break
            yield _Sleep(pause)
        raise self._durable_failed(what, error)

    def _usable(self) -> bool:
        if self._skip_until and self._clock() < self._skip_until:
            self.skipped += 1
            return False
        return True

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            logger.info("lwa_middleware: the shared cache (Redis) answers again")

    def _failed(self, exc: Exception) -> bool:
        """Count and log a failure; back off (and return true) unless it was
        only this process running out of connections."""
        self.errors += 1
        if isinstance(exc, redis.ConnectionError) and str(exc) == _POOL_EXHAUSTED:
            # Every connection is busy: Redis is fine, this process is
            # loaded. Skip Redis for this request only.
            self._log("no Redis connection was free in time; treating as a miss")
            return False
        self._down = True
        self._skip_until = self._clock() + BACKOFF
        reason = str(exc)[:200] or "no detail"
        self._log(
            f"the shared cache (Redis) failed ({type(exc).__name__}: {reason}); "
            f"treating it as a miss and skipping it for {BACKOFF:g} s"
        )
        return True

    def _durable_failed(self, what: str, exc: Exception | None) -> SharedCacheError:
        if exc is not None:
            self._failed(exc)
        logger.error(
            "lwa_middleware: %s could not be written to the shared cache (Redis); "
            "it holds in this process only",
            what,
        )
        return SharedCacheError(
            f"The {what} could not be written to the shared cache (Redis) in time; "
            "it holds in this process only."
        )

    def _log(self, message: str) -> None:
        now = self._clock()
        if now >= self._next_log:
            self._next_log = now + LOG_INTERVAL
            logger.warning("lwa_middleware: %s", message)
