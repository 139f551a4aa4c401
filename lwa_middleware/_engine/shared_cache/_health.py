"""Whether, and how hard, to ask Redis: a breaker after a failure, the
durable retries of revoke() and invalidate(), the failure log throttle, the
classification of configuration faults, and the counters tests and metrics read.

The breaker: a failure opens it for a back-off that starts at :data:`BACKOFF`
and doubles with each failed probe up to :data:`BACKOFF_MAX`, with jitter
(each pause is drawn in its upper half, so workers that failed together do
not come back together). When the pause is over the breaker is *half-open*:
one request probes Redis while the others still skip it; the probe's success
closes the breaker, its failure opens it again for the next, longer pause.
While the breaker is not closed the shared cache is *degraded*
(:attr:`_Health.degraded`): the resolver then keeps its copies for the
no-Redis lifetime (``cache_ttl``) instead of ``local_cache_ttl``, so a
Redis outage does not turn into an LWA flood.

Faults that are configuration or topology, not an outage (wrong password,
TLS verification, a command the server refuses, OOM, a read-only replica,
a cluster redirect), are named in one log line with the fix
(:data:`FAULTS`), counted apart and reported through ``on_event``.

A mixin of the plans' state. Its two wrappers are plans themselves
(:meth:`_Health._guarded` for a request's lookups, :meth:`_Health._durable`
for writes that must land), so the drivers have only one way to run
anything. Every reading is of the injected monotonic clock, so a test can
step past :data:`BACKOFF` or a retry pause without sleeping.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import Callable
from typing import Any, Final

import redis

from .._observe import fields
from ..errors import SharedCacheError
from ._steps import _T, _Plan, _Sleep
from ._topology import WrongClient

logger = logging.getLogger("lwa_middleware.shared_cache")

#: Seconds Redis is skipped after a first failure (at most; jitter draws the
#: pause in its upper half), doubled by each failed probe up to BACKOFF_MAX.
BACKOFF: Final = 1.0
BACKOFF_MAX: Final = 4.0
#: Seconds a half-open probe may take before another request may probe.
PROBE_WINDOW: Final = 2.0
#: Seconds after a process's first successful round trip during which it is
#: still starting (:attr:`_Health.warm`): on a Cluster its round trips then
#: take the Cluster's budget, not the reply deadline, as each first call to
#: a node connects and loads scripts there (issue 24, item 6).
COLD_START: Final = 10.0

#: The least a Redis ACL user of the shared cache needs: its keys and channels
#: (``lwa:v1:*``: lease keys are channels too) and the commands it runs (the
#: scripts' own calls included, which Redis 7 checks against the user):
#: ``ACL SETUSER lwa on >password`` followed by these.
ACL_RULES: Final = (
    "resetkeys resetchannels ~lwa:v1:* &lwa:v1:* -@all "
    "+evalsha +script|load +get +set +del +pttl +incr +publish +subscribe +ping "
    "+xadd +xrange"
)
#: What a Redis Cluster's ACL user needs besides: redis-py's cluster client
#: reads the slot map (CLUSTER SLOTS) and the command table (COMMAND).
CLUSTER_ACL_RULES: Final = "+cluster|slots +command"

# What a request does while a fault lasts, the last words of its log line.
# A fault opens the breaker: Redis is skipped. A full Redis (a lookup's own
# write refused) does not: revocations are still written and read.
BREAKER_MEANWHILE: Final = "Requests go on without Redis meanwhile."
FULL_MEANWHILE: Final = (
    "Meanwhile lookups go on unshared (identities and leases are not written; "
    "each worker asks LWA), and revocations are still written and read."
)

#: Configuration and topology faults: (cause, fix), by the name
#: :func:`classify` gives. Logged once per LOG_INTERVAL each, one line.
FAULTS: Final = {
    "auth": (
        "Redis refused the credentials (AUTH/NOAUTH/WRONGPASS)",
        "put the right user and password in redis_url (redis://user:password@host/0)",
    ),
    "noperm": (
        "the Redis ACL user may not run a command or touch a key (NOPERM)",
        f"give the user at least: ACL SETUSER <user> {ACL_RULES} "
        f"(on a Redis Cluster also {CLUSTER_ACL_RULES})",
    ),
    "tls": (
        "the Redis server's TLS certificate did not verify",
        "give the CA with ?ssl_ca_certs=/path/ca.pem in the rediss:// URL, or fix the host name",
    ),
    "unknown_command": (
        "Redis does not know a command this cache needs (EVAL, EVALSHA, XADD, PUBLISH, ...)",
        "use Redis >= 5 (7 tested) and do not rename or disable those commands",
    ),
    "oom": (
        "Redis is out of memory and refuses writes (OOM, maxmemory reached)",
        "raise maxmemory and keep maxmemory-policy noeviction: revocations are still written "
        "(past maxmemory), identities and leases are not (sharing pauses until there is room); "
        "allkeys-* and volatile-* policies may evict revocations",
    ),
    "readonly": (
        "redis_url points at a read-only replica (READONLY), e.g. after a failover",
        "point redis_url at the primary (or a Sentinel URL); reconnecting now",
    ),
    "moved": (
        "redis_url points at one node of a Redis Cluster (MOVED/ASK) as if it were a plain Redis",
        "use redis_url='redis+cluster://host:port[,host:port...]' (rediss+cluster:// for TLS), "
        "or a redis.cluster.RedisCluster from redis_client",
    ),
    "crossslot": (
        "Redis Cluster refused keys of two slots in one command (CROSSSLOT)",
        "use redis_url='redis+cluster://...' (or a RedisCluster from redis_client); every "
        "script of this cache touches one slot, so report it if it persists",
    ),
    "client": (
        "redis_client returned something that is not a redis-py client of the kind asked for "
        "(or one decoding its replies)",
        "return a new redis.Redis or redis.cluster.RedisCluster for redis_client(asyncio=False) "
        "and a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster for asyncio=True, "
        "without decode_responses=True",
    ),
}
#: Failures are logged at most once per this many seconds.
LOG_INTERVAL: Final = 30.0
_POOL_EXHAUSTED: Final = "No connection available."
#: revoke() and invalidate(): attempts, each attempt's deadline, the whole
#: budget and the first pause between attempts (doubled each time), in seconds.
DURABLE_ATTEMPTS: Final = 3
DURABLE_TIMEOUT: Final = 0.5
DURABLE_BUDGET: Final = 1.0
DURABLE_BACKOFF: Final = 0.05

#: Jitter of its own: the global generator is the application's (and its
#: tests', which may seed it or, like hypothesis, watch who draws from it).
_JITTER = random.Random()


#: The fault each redis-py exception type means, first match wins.
_FAULT_TYPES: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (redis.ReadOnlyError, "readonly"),
    (redis.AuthenticationError, "auth"),
    (redis.exceptions.NoPermissionError, "noperm"),
    (redis.exceptions.OutOfMemoryError, "oom"),
    (redis.exceptions.MovedError, "moved"),
    (redis.exceptions.AskError, "moved"),
    (redis.exceptions.ClusterCrossSlotError, "crossslot"),
)
#: The fault each error code heading a Redis error reply means.
_FAULT_CODES: Final = {
    "WRONGPASS": "auth",
    "NOPERM": "noperm",
    "OOM": "oom",
    "READONLY": "readonly",
    "MOVED": "moved",
    "ASK": "moved",
    "CROSSSLOT": "crossslot",
}


def classify(exc: BaseException) -> str | None:
    """The :data:`FAULTS` name of a configuration or topology fault, or
    ``None`` for an outage (refused, reset, timed out) or anything else."""
    if isinstance(exc, WrongClient):
        return "client"
    cause = exc.__cause__
    if isinstance(exc, redis.exceptions.RedisClusterException) and cause is not None:
        # The cluster client found no node that let it in: its reason (a
        # wrong password, a missing ACL permission) is the node's error.
        found = classify(cause)
        if found is not None:
            return found
    for kind, fault in _FAULT_TYPES:
        if isinstance(exc, kind):
            return fault
    if _tls_refused(exc):
        return "tls"
    if isinstance(exc, redis.ResponseError):
        return _reply_fault(str(exc))
    return None


def _tls_refused(exc: BaseException) -> bool:
    """Whether certificate verification failed: the TLS error is the cause
    of redis-py's ConnectionError (looked for four links down)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError) or (
            "CERTIFICATE_VERIFY_FAILED" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reply_fault(text: str) -> str | None:
    """The fault a Redis error reply names, by its leading code."""
    head = text.split(" ", 1)[0].upper()
    if "AUTH" in head:  # NOAUTH, and AUTH errors of other spellings
        return "auth"
    if "user executing the script can't" in text:
        # (Redis 7 refuses a script's own call without the NOPERM code.)
        return "noperm"
    fault = _FAULT_CODES.get(head)
    if fault is None and "unknown command" in text.lower():
        return "unknown_command"
    return fault


