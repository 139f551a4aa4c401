"""Observable in production (issue 21): LWA's request id, OpenTelemetry spans,
structured logs, certificate failures by name, the Prometheus collector, and
the ``http_client`` hook.

Amazon facts: every profile answer carries ``x-amzn-RequestId``, and Amazon's
support may ask for it ("Obtain Customer Profile Information",
developer.amazon.com/docs/login-with-amazon/obtain-customer-profile.html).
That tokeninfo answers carry one too is an assumption (no page says so); the
library keeps it whenever an answer has one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from support.clock import FakeClock
from support.fleet import _module_redis, redis_bin, redis_srv  # noqa: F401  (fixtures)
from support.redis_servers import RedisServer

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

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


def _ok_asgi(inner: Any = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _ok_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _traced_asgi(app: Any) -> Any:
    """What a server instrumentation does: the request runs in a span of its own."""
    tracer = trace.get_tracer("test-server")

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("request"):
            await app(scope, receive, send)

    return outer


def _traced_wsgi(app: Any) -> Any:
    tracer = trace.get_tracer("test-server")

    def outer(environ: dict[str, Any], start_response: Any) -> Any:
        with tracer.start_as_current_span("request"):
            return list(app(environ, start_response))

    return outer


async def _asgi_get(app: Any, token: str, path: str = "/") -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path, headers={"Authorization": f"Bearer {token}"})


def _wsgi_get(app: Any, token: str, path: str = "/") -> httpx2.Response:
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://app") as client:
        return client.get(path, headers={"Authorization": f"Bearer {token}"})


def _forbidden(token: str) -> list[str]:
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


def _assert_no_secret(spans: list[ReadableSpan], token: str) -> None:
    """Neither the token, nor a digest of it, in any name, attribute, event or status."""
    for span in spans:
        events = [(e.name, dict(e.attributes or {})) for e in span.events]
        links = [dict(link.attributes or {}) for link in span.links]
        text = json.dumps(
            [span.name, dict(span.attributes or {}), events, links, span.status.description],
            default=str,
        )
        for secret in _forbidden(token):
            assert secret not in text, span.name


def _check_cold_trace(spans: Recorder, token: str) -> None:
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
    _assert_no_secret(spans.spans, token)


# -- OpenTelemetry ---------------------------------------------------------------


@pytest.mark.anyio
async def test_asgi_cold_request_is_one_trace_with_lookup_and_calls(
    spans: Recorder, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa = LWAMiddleware(
        _ok_asgi(),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default=["profile"],
    )
    response = await _asgi_get(_traced_asgi(lwa), token)
    assert response.status_code == 200
    _check_cold_trace(spans, token)

    spans.spans.clear()
    assert (await _asgi_get(_traced_asgi(lwa), token)).status_code == 200
    (hit,) = spans.named("lwa.lookup")
    assert hit.attributes is not None
    assert hit.attributes["lwa.cache.outcome"] == "hit"
    assert hit.context.trace_id == spans.named("request")[0].context.trace_id
    await lwa.aclose()


def test_wsgi_cold_request_keeps_the_pool_thread_in_the_callers_trace(
    spans: Recorder, lwa_emulator: LWAEmulator
) -> None:
    """The profile call runs on the driver's thread pool: its span must still
    be a child of the lookup, in the request's trace (the context is copied)."""
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa = LWAWSGIMiddleware(
        _ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default=["profile"],
    )
    assert _wsgi_get(_traced_wsgi(lwa), token).status_code == 200
    _check_cold_trace(spans, token)

    spans.spans.clear()
    assert _wsgi_get(_traced_wsgi(lwa), token).status_code == 200
    (hit,) = spans.named("lwa.lookup")
    assert hit.attributes is not None
    assert hit.attributes["lwa.cache.outcome"] == "hit"
    assert hit.context.trace_id == spans.named("request")[0].context.trace_id
    lwa.close()


