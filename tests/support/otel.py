"""What the observability tests share (issue 21): an OpenTelemetry SDK
provider recording spans, apps traced as a server instrumentation would
trace them, one request through ASGI or WSGI, and the checks that no token
or digest of one is on a span or a log record."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FIELDS = ("lwa_event", "lwa_reason", "lwa_route", "lwa_status", "lwa_request_id", "lwa_latency")

#: (adapter, how it sends): aiohttp on asyncio and in the WSGI I/O thread;
#: httpx2 on trio and through the ``http_client`` hook (sync and async).
TRANSPORTS = [
    ("asgi", "aiohttp"),
    ("asgi", "trio"),
    ("asgi", "http_client"),
    ("wsgi", "aiohttp"),
    ("wsgi", "http_client"),
]


class Recorder(SpanProcessor):
    """Keeps the spans that end while :attr:`on` (only this module's tests)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.spans.append(span)

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """An OpenTelemetry SDK provider, set as the global one (once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    recorder = Recorder()
    provider.add_span_processor(recorder)
    yield recorder
    recorder.on = False
    recorder.spans.clear()


@pytest.fixture
def spans(recorder: Recorder) -> Iterator[Recorder]:
    recorder.spans.clear()
    recorder.on = True
    yield recorder
    recorder.on = False
    recorder.spans.clear()


def ok_asgi(inner: Any = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def ok_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def traced_asgi(app: Any) -> Any:
    """What a server instrumentation does: the request runs in a span of its own."""
    tracer = trace.get_tracer("test-server")

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("request"):
            await app(scope, receive, send)

    return outer


def traced_wsgi(app: Any) -> Any:
    tracer = trace.get_tracer("test-server")

    def outer(environ: dict[str, Any], start_response: Any) -> Any:
        with tracer.start_as_current_span("request"):
            return list(app(environ, start_response))

    return outer


async def asgi_get(app: Any, token: str, path: str = "/") -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path, headers={"Authorization": f"Bearer {token}"})


def wsgi_get(app: Any, token: str, path: str = "/") -> httpx2.Response:
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://app") as client:
        return client.get(path, headers={"Authorization": f"Bearer {token}"})


def forbidden(token: str) -> list[str]:
    """The token, the part a cut-short line keeps, and its digest in any form."""
    digest = hashlib.sha256(token.encode()).digest()
    return [
        token,
        token[-40:],
        digest.hex(),
        digest.hex()[:16],
        digest.decode("latin-1"),
        repr(digest)[2:-1],
    ]


def assert_no_secret(spans: list[ReadableSpan], token: str) -> None:
    """Neither the token, nor a digest of it, in any name, attribute, event or status."""
    for span in spans:
        events = [(e.name, dict(e.attributes or {})) for e in span.events]
        links = [dict(link.attributes or {}) for link in span.links]
        text = json.dumps(
            [span.name, dict(span.attributes or {}), events, links, span.status.description],
            default=str,
        )
        for secret in forbidden(token):
            assert secret not in text, span.name


def check_cold_trace(spans: Recorder, token: str) -> None:
    (request,) = spans.named("request")
    (lookup,) = spans.named("lwa.lookup")
    (info,) = spans.named("lwa.tokeninfo")
    (profile,) = spans.named("lwa.profile")
    trace_id = request.context.trace_id
    # One trace per request: everything the request emitted is in the caller's.
    assert {s.context.trace_id for s in spans.spans} == {trace_id}
    assert lookup.parent is not None
    assert lookup.parent.span_id == request.context.span_id
    for call in (info, profile):
        assert call.parent is not None
        assert call.parent.span_id == lookup.context.span_id
        assert call.kind is trace.SpanKind.CLIENT
        assert call.attributes is not None
        assert call.attributes["http.response.status_code"] == 200
        assert UUID.fullmatch(str(call.attributes["lwa.request_id"]))
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.cache.outcome"] == "miss"
    assert lookup.attributes["lwa.status"] == 200
    assert lookup.attributes["lwa.route.policy"] == "required scopes=profile"
    assert profile.attributes is not None
    assert lookup.attributes["lwa.request_id"] == profile.attributes["lwa.request_id"]
    assert_no_secret(spans.spans, token)


def record_of(caplog: pytest.LogCaptureFixture, event: str) -> logging.LogRecord:
    found = [r for r in caplog.records if getattr(r, "lwa_event", None) == event]
    assert found, [r.getMessage() for r in caplog.records]
    return found[-1]


def plain_http_client(asyncio: bool) -> Any:
    """An ``http_client`` factory of default httpx2 clients (the httpx2 path)."""
    return (httpx2.AsyncClient if asyncio else httpx2.Client)()


def middleware(adapter: str, transport: str, options: dict[str, Any]) -> Any:
    """The ASGI or WSGI middleware over a plain app; ``transport``
    ``http_client`` sends through default httpx2 clients unless ``options``
    names a factory."""
    from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware

    if transport == "http_client":
        options = {"http_client": plain_http_client, **options}
    if adapter == "asgi":
        return LWAMiddleware(ok_asgi(), **options)
    return LWAWSGIMiddleware(ok_wsgi, **options)


def get_once(app: Any, transport: str, token: str, traced: bool = False) -> httpx2.Response:
    """One GET with ``token`` through ``app`` (from :func:`middleware`): an
    ASGI app on trio when ``transport`` is ``trio``, else on asyncio;
    ``traced``: in a server span of its own."""
    from lwa_middleware import LWAMiddleware

    if isinstance(app, LWAMiddleware):
        import anyio

        target = traced_asgi(app) if traced else app
        backend = "trio" if transport == "trio" else "asyncio"
        return anyio.run(asgi_get, target, token, backend=backend)  # type: ignore[no-any-return]
    return wsgi_get(traced_wsgi(app) if traced else app, token)
