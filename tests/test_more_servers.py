"""The contract behind more real servers, each serving the suite's apps over a
loopback socket as users run it:

* ASGI: granian, daphne, gunicorn's own ``asgi`` worker and uvicorn's
  gunicorn worker (``uvicorn_worker.UvicornWorker``);
* WSGI: granian, gunicorn (``sync`` and ``gthread`` workers), uWSGI
  (``--http11-socket``, the app loaded in the master before the fork: how it
  found that the WSGI middleware's warm-start thread hung forked workers,
  ``tests/test_prefork.py``), cheroot.

Every server but cheroot (in a thread) is a child process started from
:mod:`support.more_servers`, once per module. On each: the whole error table
(:data:`support.contract.CASES`) and the success path, one lookup for a
burst of requests with one new token, and no 5xx for hostile headers.

WebSockets (granian, daphne, gunicorn ``asgi``): granian offers the
``websocket.http.response`` extension, so a refused handshake gets the real
401/403/503 with its JSON body and challenge or ``Retry-After``. daphne and
gunicorn do not: the middleware closes with 1008 (or 1013 while LWA is down)
before accepting, and the server turns that close into a bare HTTP 403, as the
ASGI spec has it; the test app's recorder (``GET /_seen``) shows the code.
(uvicorn and hypercorn: ``tests/integrations/test_websocket_denials.py``.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from conftest import ROUTES, wsgi_echo
from support.callers import HttpCaller, bearer, http_client
from support.contract import CASES, check_error, check_success
from support.more_servers import PROCESS_SERVERS, raw_status, serve_cheroot, serve_process

from lwa_middleware import LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

try:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover
    ws_connect = None


@dataclass(frozen=True)
class Served:
    name: str
    url: str


@pytest.fixture(scope="module", params=[*PROCESS_SERVERS, "cheroot"])
def server(request: pytest.FixtureRequest, lwa_emulator_server: LWAEmulator) -> Iterator[Served]:
    name = str(request.param)
    if name == "cheroot":
        if importlib.util.find_spec("cheroot") is None:
            pytest.skip("the cheroot package is not installed")
        mw = LWAWSGIMiddleware(
            wsgi_echo,
            client_id=lwa_emulator_server.client_id,
            api_base_url=lwa_emulator_server.base_url,
            routes=ROUTES,
        )
        with serve_cheroot(mw) as url:
            yield Served(name, url)
        mw.close()
        return
    spec = PROCESS_SERVERS[name]
    why = spec.missing()
    if why is not None:
        pytest.skip(why)
    with serve_process(name, lwa_emulator_server) as url:
        yield Served(name, url)


@pytest.fixture
def caller(server: Served) -> Iterator[HttpCaller]:
    http = HttpCaller(server.url)
    yield http
    http.close()


#: Where a server hands the middleware something else than the client sent.
#: granian's WSGI interface passes a header value that is not ASCII as an
#: empty string (PEP 3333 wants it decoded as latin-1), so the middleware sees
#: an empty ``x-amz-access-token``: refused all the same, as a 400, unasked.
DEVIATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("granian-wsgi", "not_visible_ascii"): {"status": 400, "error": "invalid_request"},
}


def test_error_table(server: Served, caller: HttpCaller, lwa_emulator: LWAEmulator) -> None:
    """Every row of the contract's table, in one test: the server starts once."""
    for row in CASES:
        case = dataclasses.replace(row, **DEVIATIONS.get((server.name, row.name), {}))
        lwa_emulator.reset()
        request = case.build(lwa_emulator)
        reply = caller.get(request.path, headers=request.headers, query=request.query)
        check_error(case, reply, lwa_emulator)


def test_success_cache_public_and_recovery(caller: HttpCaller, lwa_emulator: LWAEmulator) -> None:
    check_success(caller, lwa_emulator)


def test_concurrent_requests_for_a_new_token_share_one_lookup(
    server: Served, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.2)

    async def burst() -> list[int]:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30, trust_env=False) as client:
            replies = await asyncio.gather(
                *(client.get("/me", headers=bearer(token)) for _ in range(16))
            )
        return [reply.status_code for reply in replies]

    assert asyncio.run(burst()) == [200] * 16
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