def test_an_answer_of_the_shared_cache_is_outcome_shared(
    spans: Recorder,
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,  # noqa: F811  (the fixture imported above)
) -> None:
    """Two workers on one Redis: the second's lookup is answered by the
    shared cache (``shared``), asks LWA nothing, and stays in its request's trace."""
    token = lwa_emulator.issue_token(scopes=["profile"])
    workers = [
        LWAWSGIMiddleware(
            _ok_wsgi,
            client_id=lwa_emulator.client_id,
            api_base_url=lwa_emulator.base_url,
            redis_url=redis_srv.url,
        )
        for _ in range(2)
    ]
    assert _wsgi_get(_traced_wsgi(workers[0]), token).status_code == 200
    assert _outcomes(spans) == ["miss"]

    spans.spans.clear()
    assert _wsgi_get(_traced_wsgi(workers[1]), token).status_code == 200
    assert workers[1].stats.shared_hits == 1
    (lookup,) = spans.named("lwa.lookup")
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.cache.outcome"] == "shared"
    assert lookup.context.trace_id == spans.named("request")[0].context.trace_id
    assert not spans.named("lwa.tokeninfo")
    assert not spans.named("lwa.profile")
    _assert_no_secret(spans.spans, token)
    for worker in workers:
        worker.close()


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_the_aiohttp_client_instrumentor_composes(
    spans: Recorder, lwa_emulator: LWAEmulator, adapter: str
) -> None:
    """OpenTelemetry's aiohttp client instrumentation, on the default
    transport (aiohttp, on asyncio and in the WSGI I/O thread): its HTTP
    spans are children of ``lwa.tokeninfo`` / ``lwa.profile``, in the
    request's one trace, and carry no token."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
    instrumentor = instrumentation.AioHttpClientInstrumentor()
    instrumentor.instrument()  # before the middleware makes its session
    try:
        token = lwa_emulator.issue_token(scopes=["profile"])
        options: dict[str, Any] = {
            "client_id": lwa_emulator.client_id,
            "api_base_url": lwa_emulator.base_url,
        }
        if adapter == "asgi":
            import anyio

            app: Any = LWAMiddleware(_ok_asgi(), **options)
            response = anyio.run(_asgi_get, _traced_asgi(app), token)
        else:
            app = LWAWSGIMiddleware(_ok_wsgi, **options)
            response = _wsgi_get(_traced_wsgi(app), token)
        assert response.status_code == 200
        app.resolver.close()
    finally:
        instrumentor.uninstrument()
    (request,) = spans.named("request")
    calls = {s.context.span_id: s.name for s in spans.spans if s.name.startswith("lwa.")}
    http = [s for s in spans.spans if not s.name.startswith("lwa.") and s is not request]
    assert len(http) == 2
    parents = sorted(calls[s.parent.span_id] for s in http if s.parent is not None)
    assert parents == ["lwa.profile", "lwa.tokeninfo"]
    assert {s.context.trace_id for s in spans.spans} == {request.context.trace_id}
    _assert_no_secret(spans.spans, token)


@pytest.mark.anyio
async def test_failed_lookup_span_names_the_failure(
    spans: Recorder, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    lwa = LWAMiddleware(
        _ok_asgi(), client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    assert (await _asgi_get(lwa, token)).status_code == 503
    (lookup,) = spans.named("lwa.lookup")
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.status"] == 500
    assert lookup.attributes["lwa.failure.reason"] == "status"
    assert lookup.attributes["lwa.endpoint"] == "tokeninfo"
    assert UUID.fullmatch(str(lookup.attributes["lwa.request_id"]))
    assert lookup.status.status_code is trace.StatusCode.ERROR
    assert not lookup.events  # no exception text or stack recorded
    _assert_no_secret(spans.spans, token)
    await lwa.aclose()


def _outcomes(spans: Recorder) -> list[str]:
    return sorted(
        str((s.attributes or {}).get("lwa.cache.outcome")) for s in spans.named("lwa.lookup")
    )


def test_joined_and_stale_outcomes(spans: Recorder, lwa_emulator: LWAEmulator) -> None:
    """Threads that join a lookup in flight are ``joined``; an identity served
    stale through an outage is ``stale``."""
    import threading

    clock = FakeClock()
    lwa = LWAWSGIMiddleware(
        _ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        stale_if_error=True,
        cache_ttl=60,
        clock=clock,
    )
    token = lwa_emulator.issue_token(scopes=["profile"], expires_in=600)
    lwa_emulator.set_latency(1.0)  # long enough for the others to find the flight
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(_wsgi_get(lwa, token).status_code))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200, 200, 200]
    assert lwa.stats.coalesced == 2
    assert _outcomes(spans) == ["joined", "joined", "miss"]

    spans.spans.clear()
    lwa_emulator.set_latency(0)
    clock.advance(61)  # stale, the token still live
    lwa_emulator.inject(Fault.DOWN)
    assert _wsgi_get(lwa, token).status_code == 200
    assert _outcomes(spans) == ["stale"]
    (stale,) = spans.named("lwa.lookup")
    assert stale.attributes is not None
    assert stale.attributes["lwa.failure.reason"] == "connection"
    lwa.close()


def test_without_a_provider_or_the_api_nothing_is_traced() -> None:
    """No provider: the hit path stays as it was (``hooked`` false, so it
    never calls into the resolver). Without opentelemetry installed at all
    the library works the same."""
    script = textwrap.dedent(
        """
        import sys
        if sys.argv[1] == "absent":
            sys.modules["opentelemetry"] = None  # as if the extra were not installed
        from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
        from lwa_middleware._engine import _otel  # the engine, read in a child process
        cid = "amzn1.application-oa2-client.0123"
        a = LWAMiddleware(lambda *x: None, client_id=cid)
        w = LWAWSGIMiddleware(lambda *x: None, client_id=cid)
        assert not a.resolver.hooked and not a._hooked and not w.resolver.hooked
        assert _otel.current_tracer() is None
        print("untraced")
        """
    )
    for mode in ("no-provider", "absent"):
        result = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip() == "untraced", (mode, result.stderr)


# -- logs, events, the request id ------------------------------------------------


def _assert_records_clean(records: list[logging.LogRecord], tokens: list[str]) -> None:
    """Every attribute of every record (its ``extra=`` fields included), its
    message and its formatted traceback: no token, no digest of one."""
    formatter = logging.Formatter()
    for record in records:
        text = " ".join(f"{name}={value!r} {value}" for name, value in vars(record).items())
        text += record.getMessage()
        text += formatter.format(record)
        for token in tokens:
            for secret in _forbidden(token):
                assert secret not in text, (record.name, record.getMessage())


@pytest.mark.parametrize(("adapter", "transport"), TRANSPORTS)
def test_no_token_in_any_log_record_or_span(
    lwa_emulator: LWAEmulator,
    spans: Recorder,
    caplog: pytest.LogCaptureFixture,
    adapter: str,
    transport: str,
) -> None:
    """A lookup that succeeds, one LWA refuses, one LWA fails and an
    ``on_event`` hook that raises, logged at DEBUG by every logger (aiohttp's
    and httpx2's included) and traced: no token or digest anywhere."""

    def hook(name: str, data: dict[str, Any]) -> None:
        raise RuntimeError("the application's hook failed")

    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "on_event": hook,
    }
    if transport == "http_client":
        options["http_client"] = lambda asyncio: (
            httpx2.AsyncClient() if asyncio else httpx2.Client()
        )
    good = lwa_emulator.issue_token(scopes=["profile"])
    refused = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.revoke(refused)
    failed = lwa_emulator.issue_token(scopes=["profile"])
    caplog.set_level(logging.DEBUG)
    statuses: list[int] = []
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)

        async def run() -> None:
            for token in (good, good, refused):
                statuses.append((await _asgi_get(_traced_asgi(app), token)).status_code)
            lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
            statuses.append((await _asgi_get(_traced_asgi(app), failed)).status_code)

        anyio.run(run, backend="trio" if transport == "trio" else "asyncio")
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        for token in (good, good, refused):
            statuses.append(_wsgi_get(_traced_wsgi(app), token).status_code)
        lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
        statuses.append(_wsgi_get(_traced_wsgi(app), failed).status_code)
    assert statuses == [200, 200, 401, 503]
    assert _record(caplog, "upstream_error")  # the records were captured
    assert _record(caplog, "hook_failed").exc_info is not None
    assert len(spans.named("lwa.lookup")) == 4
    _assert_records_clean(caplog.records, [good, refused, failed])
    for token in (good, refused, failed):
        _assert_no_secret(spans.spans, token)
    app.resolver.close()



