# ruff: noqa: F811  (the fixtures recorder, spans are imported from support.otel)
"""Observable in production (issue 21): LWA's request id, OpenTelemetry spans
and structured logs. Certificate failures and the ``http_client`` hook, on
each transport: test_observability_transports.py; the Prometheus collector:
test_prometheus.py.

Amazon facts: every profile answer carries ``x-amzn-RequestId``, and Amazon's
support may ask for it ("Obtain Customer Profile Information",
developer.amazon.com/docs/login-with-amazon/obtain-customer-profile.html).
That tokeninfo answers carry one too is an assumption (no page says so); the
library keeps it whenever an answer has one.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry import trace
from support.clock import FakeClock
from support.fleet import _module_redis, redis_bin, redis_srv  # noqa: F401  (fixtures)
from support.otel import (  # noqa: F401  (recorder, spans: fixtures)
    FIELDS,
    TRANSPORTS,
    UUID,
    Recorder,
    asgi_get,
    assert_no_secret,
    check_cold_trace,
    get_once,
    middleware,
    ok_asgi,
    ok_wsgi,
    record_of,
    recorder,
    spans,
    traced_asgi,
    traced_wsgi,
    wsgi_get,
)
from support.redis_servers import RedisServer

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

# -- OpenTelemetry ---------------------------------------------------------------


@pytest.mark.anyio
async def test_asgi_cold_request_is_one_trace_with_lookup_and_calls(
    spans: Recorder, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa = LWAMiddleware(
        ok_asgi(),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default=["profile"],
    )
    response = await asgi_get(traced_asgi(lwa), token)
    assert response.status_code == 200
    check_cold_trace(spans, token)

    spans.spans.clear()
    assert (await asgi_get(traced_asgi(lwa), token)).status_code == 200
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
        ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default=["profile"],
    )
    assert wsgi_get(traced_wsgi(lwa), token).status_code == 200
    check_cold_trace(spans, token)

    spans.spans.clear()
    assert wsgi_get(traced_wsgi(lwa), token).status_code == 200
    (hit,) = spans.named("lwa.lookup")
    assert hit.attributes is not None
    assert hit.attributes["lwa.cache.outcome"] == "hit"
    assert hit.context.trace_id == spans.named("request")[0].context.trace_id
    lwa.close()


def test_an_answer_of_the_shared_cache_is_outcome_shared(
    spans: Recorder,
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
) -> None:
    """Two workers on one Redis: the second's lookup is answered by the
    shared cache (``shared``), asks LWA nothing, and stays in its request's trace."""
    token = lwa_emulator.issue_token(scopes=["profile"])
    workers = [
        LWAWSGIMiddleware(
            ok_wsgi,
            client_id=lwa_emulator.client_id,
            api_base_url=lwa_emulator.base_url,
            redis_url=redis_srv.url,
        )
        for _ in range(2)
    ]
    assert wsgi_get(traced_wsgi(workers[0]), token).status_code == 200
    assert _outcomes(spans) == ["miss"]

    spans.spans.clear()
    assert wsgi_get(traced_wsgi(workers[1]), token).status_code == 200
    assert workers[1].stats.shared_hits == 1
    (lookup,) = spans.named("lwa.lookup")
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.cache.outcome"] == "shared"
    assert lookup.context.trace_id == spans.named("request")[0].context.trace_id
    assert not spans.named("lwa.tokeninfo")
    assert not spans.named("lwa.profile")
    assert_no_secret(spans.spans, token)
    for worker in workers:
        worker.close()


@pytest.mark.parametrize(("adapter", "headers"), [("asgi", False), ("wsgi", False), ("wsgi", True)])
def test_the_aiohttp_client_instrumentor_composes(
    spans: Recorder,
    lwa_emulator: LWAEmulator,
    monkeypatch: pytest.MonkeyPatch,
    adapter: str,
    headers: bool,
) -> None:
    """OpenTelemetry's aiohttp client instrumentation, on the default
    transport (aiohttp, on asyncio and in the WSGI I/O thread): its HTTP
    spans are children of ``lwa.tokeninfo`` / ``lwa.profile``, in the
    request's one trace, and carry no token; ``headers``: every request
    header captured, the two holding the token sanitized as the docs say."""
    if headers:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", ".*")
        monkeypatch.setenv(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
            "x-amz-access-token,authorization",
        )
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
    instrumentor = instrumentation.AioHttpClientInstrumentor()
    instrumentor.instrument()  # before the middleware makes its session
    try:
        token = lwa_emulator.issue_token(scopes=["profile"])
        options: dict[str, Any] = {
            "client_id": lwa_emulator.client_id,
            "api_base_url": lwa_emulator.base_url,
        }
        app = middleware(adapter, "aiohttp", options)
        assert get_once(app, "aiohttp", token, traced=True).status_code == 200
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
    captured = {k for s in http for k in (s.attributes or {}) if k.startswith("http.request.h")}
    assert ("http.request.header.x_amz_access_token" in captured) is headers
    assert_no_secret(spans.spans, token)


