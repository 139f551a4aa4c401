"""Counters a middleware keeps since it started, for metrics and tests."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields

__all__ = ["LATENCY_BUCKETS", "Latency", "Stats"]

#: Upper bounds (seconds) of the lookup latency histogram: an LWA round trip
#: is tens of milliseconds, the default deadline 5 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Latency:
    """A histogram of lookup seconds, read at scrape time (``prometheus.py``).

    Unlocked increments, like :class:`Stats`: an observation lost to a race
    costs a metric a count, never a request anything.
    """

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        #: Per bucket of :data:`LATENCY_BUCKETS`, and one more for +Inf.
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)``, ending with ``(inf, count)``."""
        running, out = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _not_a_counter() -> dict[str, bool]:
    return {"counter": False}


@dataclass
class Stats:
    """Counters since start. Reads are cheap; writes are unlocked increments,
    exact under asyncio and the GIL's usual scheduling."""

    #: Requests answered from the in-process cache.
    hits: int = 0
    #: Lookups that asked LWA (``lookups`` counts the same; kept for metrics).
    misses: int = 0
    #: Requests that joined a lookup already in flight.
    coalesced: int = 0
    #: Identities served stale while LWA failed (``stale_if_error``).
    stale_served: int = 0
    #: Requests refused from a remembered rejection, without asking LWA.
    rejections_cached: int = 0
    #: Lookups answered by the shared (Redis) cache.
    shared_hits: int = 0
    lookups: int = 0
    #: Lookups that failed because LWA did (timeouts, 5xx, nonsense).
    upstream_errors: int = 0
    #: Lookups shed because every in-flight slot stayed busy (not LWA's fault).
    saturated: int = 0
    #: Times the circuit breaker went from closed to open.
    breaker_opened: int = 0
    #: Tokens LWA rejected.
    rejected: int = 0
    #: Revocations/invalidations from other workers applied here as pushed.
    fleet_pushed: int = 0
    #: ... applied here from the replay stream, after a reconnect.
    fleet_replayed: int = 0
    #: Times the replay stream had a gap, so every identity in memory was dropped.
    fleet_resyncs: int = 0
    #: Shared cache (Redis) round trips that failed, configuration faults included.
    redis_errors: int = 0
    #: ... of which configuration or topology faults (AUTH, TLS, OOM, READONLY, ...).
    redis_faults: int = 0
    #: Times the Redis breaker went from closed to open (the cache degraded).
    redis_breaker_opened: int = 0
    #: Pools dropped and reconnected because Redis answered READONLY (failover).
    redis_reconnects: int = 0
    #: Seconds spent waiting on LWA, summed.
    upstream_seconds: float = 0.0
    #: ``upstream_errors`` by reason (``flow.FAILURE_CODES``: ``certificate``, ``timeout``…).
    upstream_error_reasons: dict[str, int] = field(
        default_factory=dict, metadata=_not_a_counter()
    )
    #: Seconds of every lookup that asked LWA (answered, rejected or failed).
    lookup_latency: Latency = field(default_factory=Latency, metadata=_not_a_counter())

    def snapshot(self) -> dict[str, float]:
        """The counters (not the per-reason table nor the histogram)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("counter", True)
        }

    def upstream_error(self, reason: str | None) -> None:
        """Count one upstream error, by reason."""
        self.upstream_errors += 1
        reason = reason or "transport"
        self.upstream_error_reasons[reason] = self.upstream_error_reasons.get(reason, 0) + 1
