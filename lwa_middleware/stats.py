"""Counters a middleware keeps since it started, for metrics and tests."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Stats"]


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

    def snapshot(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