def _record(caplog: pytest.LogCaptureFixture, event: str) -> logging.LogRecord:
    found = [r for r in caplog.records if getattr(r, "lwa_event", None) == event]
    assert found, [r.getMessage() for r in caplog.records]
    return found[-1]


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_upstream_error_log_event_and_answer(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture, adapter: str
) -> None:
    """LWA's request id is in the log (field and text) and the event, never
    in what the client gets; the record has every structured field."""
    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "on_event": lambda name, data: events.append((name, dict(data))),
    }
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        response = anyio.run(_asgi_get, app, token)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 503

    record = _record(caplog, "upstream_error")
    assert all(hasattr(record, name) for name in FIELDS)
    request_id = record.lwa_request_id  # type: ignore[attr-defined]
    assert UUID.fullmatch(request_id)
    assert (record.lwa_reason, record.lwa_status) == ("status", 500)  # type: ignore[attr-defined]
    assert record.lwa_route == "required"  # type: ignore[attr-defined]
    assert isinstance(record.lwa_latency, float)  # type: ignore[attr-defined]
    message = record.getMessage()
    assert request_id in message
    assert not message.startswith("lwa_middleware:")
    assert token not in message

    ((_name, data),) = [(n, d) for n, d in events if n == "upstream_error"]
    assert data["request_id"] == request_id
    assert (data["reason"], data["status"], data["endpoint"]) == ("status", 500, "tokeninfo")

    wire = response.text + json.dumps(list(response.headers.items()))
    assert request_id not in wire
    app.resolver.close()