class _Health:
    """The breaker and throttled logging, on the monotonic ``clock``.

    :param report: called as ``report(event, **data)`` for the stats and
        ``on_event`` of the middleware (``redis_error``, ``redis_fault``,
        ``redis_breaker_open``, ``redis_recovered``).
    :param jitter: a ``random.random``-like draw, for the back-off's jitter.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        report: Callable[..., None] | None = None,
        jitter: Callable[[], float] = _JITTER.random,
    ) -> None:
        self._clock = clock
        self._report = report
        self._jitter = jitter
        self._skip_until = 0.0
        self._next_log = 0.0
        self._fault_logs: dict[str, float] = {}
        self._down = False
        #: Consecutive failures while open (0: closed): the back-off's exponent.
        self._failures = 0
        #: A half-open probe is out until then: everyone else keeps skipping
        #: (bounded, so a probe that never reports back, a cancelled task,
        #: cannot keep Redis skipped).
        self._probe_until = 0.0
        #: When this process's cold start is over (COLD_START after its first success).
        self._warm_at = math.inf
        #: Counters, for tests and metrics: Redis errors, calls skipped while
        #: the breaker is open, configuration faults by name, READONLY reconnects.
        self.errors = 0
        self.skipped = 0
        self.faults: dict[str, int] = {}

    @property
    def degraded(self) -> bool:
        """Whether Redis is not usable now (the breaker is open or half-open)."""
        return self._down

    @property
    def warm(self) -> bool:
        """Whether this process's first contact with Redis is over
        (:data:`COLD_START` seconds after its first success): its connections
        made, its scripts loaded on the nodes it met."""
        return self._clock() >= self._warm_at

    def _emit(self, event: str, **data: Any) -> None:
        if self._report is not None:
            self._report(event, **data)

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
        if not self._down:
            return True
        now = self._clock()
        if now < self._skip_until or now < self._probe_until:
            self.skipped += 1
            return False
        # Half-open: this call is the probe; the others skip until it answers.
        self._probe_until = now + PROBE_WINDOW
        return True

    def _succeeded(self) -> None:
        self._probe_until = 0.0
        if self._warm_at == math.inf:
            self._warm_at = self._clock() + COLD_START
        if self._down:
            self._down = False
            self._failures = 0
            self._skip_until = 0.0
            logger.info(
                "the shared cache (Redis) answers again", extra=fields("redis_recovered")
            )
            self._emit("redis_recovered")

    def _failed(self, exc: Exception) -> bool:
        """Count and log a failure; back off (and return true) unless it was
        only this process running out of connections."""
        self.errors += 1
        self._probe_until = 0.0
        if isinstance(exc, redis.exceptions.MaxConnectionsError) or (
            isinstance(exc, redis.ConnectionError) and str(exc) == _POOL_EXHAUSTED
        ):
            # Every connection is busy: Redis is fine, this process is
            # loaded. Skip Redis for this request only.
            self._log("no Redis connection was free in time; treating as a miss")
            self._emit("redis_error", reason="pool exhausted")
            return False
        fault = classify(exc)
        pause = min(BACKOFF_MAX, BACKOFF * 2**self._failures)
        pause *= 0.5 + 0.5 * self._jitter()
        self._failures += 1
        opened = not self._down
        self._down = True
        self._skip_until = self._clock() + pause
        if fault is not None:
            self.faults[fault] = self.faults.get(fault, 0) + 1
            self._log_fault(fault)
            self._emit("redis_fault", cause=fault)
        else:
            reason = str(exc)[:200] or "no detail"
            self._log(
                f"the shared cache (Redis) failed ({type(exc).__name__}: {reason}); "
                f"treating it as a miss and skipping it for {pause:.2g} s"
            )
            self._emit("redis_error", reason=type(exc).__name__)
        if opened:
            self._emit("redis_breaker_open", seconds=pause)
        return True

    def _full(self) -> None:
        """Redis refused a write the lookup could do without (a lease, an
        identity) for want of memory: logged and counted as the ``oom``
        fault, but the breaker stays closed, so revocations are still read."""
        self.faults["oom"] = self.faults.get("oom", 0) + 1
        self._log_fault("oom", FULL_MEANWHILE)

    def _log_fault(self, fault: str, meanwhile: str = BREAKER_MEANWHILE) -> None:
        now = self._clock()
        if now < self._fault_logs.get(fault, -float("inf")):
            return
        self._fault_logs[fault] = now + LOG_INTERVAL
        cause, fix = FAULTS[fault]
        logger.error(
            "shared cache misconfigured [%s]: %s; fix: %s. %s",
            fault,
            cause,
            fix,
            meanwhile,
            extra=fields("redis_fault", reason=fault),
        )

    def _durable_failed(self, what: str, exc: Exception | None) -> SharedCacheError:
        if exc is not None:
            self._failed(exc)
        logger.error(
            "%s could not be written to the shared cache (Redis); "
            "it holds in this process only",
            what,
            extra=fields("redis_write_failed"),
        )
        return SharedCacheError(
            f"The {what} could not be written to the shared cache (Redis) in time; "
            "it holds in this process only."
        )

    def _log(self, message: str) -> None:
        now = self._clock()
        if now >= self._next_log:
            self._next_log = now + LOG_INTERVAL
            logger.warning("%s", message, extra=fields("redis_error"))
