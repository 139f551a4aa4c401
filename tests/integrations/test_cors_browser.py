"""CORS as a browser sees it: headless Chromium reads our answers across origins.

A page served from one origin (``http://127.0.0.1:<page port>``) calls an API
on another (``http://127.0.0.1:<api port>``: another port is another origin)
with ``fetch(..., {headers: {Authorization: "Bearer ..."}})``, which makes
Chromium send a preflight first. For each layout the docs recommend, the page
must get the 200, and must be able to *read* a 401 and a 403: the status, the
JSON ``error`` and, through ``Access-Control-Expose-Headers``, the
``WWW-Authenticate`` challenge and its ``scope="…"``.

Layouts, each on the real server users run it with:

- Starlette: ``CORSMiddleware(LWAMiddleware(app))`` on uvicorn;
- FastAPI: ``add_middleware(LWAMiddleware)`` then ``add_middleware(CORSMiddleware)``
  (the last added is outermost) on uvicorn;
- Flask: flask-cors and the ``LWA`` extension on Werkzeug's threaded server
  and on waitress.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (never
``playwright install``); without it the test is skipped, or fails when ``CI``
is set. Nothing sleeps: every wait is Playwright's or a fetch's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from integration_support import uvicorn_server
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from support.browser import launch_chromium
from support.servers import serve_waitress, serve_werkzeug

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
EXPOSE = ["WWW-Authenticate", "Retry-After"]
ROUTES = {"/shipping": ["postal_code"]}

# call(url, token) -> what the page's JS can read of the answer. A CORS failure
# rejects the fetch ("Failed to fetch"), which fails the test loudly.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>CORS probe</title>
<script>
window.call = async (url, token) => {
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const response = await fetch(url, {headers, mode: "cors", cache: "no-store",
                                     signal: AbortSignal.timeout(20000)});
  const challenge = response.headers.get("WWW-Authenticate");
  const scope = challenge && /scope="([^"]*)"/.exec(challenge);
  let body = null;
  try { body = await response.json(); } catch (e) { body = "not json"; }
  return {status: response.status, body, challenge, scope: scope ? scope[1] : null};
};
</script>
<p id="ready">ready</p>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """The origin of the calling page, served by uvicorn."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    with uvicorn_server(Starlette(routes=[Route("/", index)])) as url:
        yield url


# -- what the servers saw: (method, path, status) per answer ----------------------------


class AsgiRecorder:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording(message: Any) -> None:
            if message["type"] == "http.response.start":
                # Recorded before the answer leaves, so it is there when fetch resolves.
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, recording)


class WsgiRecorder:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        def recording(status: str, headers: Any, exc_info: Any = None) -> Any:
            self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], int(status[:3])))
            return start_response(status, headers, exc_info)

        return self.app(environ, recording)


# -- the apps ---------------------------------------------------------------------------


async def _me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"user_id": identity.user_id})


async def _shipping(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"postal_code": identity.postal_code})


def starlette_app(lwa: LWAEmulator, origin: str) -> Any:
    app = Starlette(routes=[Route("/me", _me), Route("/shipping", _shipping)])
    return CORSMiddleware(
        LWAMiddleware(app, client_id=lwa.client_id, api_base_url=lwa.base_url, routes=ROUTES),
        allow_origins=[origin],
        allow_headers=["authorization"],
        expose_headers=EXPOSE,
    )


def fastapi_app(lwa: LWAEmulator, origin: str) -> Any:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/me")
    def me(request: Request) -> dict[str, Any]:
        identity = get_identity(request)
        assert identity is not None
        return {"user_id": identity.user_id}

    @api.get("/shipping")
    def shipping(request: Request) -> dict[str, Any]:
        identity = get_identity(request)
        assert identity is not None
        return {"postal_code": identity.postal_code}

    api.add_middleware(
        LWAMiddleware, client_id=lwa.client_id, api_base_url=lwa.base_url, routes=ROUTES
    )
    # Added last, so outermost: it answers preflights and decorates our refusals.
    api.add_middleware(
        CORSMiddleware,
        allow_origins=[origin],
        allow_headers=["authorization"],
        expose_headers=EXPOSE,
    )
    return api