#: Header lines no HTTP client sends; each server may refuse one itself (400,
#: 431, or a closed connection), but none may make anything answer a 5xx.
HOSTILE: list[bytes] = [
    b"Authorization: Bearer \x00" + b"a" * 40,
    b"Authorization: Bearer Atza|\x00\x01\x7f",
    b"Authorization: Bearer Atza|caf\xc3\xa9",  # UTF-8
    b"Authorization: Bearer \xff\xfe\x80\x81",  # not UTF-8
    b"X-Amz-Access-Token: Atza|\xe2\x80\xa8x",  # U+2028 in UTF-8
    b"Authorization: Bearer Atza|" + b"o" * 20_000,  # over-long
    b"Authorization: Bearer Atza|" + b"p" * 100_000,  # beyond most servers' limits
    b"Authorization: Bearer\t\tAtza|tabs",
    b"Authorization: Bearer a\r\nAuthorization: Bearer b",
    b"Authorization: Bearer a\r\nX-Amz-Access-Token: b",
    b"X-Amz-Access-Token: \r\nAuthorization: ",
]


def test_hostile_headers_never_get_a_5xx(server: Served, lwa_emulator: LWAEmulator) -> None:
    answers = {head[:40]: raw_status(server.url, head) for head in HOSTILE}
    assert all(status is None or 400 <= status < 500 for status in answers.values()), answers
    # None of them reached LWA, but for cheroot, which keeps only the last of
    # two Authorization headers (others join them, and two tokens are a 400):
    # the middleware sees one token, and LWA refuses it.
    assert lwa_emulator.calls["tokeninfo"] == (1 if server.name == "cheroot" else 0)
    # The server still answers.
    with http_client(server.url) as client:
        assert client.get("/public/ready").status_code == 200


# -- WebSockets --------------------------------------------------------------

#: Whether each server offers ``websocket.http.response``, as observed.
OFFERS_HTTP_RESPONSE = {"granian-asgi": True, "daphne": False, "gunicorn-asgi": False}
assert {name for name, spec in PROCESS_SERVERS.items() if spec.websocket} == set(
    OFFERS_HTTP_RESPONSE
)
#: The WebSocket tests run on these only (the same module-scoped servers).
on_websocket_servers = pytest.mark.parametrize(
    "server", sorted(OFFERS_HTTP_RESPONSE), indirect=True
)


@pytest.fixture
def ws_server(server: Served) -> Served:
    if ws_connect is None:
        pytest.skip("the websockets package is not installed")
    return server


def _seen(server: Served) -> list[dict[str, Any]]:
    """The recorder's log of handshakes since the last call (and empty it)."""
    with http_client(server.url) as client:
        seen: list[dict[str, Any]] = client.get("/_seen").json()
    return seen


def _refused(server: Served, path: str, headers: dict[str, str] | None = None) -> Any:
    url = server.url.replace("http://", "ws://") + path
    with (
        pytest.raises(InvalidStatus) as caught,
        ws_connect(url, additional_headers=headers or {}, open_timeout=10),
    ):
        pass  # pragma: no cover - the handshake must fail
    return caught.value.response


@on_websocket_servers
@pytest.mark.parametrize(
    ("row", "status", "code"),
    [("missing", 401, 1008), ("insufficient_scope", 403, 1008), ("lwa_down", 503, 1013)],
)
def test_a_refused_websocket_handshake(
    ws_server: Served, lwa_emulator: LWAEmulator, row: str, status: int, code: int
) -> None:
    _seen(ws_server)
    path, headers = "/ws", {}
    if row == "insufficient_scope":
        path, headers = "/zip", bearer(lwa_emulator.issue_token(scopes=["profile"]))
    elif row == "lwa_down":
        headers = bearer(lwa_emulator.issue_token())
        lwa_emulator.inject(Fault.DOWN)
    response = _refused(ws_server, path, headers)
    (record,) = _seen(ws_server)
    offered = "websocket.http.response" in record["extensions"]
    assert offered is OFFERS_HTTP_RESPONSE[ws_server.name], record
    if offered:
        assert record["answer"] == "websocket.http.response.start"
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        body = json.loads(response.body)
        assert body["error"] == {
            "missing": "missing_token",
            "insufficient_scope": "insufficient_scope",
            "lwa_down": "temporarily_unavailable",
        }[row]
        if status == 503:
            assert response.headers["Retry-After"].isdigit()
            assert "WWW-Authenticate" not in response.headers
        else:
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="lwa"')
        if row == "insufficient_scope":
            assert 'scope="postal_code"' in response.headers["WWW-Authenticate"]
    else:
        # Closed before accept: the server itself refuses with a bare 403.
        assert record["answer"] == "websocket.close"
        assert record["code"] == code
        assert response.status_code == 403
        assert "WWW-Authenticate" not in response.headers


@on_websocket_servers
def test_a_good_token_opens_the_websocket(ws_server: Served, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    user_id = lwa_emulator.customer_for(token).user_id
    base = ws_server.url.replace("http://", "ws://")
    with ws_connect(base + "/ws", additional_headers=bearer(token), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"user_id": user_id}
    with ws_connect(base + "/public/ws", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"user_id": None}
    assert lwa_emulator.calls["tokeninfo"] == 1