@pytest.mark.anyio
async def test_failed_lookup_span_names_the_failure(
    spans: Recorder, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    lwa = LWAMiddleware(
        ok_asgi(), client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    assert (await asgi_get(lwa, token)).status_code == 503
    (lookup,) = spans.named("lwa.lookup")
    assert lookup.attributes is not None
    assert lookup.attributes["lwa.status"] == 500
    assert lookup.attributes["lwa.failure.reason"] == "status"
    assert lookup.attributes["lwa.endpoint"] == "tokeninfo"
    assert UUID.fullmatch(str(lookup.attributes["lwa.request_id"]))
    assert lookup.status.status_code is trace.StatusCode.ERROR
    assert not lookup.events  # no exception text or stack recorded
    assert_no_secret(spans.spans, token)
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
        ok_wsgi,
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
        threading.Thread(target=lambda: statuses.append(wsgi_get(lwa, token).status_code))
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
    assert wsgi_get(lwa, token).status_code == 200
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


def test_a_provider_set_after_the_middleware_traces_its_lookups(
    lwa_emulator: LWAEmulator,
) -> None:
    """docs/observability.md: lookups look for the provider again each time,
    so one set after the middleware was built still gets their spans (in a
    child process: a provider can be set once per process)."""
    script = textwrap.dedent(
        """
        import sys
        import httpx2
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from lwa_middleware import LWAWSGIMiddleware

        def ok(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        base, client_id, token = sys.argv[1:4]
        app = LWAWSGIMiddleware(ok, client_id=client_id, api_base_url=base)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)  # after the middleware
        with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://a") as c:
            assert c.get("/", headers={"Authorization": "Bearer " + token}).status_code == 200
        print(sorted(span.name for span in exporter.get_finished_spans()))
        app.close()
        """
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    result = subprocess.run(
        [sys.executable, "-c", script, lwa_emulator.base_url, lwa_emulator.client_id, token],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['lwa.lookup', 'lwa.profile', 'lwa.tokeninfo']", result.stderr


# -- logs, events, the request id ------------------------------------------------


@pytest.mark.parametrize(("adapter", "transport"), TRANSPORTS)
def test_upstream_error_log_event_and_answer(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture, adapter: str, transport: str
) -> None:
    """LWA's request id is in the log (field and text) and the event, never
    in what the client gets; the record has every structured field. On each
    transport: each reads the header from its own kind of answer."""
    events: list[tuple[str, dict[str, Any]]] = []
    token = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "on_event": lambda name, data: events.append((name, dict(data))),
    }
    caplog.set_level(logging.WARNING, logger="lwa_middleware")
    app = middleware(adapter, transport, options)
    response = get_once(app, transport, token)
    assert response.status_code == 503

    record = record_of(caplog, "upstream_error")
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
        ok_wsgi, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    assert wsgi_get(app, lwa_emulator.issue_token(scopes=["profile"])).status_code == 503
    line = json.loads(namespace["JSONFormatter"]().format(record_of(caplog, "upstream_error")))
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
        ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        on_event=lambda name, data: events.append((name, dict(data))),
    )
    assert wsgi_get(app, token).status_code == 200
    ((_, data),) = [(n, d) for n, d in events if n == "resolved"]
    assert UUID.fullmatch(data["request_id"])
    app.close()


def test_every_log_call_of_the_library_passes_the_fields() -> None:
    """docs/observability.md: "Every record of the library carries these
    ``extra=`` fields". Each logging call in the package passes ``extra=``,
    made by ``_observe.fields`` (or ``error_fields``, which calls it), or is
    ``_observe.warn``'s own, whose ``extra`` its callers made so."""
    import ast
    from pathlib import Path

    import lwa_middleware

    package = Path(lwa_middleware.__file__).parent
    levels = {"debug", "info", "warning", "error", "exception", "critical", "log"}
    makers = {"fields", "log_fields", "error_fields"}
    missing = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = ast.unparse(node.func.value)
            if node.func.attr not in levels or "log" not in owner.lower():
                continue
            extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
            made = isinstance(extra, ast.Call) and ast.unparse(extra.func).split(".")[-1] in makers
            passed_on = path.name == "_observe.py" and isinstance(extra, ast.Name)
            if not (made or passed_on):
                missing.append(f"{path.relative_to(package)}:{node.lineno}")
    assert missing == []


def test_every_logger_name_is_documented() -> None:
    """docs/observability.md names each logger the package logs to."""
    from pathlib import Path

    import lwa_middleware

    package = Path(lwa_middleware.__file__).parent
    source = "".join(path.read_text(encoding="utf-8") for path in package.rglob("*.py"))
    names = set(re.findall(r"getLogger\(\"([\w.]+)\"\)", source))
    assert "lwa_middleware" in names
    docs = (package.parent / "docs" / "observability.md").read_text(encoding="utf-8")
    loggers = docs.split("**Loggers.**")[1].split("\n\n")[0]
    assert sorted(n for n in names if f"`{n}`" not in loggers) == []


def test_library_loggers_have_no_handlers(lwa_emulator: LWAEmulator) -> None:
    import lwa_middleware.integrations.prometheus
    import lwa_middleware.shared_cache  # noqa: F401

    LWAWSGIMiddleware(ok_wsgi, client_id=lwa_emulator.client_id).close()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "lwa_middleware"]
    assert "lwa_middleware" in names
    for name in names:
        logger = logging.getLogger(name)
        assert logger.handlers == [], name
