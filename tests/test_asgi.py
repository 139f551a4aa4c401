"""The contract through the ASGI middleware: Starlette's TestClient and httpx's ASGITransport."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient, WebSocketDenialResponse
from support.callers import asgi_call, asgi_scope, bearer

from lwa_middleware import LWAMiddleware, UnsupportedScope
from lwa_middleware.testing import Fault, LWAEmulator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



# -- the error table -----------------------------------------------------------


# -- success -------------------------------------------------------------------


def test_valid_token_gives_an_identity_and_is_cached(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"], name="Ada Lovelace", email="ada@example.com"
    )
    customer = lwa_emulator.customer_for(token)
    app = make_asgi()
    with TestClient(app) as client:
        first = client.get("/me", headers=bearer(token))
        assert first.status_code == 200
        for _ in range(3):
            again = client.get("/me", headers=bearer(token))
            # The cached answer attaches exactly what the first one did.
            assert again.json() == first.json()
    body = first.json()
    identity = body["identity"]
    assert identity["user_id"] == customer.user_id
    assert identity["name"] == "Ada Lovelace"
    assert identity["email"] == "ada@example.com"
    assert identity["postal_code"] == customer.postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert identity["client_id"] == lwa_emulator.client_id
    assert abs(identity["expires_at"] - (time.time() + 3600)) < 60
    assert body["user"] == {"is_authenticated": True, "display_name": "Ada Lovelace"}
    assert body["auth_scopes"] == ["postal_code", "profile", "profile:user_id"]
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert app.stats.hits >= 3


# -- public and optional -------------------------------------------------------


# -- Starlette integration -----------------------------------------------------


def test_starlette_requires(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with_zip = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    without = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_asgi()) as client:
        ok = client.get("/requires-zip", headers=bearer(with_zip))
        assert ok.status_code == 200
        assert ok.json()["identity"]["postal_code"] is not None
        assert client.get("/requires-zip", headers=bearer(without)).status_code == 403
        assert client.get("/requires-zip").status_code == 401


def test_lifespan_passes_through(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    token = lwa_emulator.issue_token()
    with TestClient(make_asgi(app)) as client:
        assert events == ["startup"]
        assert client.get("/", headers=bearer(token)).json() == {"greeting": "hello"}
    assert events == ["startup", "shutdown"]
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_lifespan_passes_through_untouched(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    mw = make_asgi(app)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(mw(scope, None, None))  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan", "asgi": {"version": "3.0"}}]
    assert lwa_emulator.calls["tokeninfo"] == 0


@pytest.mark.parametrize("kind", ["custom.thing", "webtransport", "HTTP", "", None])
def test_unknown_scope_types_fail_closed(
    kind: Any, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    # A scope type the middleware has no rule for could carry a request to a
    # protected app: it is refused, never passed through.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    mw = make_asgi(app)
    with pytest.raises(UnsupportedScope, match="refuses ASGI scope type"):
        asyncio.run(mw({"type": kind, "path": "/me"}, None, None))  # type: ignore[arg-type]
    assert seen == []


# -- websockets ----------------------------------------------------------------


def test_websocket_with_a_valid_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    user_id = lwa_emulator.customer_for(token).user_id
    with TestClient(make_asgi()) as client:
        with client.websocket_connect("/ws", headers=bearer(token)) as ws:
            assert ws.receive_json() == {"user_id": user_id}
        # Browsers cannot set headers on a websocket: the query works too.
        with client.websocket_connect("/ws?access_token=" + quote(token, safe="")) as ws:
            assert ws.receive_json() == {"user_id": user_id}
    assert lwa_emulator.calls["tokeninfo"] == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer Atza|" + "n" * 400}, 401),
        ({"Authorization": "Bearer"}, 400),
        ({"Authorization": "Bearer a", "x-amz-access-token": "b"}, 400),
        ({"x-amz-access-token": "x" * 3000}, 401),
    ],
    ids=["missing", "invalid", "malformed", "two-tokens", "oversized"],
)
def test_websocket_without_a_valid_token_is_never_accepted(
    headers: dict[str, str],
    status: int,
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
) -> None:
    # TestClient offers the websocket.http.response extension: the refusal
    # is the HTTP answer itself.
    with TestClient(make_asgi()) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=headers) as ws,
        ):
            ws.receive_json()  # pragma: no cover - must not get here
        assert excinfo.value.status_code == status
        assert excinfo.value.headers["www-authenticate"].startswith('Bearer realm="lwa"')


def test_websocket_with_revoked_token_and_wrong_scope(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.revoke(token)
    app = make_asgi(routes={"/ws": ["postal_code"]})
    with TestClient(app) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(token)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 401
        assert excinfo.value.json()["error"] == "invalid_token"
        no_zip = lwa_emulator.issue_token(scopes=["profile"])
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(no_zip)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 403
        assert 'scope="postal_code"' in excinfo.value.headers["www-authenticate"]


def test_websocket_when_lwa_is_down_is_not_accepted(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.DOWN)
    with TestClient(make_asgi()) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(token)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 503
        assert "retry-after" in excinfo.value.headers


def test_optional_websocket_without_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with (
        TestClient(make_asgi(routes={"/ws": "optional"})) as client,
        client.websocket_connect("/ws") as ws,
    ):
        assert ws.receive_json() == {"user_id": None}
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_public_websocket_is_open(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with (
        TestClient(make_asgi()) as client,
        client.websocket_connect("/public/ws", headers={"Authorization": "Bearer a b"}) as ws,
    ):
        assert ws.receive_json() == {"user_id": None}
    assert lwa_emulator.calls["tokeninfo"] == 0


# -- plumbing and options ------------------------------------------------------


def test_api_base_url_plumbing(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    app = make_asgi(api_base_url=lwa_emulator.base_url + "/")
    assert app.settings.tokeninfo_url == lwa_emulator.base_url + "/auth/o2/tokeninfo"
    with TestClient(app) as client:
        assert client.get("/me", headers=bearer(token)).status_code == 200
    targets = {(r.endpoint, r.method, r.target) for r in lwa_emulator.requests}
    assert ("tokeninfo", "GET", "/auth/o2/tokeninfo") in targets
    assert ("profile", "GET", "/user/profile") in targets
    for request in lwa_emulator.requests:
        assert "access_token" not in request.target
        if request.endpoint == "tokeninfo":
            assert "x-amz-access-token" in request.header_names
        if request.endpoint == "profile":
            assert "authorization" in request.header_names
    assert lwa_emulator.token_in_url == 0


def test_region_plumbing(make_asgi: Callable[..., LWAMiddleware]) -> None:
    for region, host in (
        ("na", "api.amazon.com"),
        ("eu", "api.amazon.co.uk"),
        ("fe", "api.amazon.co.jp"),
    ):
        app = make_asgi(api_base_url=None, region=region)
        assert app.settings.tokeninfo_url == f"https://{host}/auth/o2/tokeninfo"
        assert app.settings.profile_url == f"https://{host}/user/profile"


def test_an_lwa_answering_404_fails_closed(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    # A 404 (a wrong host, a proxy in the way) is not LWA saying "no".
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = lwa_emulator.issue_token()
        app = make_asgi(api_base_url=f"http://127.0.0.1:{server.server_port}")
        with TestClient(app) as client:
            response = client.get("/me", headers=bearer(token))
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 503
    assert "retry-after" in response.headers


def _token_free(obj: Any, token: str) -> bool:
    text = repr(obj)
    return all(v not in text for v in (token, quote(token, safe=""), token[-40:]))


@pytest.mark.anyio
async def test_strip_credentials_raw_path_via_httpx(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    scopes: list[dict[str, Any]] = []
    app = make_asgi(strip_credentials=True)
    inner = app.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(dict(scope))
        await inner(scope, receive, send)

    app.app = spy
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        url = "/me?x=1&access_token=" + quote(token, safe="")
        for _ in range(2):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.json()["query"] == "x=1"
    await app.aclose()
    assert len(scopes) == 2
    for scope in scopes:
        assert _token_free(scope, token)




# -- paths: root_path, newlines --------------------------------------------------


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _status(app: LWAMiddleware, path: str, token: str | None = None, root: str = "") -> int:
    async def run() -> list[dict[str, Any]]:
        try:
            return await asgi_call(app, asgi_scope(path, bearer(token) if token else None,
                                                   root_path=root))
        finally:
            await app.aclose()

    return int(asyncio.run(run())[0]["status"])


def test_routes_below_a_root_path_keep_their_policy(lwa_emulator: LWAEmulator) -> None:
    app = LWAMiddleware(
        _ok,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/shipping": ["postal_code"], "/admin": "required"},
        default="public",
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert _status(app, "/svc/shipping", token, root="/svc") == 403
    assert _status(app, "/svc/admin", None, root="/svc") == 401
    assert _status(app, "/svcx/admin", None, root="/svc") == 200  # not below the root


@pytest.mark.parametrize("path", ["/admin\n", "/admin\r\n", "/files/a\n"])
def test_a_trailing_newline_does_not_escape_a_route(path: str, lwa_emulator: LWAEmulator) -> None:
    app = LWAMiddleware(
        _ok,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/admin": "required", "/files/**": "required"},
        default="public",
    )
    assert _status(app, path) == 401
