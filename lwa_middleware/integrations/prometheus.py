"""A Prometheus collector of a middleware's counters, read at scrape time (issue 21).

Needs ``prometheus_client`` (the ``prometheus`` extra)::

    from prometheus_client import REGISTRY
    from lwa_middleware.integrations.prometheus import LWACollector

    REGISTRY.register(LWACollector(middleware))

Nothing is counted twice and nothing runs on the request path: the collector
reads the middleware's counters (and the circuit breaker) when
Prometheus scrapes. Several middlewares in one process each get a collector
with their own ``const_labels`` (``{"app": "api"}``) to tell them apart.

=========================================  =========  ===========================================
metric                                     type       meaning
=========================================  =========  ===========================================
``lwa_lookups_total``                      counter    lookups that asked LWA
``lwa_cache_hits_total``                   counter    requests served from the in-process cache
``lwa_cache_misses_total``                 counter    requests that needed a lookup
``lwa_shared_cache_hits_total``            counter    lookups answered by the Redis cache
``lwa_lookups_joined_total``               counter    requests that joined a lookup in flight
``lwa_stale_served_total``                 counter    stale identities served while LWA failed
``lwa_rejections_total``                   counter    tokens LWA rejected
``lwa_rejections_cached_total``            counter    requests refused from a remembered rejection
``lwa_upstream_errors_total{reason}``      counter    LWA failures, by reason (``certificate``, …)
``lwa_saturated_total``                    counter    lookups shed: every in-flight slot busy
``lwa_breaker_open``                       gauge      1 while the circuit breaker fails fast
``lwa_breaker_opened_total``               counter    times the breaker opened
``lwa_redis_errors_total``                 counter    failed Redis round trips
``lwa_redis_faults_total``                 counter    of which configuration/topology faults
``lwa_lookup_duration_seconds``            histogram  seconds of each lookup that asked LWA
=========================================  =========  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lwa_middleware.integrations.prometheus needs prometheus_client: "
        "pip install 'lwa-middleware[prometheus]'"
    ) from exc

from .._engine.flow import FAILURE_CODES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .._engine.resolver import Resolver

__all__ = ["LWACollector"]

#: ``(metric name without _total, Stats field, help)`` of the plain counters.
_COUNTERS = (
    ("lwa_lookups", "lookups", "Lookups that asked LWA."),
    ("lwa_cache_hits", "hits", "Requests served from the in-process cache."),
    ("lwa_cache_misses", "misses", "Requests that needed a lookup."),
    ("lwa_shared_cache_hits", "shared_hits", "Lookups answered by the shared (Redis) cache."),
    ("lwa_lookups_joined", "coalesced", "Requests that joined a lookup already in flight."),
    ("lwa_stale_served", "stale_served", "Stale identities served while LWA failed."),
    ("lwa_rejections", "rejected", "Tokens LWA rejected."),
    ("lwa_rejections_cached", "rejections_cached", "Requests refused from a remembered rejection."),
    ("lwa_saturated", "saturated", "Lookups shed because every in-flight slot stayed busy."),
    ("lwa_breaker_opened", "breaker_opened", "Times the circuit breaker opened."),
    ("lwa_redis_errors", "redis_errors", "Shared cache (Redis) round trips that failed."),
    ("lwa_redis_faults", "redis_faults", "Redis configuration or topology faults."),
)


class LWACollector(Collector):
    """The metrics of one middleware (ASGI, WSGI, or the Django integration's).

    :param middleware: an ``LWAMiddleware``, ``LWAWSGIMiddleware``, the Django
        middleware, or their ``resolver``.
    :param const_labels: labels put on every metric (to tell middlewares apart).
    """

    def __init__(self, middleware: Any, const_labels: Mapping[str, str] | None = None) -> None:
        resolver = getattr(middleware, "resolver", middleware)
        if not hasattr(resolver, "stats") or not hasattr(resolver, "breaker"):
            raise TypeError(
                "LWACollector needs a middleware of lwa_middleware (or its resolver), "
                f"not {type(middleware).__name__}"
            )
        self._resolver: Resolver = resolver
        self._labels = dict(const_labels or {})

    def describe(self) -> Iterator[Metric]:
        # Without describe(), registering calls collect(); with it, the
        # registry checks names for clashes without reading the counters.
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        stats = self._resolver.stats
        names, values = list(self._labels), list(self._labels.values())
        for name, attribute, doc in _COUNTERS:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, getattr(stats, attribute))
            yield family
        errors = CounterMetricFamily(
            "lwa_upstream_errors", "LWA failures, by reason.", labels=[*names, "reason"]
        )
        reasons = stats.upstream_error_reasons
        for reason in (*FAILURE_CODES, *sorted(set(reasons) - set(FAILURE_CODES))):
            errors.add_metric([*values, reason], reasons.get(reason, 0))
        yield errors
        breaker = GaugeMetricFamily(
            "lwa_breaker_open", "1 while the circuit breaker fails fast, else 0.", labels=names
        )
        breaker.add_metric(values, 1.0 if self._resolver.breaker.is_open else 0.0)
        yield breaker
        latency = stats.lookup_latency
        histogram = HistogramMetricFamily(
            "lwa_lookup_duration_seconds",
            "Seconds of each lookup that asked LWA (answered, rejected or failed).",
            labels=names,
        )
        histogram.add_metric(
            values,
            [(_le(bound), float(count)) for bound, count in latency.cumulative()],
            sum_value=latency.total,
        )
        yield histogram


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
