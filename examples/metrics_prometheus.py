"""Prometheus metrics of the middleware, read at scrape time by its collector.

Run it: ``python examples/metrics_prometheus.py`` (needs ``uvicorn`` and the
``prometheus`` extra: ``pip install 'lwa-middleware[prometheus]'``), call
``/me`` a few times with the printed token, then read ``/metrics``.

:class:`lwa_middleware.integrations.prometheus.LWACollector` reads the middleware's
counters when Prometheus scrapes: lookups, cache hits and misses, joins,
rejections, LWA failures by reason (``certificate``, ``timeout``, …), the
circuit breaker, saturation, Redis faults and the lookup latency histogram
(``lwa_lookup_duration_seconds``). Nothing runs on the request path.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.integrations.prometheus import LWACollector


def create_app(
    api_base_url: str | None = None,
    client_id: str | None = None,
    registry: CollectorRegistry | None = None,
) -> LWAMiddleware:
    """The example app; its registry is ``app.app.state.registry``.

    ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``. A
    fresh registry by default (``prometheus_client.REGISTRY`` in a real app),
    so several apps in one process do not clash.
    """
    registry = registry if registry is not None else CollectorRegistry()

    async def me(request: Request) -> JSONResponse:
        identity = get_identity(request)
        assert identity is not None
        return JSONResponse(identity.to_dict())

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[Route("/me", me), Route("/metrics", metrics)])
    app.state.registry = registry
    middleware = LWAMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        # Scrapers carry no LWA token; protect /metrics at the network level.
        routes={"/metrics": "public"},
    )
    registry.register(LWACollector(middleware))
    return middleware


def main() -> None:
    import uvicorn
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    app = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/me")
    print(f"metrics: http://{HOST}:{port()}/metrics", flush=True)
    uvicorn.run(app, host=HOST, port=port(), log_level="warning")


if __name__ == "__main__":
    main()
