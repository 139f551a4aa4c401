"""Metrics from the middleware's ``on_event`` hook, in Prometheus format.

Run it: ``python examples/metrics_prometheus.py`` (needs ``uvicorn``), call
``/me`` a few times with the printed token, then read ``/metrics``.

The core reports what it does through ``on_event(name, data)``:

==================== ============================ ===============================
event                when                         data
==================== ============================ ===============================
``hit``              served from the local cache
``shared_hit``       served from the Redis cache
``coalesced``        joined a lookup in flight
``rejection_cached`` a remembered rejection
``resolved``         LWA vouched for a token      ``seconds``
``rejected``         LWA refused a token          ``seconds``
``upstream_error``   LWA failed (fail closed)     ``seconds``, ``reason``
``saturated``        every lookup slot was busy   ``seconds``
``breaker_open``     the circuit breaker opened
``stale_served``     stale identity on LWA error
==================== ============================ ===============================

This example counts every event in ``lwa_events_total{event=...}`` and times
upstream lookups in the ``lwa_upstream_seconds{outcome=...}`` histogram,
with ``prometheus_client`` if it is installed, else with a tiny in-memory
stand-in of the same shape (this project does not depend on it). The hook
runs on the request path: keep it cheap and never let it block.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lwa_middleware import LWAMiddleware, get_identity

try:
    import prometheus_client
except ImportError:  # optional: fall back to the in-memory stand-in
    prometheus_client = None

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


class _Child:
    """One labelled series: a counter value, or histogram buckets, count and sum."""

    def __init__(self, buckets: Sequence[float] | None) -> None:
        self.lock = threading.Lock()
        self.value = 0.0
        self.buckets = list(buckets or ())
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self.lock:
            self.value += amount

    def observe(self, value: float) -> None:
        with self.lock:
            self.value += 1
            self.sum += value
            index = bisect.bisect_left(self.buckets, value)
            for i in range(index, len(self.counts)):
                self.counts[i] += 1


class _Metric:
    """The part of ``prometheus_client.Counter``/``Histogram`` this example uses."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], kind: str) -> None:
        self.name, self.documentation, self.kind = name, documentation, kind
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], _Child] = {}
        self.lock = threading.Lock()

    def labels(self, **labels: str) -> _Child:
        key = tuple(str(labels[name]) for name in self.labelnames)
        child = self.children.get(key)
        if child is None:
            with self.lock:
                child = self.children.setdefault(
                    key, _Child(BUCKETS if self.kind == "histogram" else None)
                )
        return child

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} {self.kind}"]
        for key, child in sorted(self.children.items()):
            pairs = list(zip(self.labelnames, key, strict=True))
            if self.kind == "counter":
                lines.append(f"{self.name}_total{_labels(pairs)} {child.value}")
                continue
            for bound, count in zip(child.buckets, child.counts, strict=True):
                lines.append(f"{self.name}_bucket{_labels([*pairs, ('le', str(bound))])} {count}.0")
            lines.append(f"{self.name}_bucket{_labels([*pairs, ('le', '+Inf')])} {child.value}")
            lines.append(f"{self.name}_count{_labels(pairs)} {child.value}")
            lines.append(f"{self.name}_sum{_labels(pairs)} {child.sum}")
        return lines


class Metrics:
    """The ``on_event`` hook and the metrics it feeds.

    :param registry: a ``prometheus_client.CollectorRegistry`` (a fresh one by
        default, so several apps in one process do not clash); ignored
        without ``prometheus_client``.
    """

    def __init__(self, registry: Any = None) -> None:
        self.backend = "prometheus_client" if prometheus_client is not None else "in-memory"
        if prometheus_client is not None:
            self.registry = registry or prometheus_client.CollectorRegistry()
            self.events: Any = prometheus_client.Counter(
                "lwa_events", "LWA middleware events", ["event"], registry=self.registry
            )
            self.upstream: Any = prometheus_client.Histogram(
                "lwa_upstream_seconds",
                "Time spent asking LWA about a token",
                ["outcome"],
                buckets=BUCKETS,
                registry=self.registry,
            )
        else:
            self.events = _Metric("lwa_events", "LWA middleware events", ["event"], "counter")
            self.upstream = _Metric(
                "lwa_upstream_seconds",
                "Time spent asking LWA about a token",
                ["outcome"],
                "histogram",
            )

    def on_event(self, name: str, data: Mapping[str, Any]) -> None:
        """The middleware's hook: count the event, time upstream lookups."""
        self.events.labels(event=name).inc()
        seconds = data.get("seconds")
        if seconds is not None:
            self.upstream.labels(outcome=name).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        if prometheus_client is not None:
            return bytes(prometheus_client.generate_latest(self.registry))
        lines = [*self.events.render(), *self.upstream.render()]
        return ("\n".join(lines) + "\n").encode()


def create_app(
    api_base_url: str | None = None, client_id: str | None = None, metrics: Metrics | None = None
) -> LWAMiddleware:
    """The example app; its :class:`Metrics` is ``app.app.state.metrics``.

    ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``.
    """
    metrics = metrics or Metrics()

    async def me(request: Request) -> JSONResponse:
        identity = get_identity(request)
        assert identity is not None
        return JSONResponse(identity.to_dict())

    async def exposition(request: Request) -> Response:
        return Response(metrics.render(), media_type=TEXT_FORMAT)

    app = Starlette(routes=[Route("/me", me), Route("/metrics", exposition)])
    app.state.metrics = metrics
    return LWAMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        # Scrapers carry no LWA token; protect /metrics at the network level.
        routes={"/metrics": "public"},
        on_event=metrics.on_event,
    )


def main() -> None:
    import uvicorn
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    app = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/me")
    print(f"metrics: http://{HOST}:{port()}/metrics ({app.app.state.metrics.backend})", flush=True)
    uvicorn.run(app, host=HOST, port=port(), log_level="warning")


if __name__ == "__main__":
    main()
