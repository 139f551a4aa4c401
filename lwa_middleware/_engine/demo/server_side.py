"""The server-side demo: :class:`~lwa_middleware.signin.SignIn` on server-rendered pages.

``lwa-middleware demo --server-side`` serves it. The browser never holds a
token: it holds an opaque ``HttpOnly`` session cookie, and the middleware
judges each request by the session's access token, refreshed on the server
when it nears expiry. No JavaScript.

=====================  ======================  ===============================================
path                   policy                  what it does
=====================  ======================  ===============================================
``/``                  optional                home: a sign-in link, or who you are
``/login``             public                  redirects to LWA (state and PKCE kept server-side)
``/callback``          public                  checks state, exchanges the code, opens a session
``/logout``            public (``POST``)       ends the session, revokes its token, clears cookie
``/profile``           required                the signed-in customer, as LWA vouched for it
``/shipping``          ``["postal_code"]``     a shipping quote; needs the ``postal_code`` scope
``/static/**``         public                  the style sheet
=====================  ======================  ===============================================

The middleware's JSON refusals (401, 403, 503) become HTML pages on the way
out (:class:`HtmlRefusals`); the 403 page names the scope it reads from the
refusal's ``WWW-Authenticate: Bearer ... scope="..."``.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from functools import cache
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...signin import SignIn
from ...signin._cookies import safe_next
from ...signin.starlette import SignedInUser, signin_routes
from ...testing._emulator import AUTHORIZE_PATH
from ..asgi import LWAMiddleware
from ..clock import Clock
from ..identity import Identity, get_identity
from .app import STATIC_DIR

if TYPE_CHECKING:
    from ...testing import LWAEmulator

__all__ = ["SERVER_SIDE_SCOPES", "HtmlRefusals", "build_server_side_demo_app"]

#: What the sign-in asks for; the customer may untick ``postal_code`` on the LWA page.
SERVER_SIDE_SCOPES = ("profile", "postal_code")

_HEADERS = {
    # Nothing to load from elsewhere, no script at all, forms only to this origin.
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}
_SCOPE = re.compile(r'\bscope="([^"]*)"')


@cache
def _template(name: str) -> Template:
    text = resources.files(__package__).joinpath("templates", name).read_text("utf-8")
    return Template(text)


def _e(value: object) -> str:
    return html.escape(str(value))


def render(title: str, body: str, identity: Identity | None = None, logout: str = "/logout") -> str:
    """A whole page: ``body`` (already HTML) in the layout; ``identity`` shows who and Log out."""
    who = ""
    if identity is not None:
        who = _template("who.html").substitute(
            name=_e(identity.display_name), logout_path=_e(logout)
        )
    return _template("layout.html").substitute(title=_e(title), body=body, who=who)


#: What ``quote`` may leave in a path as it is (RFC 3986 ``pchar``s and ``/``).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _local(path: str) -> str:
    """``path`` (a decoded ASGI path, which anyone can choose) as a link that
    stays on this site: percent-encoded (tabs, newlines, backslashes and
    non-ASCII become ``%XX``, which no browser reads as ``/``), and ``/``
    if it would still leave (``//evil.example/x``) or is not a path at all."""
    # errors="replace": a lone surrogate (no UTF-8 for it) must not make the page fail.
    return safe_next(quote(path, safe=_PATH_SAFE, errors="replace"), "/")


def _login_href(signin: SignIn, next_path: str) -> str:
    return f"{signin.login_path}?next={quote(_local(next_path), safe='/')}"


class HtmlRefusals:
    """Outside ``LWAMiddleware``: its JSON refusals become HTML pages for people.

    The status and the ``WWW-Authenticate``/``Retry-After`` headers are kept;
    the body explains, from the refusal itself, what happened and what to do:
    a 401 offers to sign in, a 403 ``insufficient_scope`` names the scope the
    ``WWW-Authenticate`` header asks for, a 503 asks to retry.
    """

    def __init__(self, app: ASGIApp, signin: SignIn) -> None:
        self.app, self.signin = app, signin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def relay(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(
                    b"application/json"
                ):
                    held.update(start=message, headers=headers, body=b"")
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    await self._explain(scope, held, send)
                return
            await send(message)

        await self.app(scope, receive, relay)

    async def _explain(self, scope: Scope, held: dict[str, Any], send: Send) -> None:
        status: int = held["start"]["status"]
        headers: dict[bytes, bytes] = held["headers"]
        try:
            error = json.loads(held["body"]).get("error", "")
        except (ValueError, AttributeError):
            error = ""
        challenge = headers.get(b"www-authenticate", b"").decode("latin-1")
        path = scope.get("path", "/")
        title, explanation, action = self._words(status, str(error), challenge, path)
        page = _template("refused.html").substitute(
            title=_e(title),
            status=_e(f"{status} {error}".strip()),
            explanation=explanation,
            challenge=_e(challenge or "(no WWW-Authenticate: not a token problem)"),
            action=action,
        )
        body = render(title, page).encode()
        kept = [(k, v) for k, v in headers.items() if k in (b"www-authenticate", b"retry-after")]
        out = [
            *kept,
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in _HEADERS.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    def _words(self, status: int, error: str, challenge: str, path: str) -> tuple[str, str, str]:
        again = f'<a id="login" class="lwa" href="{_e(_login_href(self.signin, path))}">'
        again += '<span class="lwa-mark" aria-hidden="true">a</span> Login with Amazon</a>'
        if status == 401:
            why = (
                "This page needs you signed in."
                if error == "missing_token"
                else "Your sign-in has ended; sign in again."
            )
            return "Sign-in needed", f"<p>{why}</p>", again
        if status == 403 and error == "insufficient_scope":
            found = _SCOPE.search(challenge)
            scopes = (found.group(1) if found else "").split()
            names = ", ".join(f"“{_e(s)}”" for s in scopes) or "another"
            plural = "s" if len(scopes) > 1 else ""
            return (
                "Permission missing",
                f"<p>This page needs the {names} scope{plural}, which you did not share when "
                "you signed in. Sign in again and tick it on the Amazon page.</p>",
                again,
            )
        if status == 503:
            return (
                "Try again shortly",
                "<p>Amazon could not be reached to check your sign-in. Nothing was let "
                "through; try again in a few seconds.</p>",
                f'<a href="{_e(_local(path))}">Try again</a>',
            )
        return "Refused", f"<p>The request was refused ({_e(error)}).</p>", '<a href="/">Home</a>'


class _RefreshCounter:
    """Counts the refresh grants SignIn sends to LWA (for the profile page).

    An ``http_client`` factory for the middleware, whose pooled clients the
    sign-in sends its token calls on too (one HTTP stack per process)."""

    def __init__(self) -> None:
        self.refreshes = 0
        self._lock = threading.Lock()

    def _seen(self, request: httpx2.Request) -> None:
        form = dict(parse_qsl(request.content.decode("latin-1")))
        if form.get("grant_type") == "refresh_token":
            with self._lock:
                self.refreshes += 1

    async def _aseen(self, request: httpx2.Request) -> None:
        self._seen(request)

    def __call__(self, asyncio: bool) -> httpx2.Client | httpx2.AsyncClient:
        if asyncio:
            return httpx2.AsyncClient(event_hooks={"request": [self._aseen]})
        return httpx2.Client(event_hooks={"request": [self._seen]})


def build_server_side_demo_app(
    emulator: LWAEmulator,
    url: str,
    *,
    session_secret: str | None = None,
    clock: Clock | Callable[[], float] = time,
    **options: Any,
) -> HtmlRefusals:
    """The server-side demo app on ``url`` (``http://127.0.0.1:8000``), signing in at ``emulator``.

    Registers ``{url}/callback`` with the emulator as the app's return URL.
    The access tokens' lifetime is the emulator's ``access_token_lifetime``;
    the session refreshes its token when half of it (at most a minute) is left.

    :param emulator: a running :class:`~lwa_middleware.testing.LWAEmulator`.
    :param url: the app's own origin, where it is served.
    :param session_secret: the sessions' encryption key; a random one by default.
    :param clock: the :class:`SignIn` clock, like the ``time`` module (tests move
        it with the emulator's).
    :param options: more :class:`LWAMiddleware` keyword arguments.
    :returns: the ASGI app to serve; its ``signin`` is the :class:`SignIn`, its
        ``app`` the :class:`LWAMiddleware`.
    """
    url = url.rstrip("/")
    emulator.add_redirect_uri(url + "/callback")
    lifetime = float(emulator.access_token_lifetime)
    counter = _RefreshCounter()
    accounts: dict[str, int] = {}
    accounts_lock = threading.Lock()

    def link(identity: Identity) -> dict[str, Any]:
        # Your app's user table: one account per Amazon customer, made at first sign-in.
        with accounts_lock:
            number = accounts.setdefault(identity.user_id, len(accounts) + 1)
        return {"account": number, "name": identity.name}

    signin = SignIn(
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        redirect_uri=url + "/callback",
        session_secret=session_secret or secrets.token_urlsafe(32),
        api_base_url=emulator.base_url,
        authorize_url=emulator.base_url + AUTHORIZE_PATH,
        scopes=SERVER_SIDE_SCOPES,
        link=link,
        refresh_margin=min(60.0, lifetime / 2),
        clock=clock,
    )

    def page(title: str, body: str, request: Request, status: int = 200) -> HTMLResponse:
        return HTMLResponse(
            render(title, body, get_identity(request), signin.logout_path),
            status_code=status,
            headers=_HEADERS,
        )

    async def home(request: Request) -> Response:
        identity = get_identity(request)
        if identity is None:
            content = _template("signed_out.html").substitute(
                login_href=_e(_login_href(signin, "/profile"))
            )
        else:
            content = _template("signed_in.html").substitute(name=_e(identity.display_name))
        return page("Home", _template("home.html").substitute(content=content), request)

    async def profile(request: Request) -> Response:
        identity = get_identity(request)
        if identity is None:  # only if someone loosens the route table
            return page("Sign-in needed", "<p>Sign in first.</p>", request, 401)
        user = request.scope.get("user")
        account = (
            f"#{user['account']} (made at your first sign-in by link())"
            if isinstance(user, dict)
            else "(signed in with a Bearer token, not a session)"
        )
        body = _template("profile.html").substitute(
            name=_e(identity.name or "(not shared)"),
            email=_e(identity.email or "(not shared)"),
            postal_code=_e(identity.postal_code or "(not shared)"),
            user_id=_e(identity.user_id),
            scopes=_e(" ".join(sorted(identity.scopes))),
            account=_e(account),
            expires_in=max(0, int(identity.expires_at - time.time())),
            refreshes=counter.refreshes,
            lifetime=_e(f"{lifetime:g}"),
        )
        return page("Your profile", body, request)

    async def shipping(request: Request) -> Response:
        identity = get_identity(request)
        if identity is None or identity.postal_code is None:  # a loosened route table
            return page("Permission missing", "<p>No postal code.</p>", request, 403)
        days = 1 + sum(map(ord, identity.postal_code)) % 4
        message = (
            f"Ships to {identity.postal_code} in {days} business day{'s' if days > 1 else ''}."
        )
        body = _template("shipping.html").substitute(message=_e(message))
        return page("Shipping quote", body, request)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await middleware.aclose()
        signin.close()

    starlette = Starlette(
        routes=[
            *signin_routes(signin),
            Route("/", home),
            Route("/profile", profile),
            Route("/shipping", shipping),
            Route("/favicon.ico", favicon),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
    )
    routes: Mapping[str, Any] = {
        **signin.route_policies(),
        "/": "optional",
        "/profile": "required",
        "/shipping": ["postal_code"],
        "/static/**": "public",
        "/favicon.ico": "public",
    }
    middleware = LWAMiddleware(
        SignedInUser(starlette, signin),
        client_id=emulator.client_id,
        api_base_url=emulator.base_url,
        session=signin,
        routes=routes,
        **{"http_client": counter, **options},
    )
    return HtmlRefusals(middleware, signin)
