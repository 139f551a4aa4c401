"""Cross-site WebSocket hijacking: a cookie-authenticated handshake must come
from the app's origin; Bearer- and query-authenticated ones are unaffected.

Browsers attach cookies to a WebSocket handshake whichever page opens it,
and the same-origin policy does not guard WebSockets: only the ``Origin``
header, which browsers always send on a handshake (RFC 6455, section 4.1),
tells the app's pages from anyone else's. Real uvicorn throughout; the last
test has a real Chromium open the socket from another origin (another port
of 127.0.0.1: the same *site*, so ``SameSite=Lax`` still sends the cookie).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
from support.browser import launch_chromium
from support.private import bind_socket, serve_in_thread, url_for

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.signin.starlette import SignedInUser, signin_routes
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    authorize,
    make_signin,
    session_cookie,
    sign_in,
    starlette_app,
    wsgi_app,
)

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

ADA = BUILTIN_CUSTOMERS[0].user_id  # signs in with the cookie
GRACE = BUILTIN_CUSTOMERS[1]  # holds a Bearer token
#: A page that opens the app's socket and reports what came of it in its title.
_OPENER = """<!doctype html><title>waiting</title><script>
const socket = new WebSocket(%s);
socket.onmessage = (event) => { document.title = "in:" + event.data; };
socket.onclose = () => { if (!document.title.startsWith("in:")) document.title = "refused"; };
</script>"""


async def _who(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = get_identity(websocket)
    await websocket.send_text(identity.user_id if identity else "anonymous")
    await websocket.close()


def _opener_page(app_ws_url: str) -> HTMLResponse:
    return HTMLResponse(_OPENER % json.dumps(app_ws_url))


@dataclass
class App:
    url: str
    ws: str
    http: httpx2.Client

    @property
    def cookie(self) -> str:
        return f"lwa_session={self.http.cookies['lwa_session']}"


@pytest.fixture
def app(lwa_emulator: LWAEmulator) -> Iterator[App]:
    sock = bind_socket("127.0.0.1", 0)
    url = url_for(sock)
    signin = make_signin(lwa_emulator, origin=url)

    async def page(request: Request) -> HTMLResponse:
        return _opener_page(url.replace("http", "ws", 1) + "/ws")

    asgi = LWAMiddleware(
        SignedInUser(
            Starlette(
                routes=[*signin_routes(signin), Route("/page", page), WebSocketRoute("/ws", _who)]
            ),
            signin,
        ),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/page": "public", "/ws": "required"},
    )
    with serve_in_thread(asgi, sock=sock), httpx2.Client(timeout=10) as http:
        login = http.get(url + "/login")
        assert login.status_code == 302, login.text
        back = http.get(authorize(lwa_emulator, login.headers["location"]))
        assert back.status_code == 303, back.text
        yield App(url, url.replace("http", "ws", 1) + "/ws", http)


def _open(url: str, headers: dict[str, str], origin: str | None = None) -> str:
    """What the socket says (the user id), or the refused handshake's status
    and error (uvicorn offers the ASGI denial-response extension)."""

    async def go() -> str:
        try:
            async with connect(
                url, additional_headers=headers, origin=origin, open_timeout=10  # type: ignore[arg-type]
            ) as ws:
                return str(await asyncio.wait_for(ws.recv(), 10))
        except InvalidStatus as refused:
            error = json.loads(refused.response.body or b"{}").get("error")
            return f"{refused.response.status_code} {error}"

    return asyncio.run(go())


def test_a_cookie_handshake_from_the_apps_origin_gets_in(app: App) -> None:
    assert _open(app.ws, {"Cookie": app.cookie}, origin=app.url) == ADA
    # Origins compare as origins: a default port or upper case changes nothing.
    assert _open(app.ws, {"Cookie": app.cookie}, origin=app.url.upper()) == ADA


@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin: a browser always sends one, so this is no browser page
        "http://evil.example",
        "null",  # a sandboxed frame or a data: URL
        "http://127.0.0.1:1",  # another port: another origin, the same site
        "https://127.0.0.1",  # another scheme
        "http://127.0.0.1:99999",  # malformed: refused, not a 500
        "http://[::1",
    ],
)
def test_a_cookie_handshake_from_elsewhere_is_refused(app: App, origin: str | None) -> None:
    headers = {"Cookie": app.cookie}
    if origin is None:  # Sec-Fetch-Site is no proof for a handshake: only Origin is
        headers["Sec-Fetch-Site"] = "same-origin"
    assert _open(app.ws, headers, origin=origin) == "403 cross_site_request"


def test_bearer_and_query_handshakes_are_not_judged_by_origin(
    app: App, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(customer=GRACE)
    bearer = {"Authorization": f"Bearer {token}", "Cookie": app.cookie}
    assert _open(app.ws, bearer, origin="http://evil.example") == GRACE.user_id
    query = f"{app.ws}?access_token={token}"
    assert _open(query, {"Cookie": app.cookie}, origin="http://evil.example") == GRACE.user_id
    # Without any credential, a handshake is refused as before (not as cross-site).
    assert _open(app.ws, {}, origin="http://evil.example") == "401 missing_token"


def test_without_the_extension_a_cross_site_handshake_is_closed_with_1008(
    lwa_emulator: LWAEmulator,
) -> None:
    """Servers without ``websocket.http.response`` (daphne, older uvicorn):
    the middleware closes before accepting, which they answer with 403."""
    signin = make_signin(lwa_emulator)
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        cookie = session_cookie(sign_in(client, lwa_emulator))
    assert cookie
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    headers = [(b"cookie", f"lwa_session={cookie}".encode()), (b"origin", b"http://evil.example")]
    scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": headers}

    async def run() -> None:
        await app(scope, receive, send)
        await app.aclose()

    asyncio.run(run())
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "cross_site_request"}]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.mark.browser
def test_chromium_on_another_origin_cannot_open_the_victims_socket(
    app: App, browser: Any
) -> None:
    attacker_sock = bind_socket("127.0.0.1", 0)
    attacker = url_for(attacker_sock)

    async def evil(request: Request) -> HTMLResponse:
        return _opener_page(app.ws)

    context = browser.new_context()
    try:
        # The victim is signed in: the browser holds the session cookie.
        context.add_cookies(
            [
                {
                    "name": "lwa_session",
                    "value": app.http.cookies["lwa_session"],
                    "url": app.url,
                    "sameSite": "Lax",
                    "httpOnly": True,
                }
            ]
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        with serve_in_thread(Starlette(routes=[Route("/", evil)]), sock=attacker_sock):
            page.goto(attacker + "/")
            page.wait_for_function("document.title !== 'waiting'")
            assert page.title() == "refused"
        # The app's own page, in the same browser with the same cookie, gets in:
        # the refusal above is about the origin, not a broken socket.
        page.goto(app.url + "/page")
        page.wait_for_function("document.title !== 'waiting'")
        assert page.title() == f"in:{ADA}"
    finally:
        context.close()



def _wsgi_handshake(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A WebSocket opening handshake (RFC 6455, section 4.1) sent to a WSGI server."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request(
            "GET",
            "/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                **headers,
            },
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("origin", "upgrade"),
    [
        ("http://evil.example", "websocket"),
        ("http://evil.example", "WebSocket"),  # the token is case-insensitive
        (None, "websocket"),  # Sec-Fetch-Site: same-origin is no proof here
        ("null", "websocket"),
    ],
)
def test_a_cross_site_cookie_handshake_through_the_wsgi_middleware_is_refused(
    lwa_emulator: LWAEmulator, origin: str | None, upgrade: str
) -> None:
    """WSGI WebSocket libraries (flask-sock, gevent-websocket) see the
    handshake as a ``GET`` with ``Upgrade: websocket`` and take the socket
    over from inside the app: the WSGI middleware must judge its origin as
    the ASGI one does. The app here answers the user id, which is what such
    a socket would go on to serve (real werkzeug)."""
    from support.servers import serve_werkzeug

    signin = make_signin(lwa_emulator)
    with TestClient(
        starlette_app(lwa_emulator, signin), base_url=ORIGIN, follow_redirects=False
    ) as client:
        cookie = session_cookie(sign_in(client, lwa_emulator))
    assert cookie
    app = wsgi_app(lwa_emulator, signin)  # /ws: required, as any unlisted path
    try:
        with serve_werkzeug(app) as url:
            headers = {"Cookie": f"lwa_session={cookie}", "Upgrade": upgrade}
            if origin is None:
                headers["Sec-Fetch-Site"] = "same-origin"
            else:
                headers["Origin"] = origin
            status, body = _wsgi_handshake(url, headers)
            assert (status, json.loads(body)["error"]) == (403, "cross_site_request")
            # The app's own pages still get in: the refusal is about the origin.
            headers.pop("Sec-Fetch-Site", None)
            headers["Origin"] = ORIGIN
            assert _wsgi_handshake(url, headers) == (200, ADA.encode())
    finally:
        app.close()



@pytest.fixture(params=["extension", "middleware"])
def flask_socket_app(request: pytest.FixtureRequest, lwa_emulator: LWAEmulator) -> Iterator[str]:
    """A Flask app whose ``/ws`` is a real WebSocket (flask-sock, as WSGI users
    write one), guarded by the Flask extension or by ``LWAWSGIMiddleware``
    around it; ``/page`` opens that socket. Served by real werkzeug, whose
    address (the app's origin) is known only once it listens. Its URL."""
    pytest.importorskip("flask_sock")
    from flask import Flask
    from flask import request as flask_request
    from flask_sock import Sock
    from support.servers import serve_werkzeug

    from lwa_middleware import LWAWSGIMiddleware
    from lwa_middleware.integrations.flask import LWA
    from lwa_middleware.signin.flask import signin_blueprint

    made: dict[str, Any] = {}

    def later(environ: dict[str, Any], start_response: Any) -> Any:
        return made["app"](environ, start_response)

    with serve_werkzeug(later) as url:
        signin = make_signin(lwa_emulator, origin=url)
        app = Flask(__name__)

        @app.route("/page")
        def page() -> Any:
            return _opener_page(url.replace("http", "ws", 1) + "/ws").body

        @Sock(app).route("/ws")
        def ws(socket: Any) -> None:
            identity = get_identity(flask_request.environ)
            socket.send(identity.user_id if identity else "anonymous")
            # Kept open until the page has it: closed at once, the message
            # never reached Chromium's page here. The page never closes it.
            with contextlib.suppress(Exception):
                socket.receive(timeout=10)

        app.register_blueprint(signin_blueprint(signin))
        options = {
            "client_id": lwa_emulator.client_id,
            "api_base_url": lwa_emulator.base_url,
            "session": signin,
            "routes": {**signin.route_policies(), "/page": "public", "/ws": "required"},
        }
        if request.param == "extension":
            made["app"] = app
            guarded = LWA(app, **options).middleware(app)
        else:
            made["app"] = guarded = LWAWSGIMiddleware(app.wsgi_app, **options)
        try:
            yield url
        finally:
            guarded.close()


@pytest.mark.browser
def test_chromium_on_another_origin_cannot_open_the_victims_wsgi_socket(
    flask_socket_app: str, lwa_emulator: LWAEmulator, browser: Any
) -> None:
    """As the ASGI test above, on the WSGI side: flask-sock on real werkzeug,
    the Flask extension or the WSGI middleware judging the handshake."""
    url = flask_socket_app
    with httpx2.Client(timeout=10) as http:
        login = http.get(url + "/login")
        assert login.status_code == 302, login.text
        back = http.get(authorize(lwa_emulator, login.headers["location"]))
        assert back.status_code == 303, back.text
        cookie = http.cookies["lwa_session"]
    attacker_sock = bind_socket("127.0.0.1", 0)

    async def evil(request: Request) -> HTMLResponse:
        return _opener_page(url.replace("http", "ws", 1) + "/ws")

    context = browser.new_context()
    try:
        context.add_cookies(
            [{"name": "lwa_session", "value": cookie, "url": url, "sameSite": "Lax",
              "httpOnly": True}]
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        with serve_in_thread(Starlette(routes=[Route("/", evil)]), sock=attacker_sock):
            page.goto(url_for(attacker_sock) + "/")
            page.wait_for_function("document.title !== 'waiting'")
            assert page.title() == "refused"
        # The app's own page, same browser and cookie, gets in: the socket works.
        page.goto(url + "/page")
        page.wait_for_function("document.title !== 'waiting'")
        assert page.title() == f"in:{ADA}"
    finally:
        context.close()