def test_the_docs_log_line_is_what_an_outage_logs(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/observability.md's JSON formatter, given the record of a real
    outage (LWA's tokeninfo answering 500), prints the line the page shows:
    the same fields in the same order, the same values but LWA's request id
    and the latency."""
    from support.doc_blocks import ROOT, parse_readme

    page = "docs/observability.md"
    blocks = parse_readme((ROOT / page).read_text(encoding="utf-8"), page)
    formatter_code = next(b.code for b in blocks if "class JSONFormatter" in b.code)
    shown = json.loads(next(b.code for b in blocks if b.lang == "json"))
    namespace: dict[str, Any] = {}
    exec(formatter_code, namespace)  # the page's own code
    logging.getLogger("lwa_middleware").removeHandler(namespace["handler"])

    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    app = LWAWSGIMiddleware(
        _ok_wsgi, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    assert _wsgi_get(app, lwa_emulator.issue_token(scopes=["profile"])).status_code == 503
    line = json.loads(namespace["JSONFormatter"]().format(_record(caplog, "upstream_error")))
    assert list(line) == list(shown)
    request_id = line["lwa_request_id"]
    assert UUID.fullmatch(request_id)
    assert line["message"] == shown["message"].replace(shown["lwa_request_id"], request_id)
    assert isinstance(line["lwa_latency"], float)
    for varies in ("message", "lwa_request_id", "lwa_latency"):
        del line[varies], shown[varies]
    assert line == shown
    app.close()


def test_resolved_event_carries_the_request_id(lwa_emulator: LWAEmulator) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    app = LWAWSGIMiddleware(
        _ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        on_event=lambda name, data: events.append((name, dict(data))),
    )
    assert _wsgi_get(app, token).status_code == 200
    ((_, data),) = [(n, d) for n, d in events if n == "resolved"]
    assert UUID.fullmatch(data["request_id"])
    app.close()


def test_library_loggers_have_no_handlers(lwa_emulator: LWAEmulator) -> None:
    import lwa_middleware.integrations.prometheus
    import lwa_middleware.shared_cache  # noqa: F401

    LWAWSGIMiddleware(_ok_wsgi, client_id=lwa_emulator.client_id).close()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "lwa_middleware"]
    assert "lwa_middleware" in names
    for name in names:
        logger = logging.getLogger(name)
        assert logger.handlers == [], name


# -- certificates ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_lwa() -> Iterator[LWAEmulator]:
    pytest.importorskip("cryptography")
    with LWAEmulator(tls=True) as lwa:
        yield lwa


@pytest.fixture(scope="module")
def stranger_ca() -> Iterator[str]:
    pytest.importorskip("cryptography")
    with LWAEmulator(tls=True) as stranger:
        yield stranger.ca_file


def _stranger_client(ca_file: str) -> Any:
    """An ``http_client`` factory whose clients trust ``ca_file`` only."""
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    return lambda asyncio: (httpx2.AsyncClient if asyncio else httpx2.Client)(verify=context)


@pytest.mark.parametrize(("adapter", "transport"), TRANSPORTS)
def test_an_untrusted_certificate_is_named(
    tls_lwa: LWAEmulator,
    stranger_ca: str,
    spans: Recorder,
    caplog: pytest.LogCaptureFixture,
    adapter: str,
    transport: str,
) -> None:
    """Not "connection failed": ``certificate`` in the log, the event, the
    stats and the span; still a fail-closed 503. On every transport: aiohttp
    and httpx2 wrap the ``ssl`` error differently."""
    events: list[tuple[str, dict[str, Any]]] = []
    token = tls_lwa.issue_token(scopes=["profile"])
    options: dict[str, Any] = {
        "client_id": tls_lwa.client_id,
        "api_base_url": tls_lwa.base_url,
        "verify": stranger_ca,
        "on_event": lambda name, data: events.append((name, dict(data))),
    }
    if transport == "http_client":
        del options["verify"]  # the application's client checks the certificate
        options["http_client"] = _stranger_client(stranger_ca)
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        backend = "trio" if transport == "trio" else "asyncio"
        response = anyio.run(_asgi_get, app, token, backend=backend)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 503
    assert "certificate" in response.json()["error_description"]

    record = _record(caplog, "upstream_error")
    assert record.lwa_reason == "certificate"  # type: ignore[attr-defined]
    assert "certificate verification failed" in record.getMessage()
    (data,) = [d for n, d in events if n == "upstream_error"]
    assert data["reason"] == "certificate"
    assert app.stats.upstream_error_reasons == {"certificate": 1}
    (lookup,) = spans.named("lwa.lookup")
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.failure.reason"] == "certificate"
    calls = spans.named("lwa.tokeninfo")
    assert calls
    assert all(
        c.attributes is not None and c.attributes["lwa.failure.reason"] == "certificate"
        for c in calls
    )
    app.resolver.close()


@pytest.mark.parametrize(
    ("adapter", "transport"), [("asgi", "aiohttp"), ("asgi", "trio"), ("wsgi", "aiohttp")]
)
def test_ssl_cert_file_names_the_cas_to_trust(
    tls_lwa: LWAEmulator, monkeypatch: pytest.MonkeyPatch, adapter: str, transport: str
) -> None:
    """What docs/observability.md says of ``verify=True`` (the default): the
    system's CAs, unless ``SSL_CERT_FILE`` points elsewhere, on every transport."""
    monkeypatch.setenv("SSL_CERT_FILE", tls_lwa.ca_file)
    token = tls_lwa.issue_token(scopes=["profile"])
    options: dict[str, Any] = {"client_id": tls_lwa.client_id, "api_base_url": tls_lwa.base_url}
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        backend = "trio" if transport == "trio" else "asyncio"
        response = anyio.run(_asgi_get, app, token, backend=backend)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 200
    app.resolver.close()


# -- the http_client hook --------------------------------------------------------


class _Seen:
    """What a user's transport saw: paths, LWA's request ids, the span current."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.request_ids: dict[str, str] = {}
        self.parents: dict[str, str] = {}

    def saw(self, request: httpx2.Request, response: httpx2.Response) -> None:
        self.paths.append(request.url.path)
        self.request_ids[request.url.path] = response.headers["x-amzn-requestid"]
        current = trace.get_current_span()
        self.parents[request.url.path] = getattr(current, "name", "")


def _factory(seen: _Seen) -> Any:
    class Sync(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            response = super().handle_request(request)
            seen.saw(request, response)
            return response

    class Async(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            response = await super().handle_async_request(request)
            seen.saw(request, response)
            return response

    def http_client(asyncio: bool) -> Any:
        # No timeout of its own: the library's deadlines must still hold.
        if asyncio:
            return httpx2.AsyncClient(transport=Async(), timeout=None)
        return httpx2.Client(transport=Sync(), timeout=None)

    return http_client


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_http_client_hook_carries_every_call(
    lwa_emulator: LWAEmulator, spans: Recorder, adapter: str
) -> None:
    """The user's client (here a custom transport, as a proxy or an
    instrumentation would be) makes both calls; an instrumentation at that
    level sees the library's call span as its parent; the request id the
    library reports is the one on the wire."""
    seen = _Seen()
    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "http_client": _factory(seen),
        "on_event": lambda name, data: events.append((name, dict(data))),
    }
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        response = anyio.run(_asgi_get, app, token)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 200
    assert sorted(seen.paths) == ["/auth/o2/tokeninfo", "/user/profile"]
    assert seen.parents == {"/auth/o2/tokeninfo": "lwa.tokeninfo", "/user/profile": "lwa.profile"}
    (data,) = [d for n, d in events if n == "resolved"]
    assert data["request_id"] == seen.request_ids["/user/profile"]
    app.resolver.close()


class _ForwardProxy:
    """A plain-HTTP forward proxy on loopback (absolute-form requests), as a
    corporate proxy is: it relays each GET and notes the URLs it relayed."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        relayed = self.relayed = []

        class Relay(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                relayed.append(self.path)
                hop = ("host", "connection", "proxy-connection", "keep-alive")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                answer = httpx2.get(self.path, headers=headers)
                self.send_response(answer.status_code)
                for name in ("content-type", "x-amzn-requestid"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _ForwardProxy:
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_http_client_hook_goes_through_a_proxy(lwa_emulator: LWAEmulator, adapter: str) -> None:
    """``http_client`` with ``proxy=``: both calls go through a real proxy,
    and the request id reported is the one LWA sent through it."""
    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    with _ForwardProxy() as proxy:
        options: dict[str, Any] = {
            "client_id": lwa_emulator.client_id,
            "api_base_url": lwa_emulator.base_url,
            "http_client": lambda asyncio: (httpx2.AsyncClient if asyncio else httpx2.Client)(
                proxy=proxy.url
            ),
            "on_event": lambda name, data: events.append((name, dict(data))),
        }
        if adapter == "asgi":
            import anyio

            app: Any = LWAMiddleware(_ok_asgi(), **options)
            response = anyio.run(_asgi_get, app, token)
        else:
            app = LWAWSGIMiddleware(_ok_wsgi, **options)
            response = _wsgi_get(app, token)
        app.resolver.close()
    assert response.status_code == 200
    base = lwa_emulator.base_url
    assert sorted(proxy.relayed) == [f"{base}/auth/o2/tokeninfo", f"{base}/user/profile"]
    (data,) = [d for n, d in events if n == "resolved"]
    assert UUID.fullmatch(data["request_id"])
    assert token not in json.dumps(proxy.relayed)


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_http_client_hook_keeps_the_librarys_deadline(
    lwa_emulator: LWAEmulator, adapter: str
) -> None:
    lwa_emulator.set_latency(5.0)
    token = lwa_emulator.issue_token(scopes=["profile"])
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "http_client": _factory(_Seen()),
        "timeout": 0.5,
    }
    import time

    started = time.monotonic()
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        response = anyio.run(_asgi_get, app, token)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 503
    assert "timed out" in response.json()["error_description"]
    assert app.stats.upstream_error_reasons == {"timeout": 1}
    assert time.monotonic() - started < 4.0  # well before LWA's 5 s answer
    lwa_emulator.clear_faults()
    app.resolver.close()


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_an_http_client_that_breaks_is_a_transport_failure(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture, adapter: str
) -> None:
    """An application's client that raises something else than httpx2's
    errors (OpenTelemetry's httpx instrumentor on an httpx2 client raises
    IndexError on every call): a 503 whose reason is ``transport``, naming
    the exception's type, never "LWA answered something unusable" (LWA was
    never reached) nor the exception's text."""

    class Broken(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            raise IndexError("tuple index out of range at http://proxy.internal")

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            raise IndexError("tuple index out of range at http://proxy.internal")

    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "http_client": lambda asyncio: (httpx2.AsyncClient if asyncio else httpx2.Client)(
            transport=Broken()
        ),
        "on_event": lambda name, data: events.append((name, dict(data))),
    }
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    if adapter == "asgi":
        import anyio

        app: Any = LWAMiddleware(_ok_asgi(), **options)
        response = anyio.run(_asgi_get, app, token)
    else:
        app = LWAWSGIMiddleware(_ok_wsgi, **options)
        response = _wsgi_get(app, token)
    assert response.status_code == 503
    record = _record(caplog, "upstream_error")
    assert record.lwa_reason == "transport"  # type: ignore[attr-defined]
    assert "IndexError" in record.getMessage()
    assert "unusable" not in record.getMessage()
    assert "proxy.internal" not in record.getMessage() + response.text
    (data,) = [d for n, d in events if n == "upstream_error"]
    assert data["reason"] == "transport"
    assert app.stats.upstream_error_reasons == {"transport": 1}
    assert sum(lwa_emulator.calls.values()) == 0
    app.resolver.close()


def test_http_client_of_the_wrong_kind_fails_at_construction() -> None:
    cid = "amzn1.application-oa2-client.0123"

    def both_async(asyncio: bool) -> Any:
        return httpx2.AsyncClient()

    def transport(asyncio: bool) -> Any:
        return httpx2.HTTPTransport()

    def sync_only(asyncio: bool) -> Any:
        return httpx2.Client()

    cases = [
        (both_async, r"http_client\(asyncio=False\) returned AsyncClient, not an httpx2.Client"),
        (transport, r"returned HTTPTransport"),
        (sync_only, r"http_client\(asyncio=True\) returned Client, not an httpx2.AsyncClient"),
        (lambda: httpx2.Client(), r"must accept asyncio="),
        (httpx2.Client(), r"must be a factory"),
        (httpx2.Client, r"must be a factory"),
    ]
    for factory, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            LWAMiddleware(_ok_asgi(), client_id=cid, http_client=factory)
        with pytest.raises(ConfigurationError, match=message):
            LWAWSGIMiddleware(_ok_wsgi, client_id=cid, http_client=factory)


def test_a_request_id_not_shaped_like_one_is_dropped(lwa_emulator: LWAEmulator) -> None:
    """LWA's answer (here rewritten on its way in, through the hook) cannot
    put text of its choosing in logs: an odd ``x-amzn-RequestId`` is dropped."""

    class Rewriting(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            response = super().handle_request(request)
            response.headers["x-amzn-RequestId"] = "fake id] user=admin " + "x" * 200
            return response

    events: list[tuple[str, dict[str, Any]]] = []
    app = LWAWSGIMiddleware(
        _ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        http_client=lambda asyncio: (
            httpx2.AsyncClient() if asyncio else httpx2.Client(transport=Rewriting())
        ),
        on_event=lambda name, data: events.append((name, dict(data))),
    )
    assert _wsgi_get(app, lwa_emulator.issue_token(scopes=["profile"])).status_code == 200
    (data,) = [d for n, d in events if n == "resolved"]
    assert data["request_id"] is None
    app.close()
