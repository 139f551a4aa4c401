"""The demo web app: a static page and a small JSON API behind :class:`LWAMiddleware`.

=====================  ======================  ===============================================
path                   policy                  what it does
=====================  ======================  ===============================================
``/``, ``/callback``   public                  the page; ``/callback`` is where the LWA
                                               sign-in page sends the browser back with an
                                               authorization code, which the page exchanges
                                               (PKCE) with LWA's JavaScript SDK
``/static/**``         public                  the page's script and style sheet
``/api/config``        public                  the client id, scopes and the SDK's address
``/api/stats``         public                  the middleware's cache and lookup counters
``/api/me``            required                the signed-in customer, as LWA vouched for it
``/api/shipping``      ``["postal_code"]``     a shipping quote; needs the ``postal_code`` scope
``/api/logout``        required (``POST``)     revokes the token (logout): refused from now on
=====================  ======================  ===============================================

Anything else falls under the default policy, ``required``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..asgi import LWAMiddleware
from ..errors import AuthError, ConfigurationError, SharedCacheError
from ..identity import get_identity
from ..tokens import extract_token

if TYPE_CHECKING:
    from ...testing import LWAEmulator

__all__ = ["DEMO_ROUTES", "build_demo_app"]

STATIC_DIR = Path(__file__).with_name("static")

#: The route table the demo protects itself with; a good template for your own.
DEMO_ROUTES: Mapping[str, Any] = {
    "/": "public",
    "/callback": "public",
    "/static/**": "public",
    "/favicon.ico": "public",
    "/api/config": "public",
    "/api/stats": "public",
    "/api/me": "required",
    "/api/shipping": ["postal_code"],
    "/api/logout": "required",
}

#: Scopes the sign-in button asks for; the customer may untick some on the LWA page.
REQUESTED_SCOPES = ("profile", "postal_code")

_NO_STORE = {"cache-control": "no-store"}


def _page_headers(lwa_origin: str) -> dict[str, str]:
    """The page's headers: no inline script, and only LWA's SDK from elsewhere.

    A strict policy costs nothing and shows newcomers what a token-handling
    page should send. The one other origin it uses is LWA's: its JavaScript
    SDK (a script, and the frame it calls LWA through); the page itself
    connects to its own origin only. ``no-referrer`` keeps the
    ``/callback?code=...`` URL from leaking to anything it loads.
    """
    return {
        "content-security-policy": (
            f"default-src 'none'; script-src 'self' {lwa_origin}; style-src 'self'; "
            f"frame-src {lwa_origin}; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }


def _middleware(request: Request) -> LWAMiddleware:
    middleware: LWAMiddleware = request.app.state.lwa
    return middleware


async def _page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=request.app.state.page_headers)


async def _favicon(request: Request) -> Response:
    return Response(status_code=204)


async def _config(request: Request) -> JSONResponse:
    state = request.app.state
    return JSONResponse(
        {
            # Amazon's is https://assets.loginwithamazon.com/sdk/na/login1.js.
            "sdk_url": state.sdk_url,
            "client_id": state.client_id,
            "scopes": list(REQUESTED_SCOPES),
        },
        headers=_NO_STORE,
    )


async def _stats(request: Request) -> JSONResponse:
    return JSONResponse(_middleware(request).stats.snapshot(), headers=_NO_STORE)


async def _me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    # The middleware guarantees an identity on a "required" route; the check
    # only keeps this endpoint honest if someone loosens the route table.
    if identity is None:
        return JSONResponse({"error": "anonymous"}, status_code=401, headers=_NO_STORE)
    return JSONResponse(
        {
            "identity": identity.to_dict(),
            "display_name": identity.display_name,
            "expires_in": max(0, int(identity.expires_at - time.time())),
        },
        headers=_NO_STORE,
    )


async def _shipping(request: Request) -> JSONResponse:
    identity = get_identity(request)
    if identity is None or identity.postal_code is None:
        return JSONResponse({"error": "no postal code"}, status_code=403, headers=_NO_STORE)
    postal_code = identity.postal_code
    # A made-up but stable quote, so the same customer always sees the same answer.
    days = 1 + sum(map(ord, postal_code)) % 4
    return JSONResponse(
        {
            "postal_code": postal_code,
            "carrier": "Demo Parcel Service",
            "days": days,
            "message": f"Ships to {postal_code} in {days} business day{'s' if days > 1 else ''}.",
        },
        headers=_NO_STORE,
    )


async def _logout(request: Request) -> JSONResponse:
    try:
        token = extract_token(request.scope["headers"], request.scope.get("query_string", b""))
    except AuthError:
        token = None
    # The middleware already admitted this request, so a token is there; the
    # guard is for a route table loosened by hand. revoke(), not invalidate():
    # a logout must refuse the token from now on, not merely forget it (the
    # next request would resolve it again while it is live at Amazon).
    if token is not None:
        try:
            await _middleware(request).revoke(token)
        except SharedCacheError:
            # Refused here, but other workers may not know yet: say so.
            body = {"error": "temporarily_unavailable", "error_description": "Logout not shared."}
            return JSONResponse(body, status_code=503, headers={**_NO_STORE, "retry-after": "1"})
    return JSONResponse({"logged_out": True}, headers=_NO_STORE)


def build_demo_app(emulator: LWAEmulator, **options: Any) -> LWAMiddleware:
    """Build the demo app, protected by an :class:`LWAMiddleware` that trusts ``emulator``.

    The emulator must be started (its :attr:`~LWAEmulator.base_url` is read
    here), and the page's ``/callback`` URL registered with it as a return
    URL (``redirect_uris=[...]`` or :meth:`~LWAEmulator.add_redirect_uri`)
    once the demo's address is known. The returned middleware *is* the ASGI
    app to serve; the endpoints reach it through ``request.app.state.lwa``,
    which is how ``/api/logout`` calls :meth:`LWAMiddleware.revoke` and
    ``/api/stats`` reads :attr:`LWAMiddleware.stats`.

    :param emulator: a running :class:`~lwa_middleware.testing.LWAEmulator`.
    :param options: more :class:`LWAMiddleware` keyword arguments
        (``cache_ttl``, ``timeout``, ...).
    :returns: the ASGI app.

    Example::

        # The emulator's default return URL is http://127.0.0.1:8000/callback.
        with LWAEmulator() as lwa:
            app = build_demo_app(lwa)
            uvicorn.run(app, port=8000)
    """

    if options.get("strip_credentials"):
        # /api/logout reads the token to revoke it: stripped, logout would
        # silently do nothing.
        raise ConfigurationError("the demo's logout needs the token: leave strip_credentials off")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await app.state.lwa.aclose()

    starlette = Starlette(
        routes=[
            Route("/", _page),
            Route("/callback", _page),
            Route("/favicon.ico", _favicon),
            Route("/api/config", _config),
            Route("/api/stats", _stats),
            Route("/api/me", _me),
            Route("/api/shipping", _shipping),
            Route("/api/logout", _logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
    )
    middleware = LWAMiddleware(
        starlette,
        client_id=emulator.client_id,
        api_base_url=emulator.base_url,
        routes=DEMO_ROUTES,
        **options,
    )
    starlette.state.lwa = middleware
    starlette.state.client_id = emulator.client_id
    starlette.state.sdk_url = emulator.sdk_url
    starlette.state.page_headers = _page_headers(emulator.base_url)
    return middleware
