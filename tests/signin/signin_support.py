"""Helpers of the sign-in tests: apps wired to the emulator, and a browser-ish sign-in."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.clock import FakeClock
from support.private import load_session, session_key

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.signin import SignIn
from lwa_middleware.signin.starlette import SignedInUser, signin_routes
from lwa_middleware.testing import LWAEmulator

SECRET = "amzn1.oa2-cs.v1." + "5e" * 32
SESSION_SECRET = "s" * 40
ORIGIN = "http://127.0.0.1:8000"


def make_signin(lwa: LWAEmulator, origin: str = ORIGIN, **options: Any) -> SignIn:
    options.setdefault("link", lambda identity: {"id": identity.user_id, "name": identity.name})
    # The emulator, as LWA, redirects only to registered return URLs and
    # checks the app's secret.
    lwa.add_redirect_uri(f"{origin}/callback")
    return SignIn(
        client_id=lwa.client_id,
        client_secret=lwa.client_secret,
        redirect_uri=f"{origin}/callback",
        session_secret=SESSION_SECRET,
        api_base_url=lwa.base_url,
        authorize_url=f"{lwa.base_url}/ap/oa",
        **{"scopes": ("profile",), **options},
    )


async def _me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    user = request.scope.get("user")
    return JSONResponse(
        {
            "user_id": identity.user_id if identity else None,
            "app_user": user if isinstance(user, dict) else None,
        }
    )


def starlette_app(lwa: LWAEmulator, signin: SignIn, **options: Any) -> LWAMiddleware:
    app = Starlette(
        routes=[
            *signin_routes(signin),
            Route("/me", _me, methods=["GET", "POST"]),
            Route("/", _me),
        ]
    )
    return LWAMiddleware(
        SignedInUser(app, signin),
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
        **options,
    )


def wsgi_app(lwa: LWAEmulator, signin: SignIn, **options: Any) -> LWAWSGIMiddleware:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = get_identity(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(identity.user_id if identity else "anonymous").encode()]

    return LWAWSGIMiddleware(
        app,
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
        **options,
    )


def authorize(lwa: LWAEmulator, location: str, customer: int = 0, deny: bool = False) -> str:
    """Play the customer on the emulator's consent page; the redirect back to the app."""
    if deny:
        return lwa.deny(location)
    return lwa.consent(location, customer=customer)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def sign_in(client: Any, lwa: LWAEmulator, next_path: str | None = None) -> Any:
    """The whole browser flow through a Starlette TestClient; the callback's answer."""
    login = client.get("/login", params={"next": next_path} if next_path else None)
    assert login.status_code == 302, login.text
    back = authorize(lwa, login.headers["location"])
    return client.get(path_of(back))


def session_cookie(response: Any) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        match = re.match(r"(?:__Host-)?lwa_session=([^;]*)", value)
        if match:
            return match.group(1)
    return None


class Recorder(httpx2.BaseTransport):
    """Every request SignIn sends to LWA (method, URL, form body), and the
    access tokens the token endpoint gave; ``delay`` slows them."""

    def __init__(self, delay: float = 0.0) -> None:
        import threading

        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.issued: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()
        self._inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        import time

        form = dict(parse_qsl(request.read().decode()))
        with self._lock:
            self.sent.append((request.method, str(request.url), form))
        if self.delay:
            time.sleep(self.delay)
        response = self._inner.handle_request(request)
        if request.url.path.endswith("/auth/o2/token") and response.status_code == 200:
            response.read()
            with self._lock:
                self.issued.append(response.json()["access_token"])
        return response

    def grants(self, kind: str) -> list[dict[str, str]]:
        return [form for _, _, form in self.sent if form.get("grant_type") == kind]

    def close(self) -> None:  # SignIn.close() closes its client, which closes this
        self._inner.close()


class Worker:
    """One worker of an app sharing Redis with others: its own ``SignIn`` and
    ``LWAMiddleware`` (as a process would have), sharing only Redis and the
    session secret."""

    def __init__(
        self, lwa: LWAEmulator, url: str, clock: FakeClock, delay: float = 0.0, **options: Any
    ) -> None:
        self.recorder = Recorder(delay=delay)
        self.signin = make_signin(
            lwa, redis_url=url, clock=clock, http=httpx2.Client(transport=self.recorder), **options
        )
        # The middleware shares revocations (logout) through the same Redis; a
        # worker trusts its own copy of a verdict for local_cache_ttl (5 s by
        # default, see docs/how-to/redis.md): 1 ms here, to see it at once. The
        # Redis deadline is generous (not the 50 ms default): these tests are
        # about ordering, and a loaded machine must not turn a slow call into a
        # missed revocation.
        self.app = starlette_app(
            lwa, self.signin, redis_url=url, local_cache_ttl=0.001, redis_timeout=2.0
        )

    def close(self) -> None:
        """Stop what the middleware started (its revocation subscriber): one
        left behind would log its reconnects into later tests."""
        self.app.resolver.close()

    def client(self) -> Any:
        from starlette.testclient import TestClient

        return TestClient(self.app, base_url=ORIGIN, follow_redirects=False)


def session_of(signin: SignIn, session_id: str) -> Any:
    """The stored session (test-only peek through the sealer)."""
    return load_session(signin, session_key(signin, session_id))