def flask_app(lwa: LWAEmulator, origin: str) -> Any:
    from flask import Flask
    from flask_cors import CORS

    from lwa_middleware.integrations.flask import LWA, current_identity

    app = Flask("lwa_cors_browser")
    CORS(app, origins=[origin], allow_headers=["authorization"], expose_headers=EXPOSE)
    lwa_ext = LWA(app, client_id=lwa.client_id, api_base_url=lwa.base_url, routes=ROUTES)

    @app.get("/me")
    def me() -> Any:
        identity = current_identity()
        assert identity is not None
        return {"user_id": identity.user_id}

    @app.get("/shipping")
    def shipping() -> Any:
        identity = current_identity()
        assert identity is not None
        return {"postal_code": identity.postal_code}

    @app.get("/zip")
    @lwa_ext.required("postal_code")
    def zip_() -> Any:
        return {}

    return app


# -- the servers --------------------------------------------------------------------------


Layout = tuple[Callable[[LWAEmulator, str], Any], Callable[[Any], Any], str]

LAYOUTS: dict[str, Layout] = {
    "starlette-uvicorn": (starlette_app, uvicorn_server, "asgi"),
    "fastapi-uvicorn": (fastapi_app, uvicorn_server, "asgi"),
    "flask-werkzeug": (flask_app, serve_werkzeug, "wsgi"),
    "flask-waitress": (flask_app, serve_waitress, "wsgi"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_browser_reads_answers_across_origins(
    browser: Any, page_origin: str, lwa_emulator: LWAEmulator, layout: str
) -> None:
    build, serve, kind = LAYOUTS[layout]
    recorder = (AsgiRecorder if kind == "asgi" else WsgiRecorder)(build(lwa_emulator, page_origin))
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    revoked = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.revoke(revoked)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        with serve(recorder) as api:
            assert api != page_origin
            page.goto(page_origin + "/")
            page.wait_for_selector("#ready")

            def call(path: str, token: str | None = None) -> Any:
                return page.evaluate(
                    "([url, token]) => window.call(url, token)", [api + path, token]
                )

            # 200, after a preflight the CORS layer answered without a token.
            ok = call("/me", full)
            assert ok["status"] == 200, ok
            assert ok["body"] == {"user_id": lwa_emulator.customer_for(full).user_id}
            preflights = [s for s in recorder.seen if s[0] == "OPTIONS" and s[1] == "/me"]
            assert preflights, recorder.seen
            assert all(200 <= status < 300 for _, _, status in preflights), recorder.seen
            assert recorder.seen[-1] == ("GET", "/me", 200)

            # 401 without a token: status, JSON error and the challenge, read from JS.
            missing = call("/me")
            assert missing["status"] == 401
            assert missing["body"]["error"] == "missing_token"
            assert missing["challenge"] == 'Bearer realm="lwa"'

            # 401 for a revoked token (a preflighted request).
            invalid = call("/me", revoked)
            assert invalid["status"] == 401
            assert invalid["body"]["error"] == "invalid_token"
            assert 'error="invalid_token"' in invalid["challenge"]

            # 403: the page reads which scope is missing.
            paths = ["/shipping", "/zip"] if build is flask_app else ["/shipping"]
            for path in paths:
                refused = call(path, poor)
                assert refused["status"] == 403, path
                assert refused["body"]["error"] == "insufficient_scope"
                assert 'error="insufficient_scope"' in refused["challenge"]
                assert refused["scope"] == "postal_code"
            assert call("/shipping", full)["body"] == {"postal_code": "10115"}
        # Preflights never reached LWA: one tokeninfo per token.
        assert lwa_emulator.calls["tokeninfo"] == 3
    finally:
        context.close()
