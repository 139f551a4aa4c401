# ruff: noqa: F811  (the fixtures recorder, spans are imported from support.otel)
"""Observable in production (issue 21), on each transport: aiohttp (asyncio,
and WSGI's I/O thread), httpx2 (trio, and the application's ``http_client``).
Certificate failures by name, the ``http_client`` hook (proxy, custom
transport, deadlines, wrong kinds), and no token anywhere in logs or spans.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from opentelemetry import trace
from support.otel import (  # noqa: F401  (recorder, spans: fixtures)
    FIELDS,
    TRANSPORTS,
    UUID,
    Recorder,
    asgi_get,
    assert_no_secret,
    forbidden,
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

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator


def _assert_records_clean(records: list[logging.LogRecord], tokens: list[str]) -> None:
    """Every attribute of every record (its ``extra=`` fields included), its
    message and its formatted traceback: no token, no digest of one."""
    formatter = logging.Formatter()
    for record in records:
        text = " ".join(f"{name}={value!r} {value}" for name, value in vars(record).items())
        text += record.getMessage()
        text += formatter.format(record)
        for token in tokens:
            for secret in forbidden(token):
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
    good = lwa_emulator.issue_token(scopes=["profile"])
    refused = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.revoke(refused)
    failed = lwa_emulator.issue_token(scopes=["profile"])
    caplog.set_level(logging.DEBUG)
    app = middleware(adapter, transport, options)
    statuses = [get_once(app, transport, t, traced=True).status_code for t in (good, good, refused)]
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    statuses.append(get_once(app, transport, failed, traced=True).status_code)
    assert statuses == [200, 200, 401, 503]
    assert record_of(caplog, "upstream_error")  # the records were captured
    assert record_of(caplog, "hook_failed").exc_info is not None
    assert len(spans.named("lwa.lookup")) == 4
    ours = [r for r in caplog.records if r.name.split(".")[0] == "lwa_middleware"]
    for record in ours:  # every record of the library has every structured field
        assert all(hasattr(record, name) for name in FIELDS), record.getMessage()
    _assert_records_clean(caplog.records, [good, refused, failed])
    for token in (good, refused, failed):
        assert_no_secret(spans.spans, token)
    app.resolver.close()



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
    app = middleware(adapter, transport, options)
    response = get_once(app, transport, token)
    assert response.status_code == 503
    assert "certificate" in response.json()["error_description"]

    record = record_of(caplog, "upstream_error")
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
    app = middleware(adapter, transport, options)
    assert get_once(app, transport, token).status_code == 200
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
    app = middleware(adapter, "asyncio", options)
    response = get_once(app, "asyncio", token)
    assert response.status_code == 200
    assert sorted(seen.paths) == ["/auth/o2/tokeninfo", "/user/profile"]
    assert seen.parents == {"/auth/o2/tokeninfo": "lwa.tokeninfo", "/user/profile": "lwa.profile"}
    (data,) = [d for n, d in events if n == "resolved"]
    assert data["request_id"] == seen.request_ids["/user/profile"]
    # The spans carry the ids the wire carried (httpx2's answers, read by the library).
    (lookup,) = spans.named("lwa.lookup")
    assert (lookup.attributes or {})["lwa.request_id"] == seen.request_ids["/user/profile"]
    for path, name in (("/auth/o2/tokeninfo", "lwa.tokeninfo"), ("/user/profile", "lwa.profile")):
        (call,) = spans.named(name)
        assert (call.attributes or {})["lwa.request_id"] == seen.request_ids[path]
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
        app = middleware(adapter, "asyncio", options)
        response = get_once(app, "asyncio", token)
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
    app = middleware(adapter, "asyncio", options)
    response = get_once(app, "asyncio", token)
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
    app = middleware(adapter, "asyncio", options)
    response = get_once(app, "asyncio", token)
    assert response.status_code == 503
    record = record_of(caplog, "upstream_error")
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
            LWAMiddleware(ok_asgi(), client_id=cid, http_client=factory)
        with pytest.raises(ConfigurationError, match=message):
            LWAWSGIMiddleware(ok_wsgi, client_id=cid, http_client=factory)


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
        ok_wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        http_client=lambda asyncio: (
            httpx2.AsyncClient() if asyncio else httpx2.Client(transport=Rewriting())
        ),
        on_event=lambda name, data: events.append((name, dict(data))),
    )
    assert wsgi_get(app, lwa_emulator.issue_token(scopes=["profile"])).status_code == 200
    (data,) = [d for n, d in events if n == "resolved"]
    assert data["request_id"] is None
    app.close()


def test_a_factory_handing_out_one_shared_client_still_works(lwa_emulator: LWAEmulator) -> None:
    """Review: the construction check closed the blocking client the factory
    gave it, so a factory that returns the application's one shared client
    left every lookup failing (``transport error: RuntimeError``)."""
    shared = httpx2.Client()
    token = lwa_emulator.issue_token(scopes=["profile"])
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "http_client": lambda asyncio: httpx2.AsyncClient() if asyncio else shared,
    }
    app = middleware("wsgi", "asyncio", options)
    try:
        assert get_once(app, "asyncio", token).status_code == 200
    finally:
        app.resolver.close()
        shared.close()
