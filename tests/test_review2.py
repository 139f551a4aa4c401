"""Second hostile review (rev2) of this session's fixes. Each test but the
controls is an attack that worked on ``main``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from support.callers import asgi_call, asgi_scope, bearer
from support.lwa_proxy import Answer, RewritingProxy, json_answer
from support.private import Resolver, Settings, wired_resolvers

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.signin import SignIn
from lwa_middleware.signin.starlette import SignedInUser, signin_routes
from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import ORIGIN, SESSION_SECRET, make_signin, sign_in


def _callback_status(signin: SignIn, lwa: LWAEmulator, latency: float = 0.0) -> int:
    """A sign-in through a WSGI middleware wired to ``signin``: the callback's status."""
    wsgi = LWAWSGIMiddleware(
        lambda environ, start_response: [],
        client_id=lwa.client_id,
        api_base_url=lwa.base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
        timeout=30.0,
    )
    try:
        login = signin.login()
        lwa.set_latency(latency, "token")
        back = urlsplit(lwa.consent(login.header("Location") or ""))
        cookie = (login.header("Set-Cookie") or "").split(";")[0]
        return signin.callback(parse_qsl(back.query), [cookie]).status
    finally:
        lwa.set_latency(0, "token")
        wsgi.close()
        signin.close()


def test_signins_timeout_bounds_the_token_calls_of_its_own_http_client(
    lwa_emulator: LWAEmulator,
) -> None:
    """``SignIn(timeout=)`` is "the deadline of each call to LWA's token
    endpoint", and the refresh lease (twice it) is sized on it. On the
    middleware's drivers it now holds (send(request, within)); an ``http=``
    client's calls still took that client's own timeout (here 30 s, as an
    application's shared client may have), so a refresh could outlive its
    lease and a second worker refresh the same token meanwhile. LWA takes
    3 s, SignIn allows 0.5 s: the sign-in must give up (503)."""
    signin = make_signin(lwa_emulator, timeout=0.5, http=httpx2.Client(timeout=30.0))
    assert _callback_status(signin, lwa_emulator, latency=3.0) == 503


def test_an_http_client_that_raises_something_else_is_a_503_not_a_500(
    lwa_emulator: LWAEmulator,
) -> None:
    """The middleware's drivers read any exception of an application's client
    as a transport failure (OpenTelemetry's httpx instrumentor on an httpx2
    client raises ``IndexError``); ``SignIn(http=)``'s client, instrumented the
    same way, still let it through: the callback failed with a 500 instead of
    the styled "try again" page (503)."""

    def instrumented(request: httpx2.Request) -> None:
        raise IndexError("tuple index out of range")

    client = httpx2.Client(event_hooks={"request": [instrumented]})
    signin = make_signin(lwa_emulator, http=client)
    assert _callback_status(signin, lwa_emulator) == 503


def test_a_working_http_client_still_signs_in(lwa_emulator: LWAEmulator) -> None:
    """The control of the two tests above: the same set-up signs in (303)."""
    signin = make_signin(lwa_emulator, timeout=5.0, http=httpx2.Client(timeout=30.0))
    assert _callback_status(signin, lwa_emulator) == 303


@pytest.mark.parametrize(("found", "status"), [(False, 403), (True, 200)])
def test_a_user_load_user_no_longer_finds_passes_no_scope_check(
    found: bool, status: int, lwa_emulator: LWAEmulator
) -> None:
    """A ``load_user`` that finds no user (the application deleted or banned
    it since) leaves ``UnauthenticatedUser`` in ``request.user``; but
    ``request.auth`` kept the signed-in customer's scopes, so Starlette's own
    ``@requires("profile")`` (docs/quickstart.md's way to guard a view)
    still let that customer in. Django's ``AnonymousUser`` fails
    ``login_required``; this must fail ``requires`` too (403). The control:
    the user found, 200."""
    signin = make_signin(lwa_emulator)

    @requires("profile")
    async def private(request: Request) -> JSONResponse:
        return JSONResponse({"authenticated": request.user.is_authenticated})

    routes = [*signin_routes(signin), Route("/private", private)]
    app = LWAMiddleware(
        SignedInUser(
            Starlette(routes=routes), signin, load_user=lambda linked: _User() if found else None
        ),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/private": "required"},
    )
    try:
        with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
            assert sign_in(client, lwa_emulator).status_code == 303
            assert client.get("/private").status_code == status
    finally:
        signin.close()


class _User:
    """An application's user, as ``load_user`` returns one."""

    is_authenticated = True


def test_another_apps_docs_copied_into_the_router_stay_under_the_route_table() -> None:
    """With ``api.add_middleware(LWAMiddleware, ...)`` the middleware finds the
    docs pages on the app's router by their endpoints' ``FastAPI.setup``
    qualname, whichever app's ``setup`` made them. ``include_router`` (FastAPI
    0.110, the floor, and later) copies each plain Route with
    ``add_route(prefix + route.path, route.endpoint)``: an internal app
    included under ``/admin`` brought its ``/admin/openapi.json`` and
    ``/admin/docs`` along, and they became public, describing every admin
    route to anyone, though the route table requires a token for ``/admin``.
    The app's own docs stay public (the control)."""
    fastapi = pytest.importorskip("fastapi")
    internal = fastapi.FastAPI(title="internal admin")
    api = fastapi.FastAPI()
    for route in internal.router.routes:  # what include_router(internal.router, prefix=...) does
        api.router.add_route("/admin" + route.path, route.endpoint, include_in_schema=False)
    api.add_middleware(
        LWAMiddleware,
        client_id="amzn1.application-oa2-client.review",
        api_base_url="http://127.0.0.1:9",
        routes={"/admin": "required", "/": "required"},
    )
    with TestClient(api) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get("/admin/openapi.json").status_code == 401
        assert client.get("/admin/docs").status_code == 401


def test_middlewares_wired_in_several_threads_at_once_are_all_kept(
    lwa_emulator: LWAEmulator,
) -> None:
    """``SignIn.attach`` rebuilds its list of (weakly held) middlewares: two
    built at once in two threads kept only one of theirs, and a logout then
    revoked the token on the other's cache no more (it was served there
    until its cache entry expired). Eight threads wire 400 middlewares'
    resolvers; every one must be kept. (On main a few hundred were lost.)"""
    signin = make_signin(lwa_emulator)
    settings = Settings.from_options(
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes=signin.route_policies(),
    )
    resolvers = [Resolver(settings) for _ in range(400)]
    start = threading.Barrier(8)

    def wire(share: list[Any]) -> None:
        start.wait()
        for resolver in share:
            signin.attach(resolver)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race, if any, shows
    try:
        threads = [threading.Thread(target=wire, args=(resolvers[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(wired_resolvers(signin)) == len(resolvers)
    for resolver in resolvers:
        resolver.close()
    signin.close()


def test_signin_leaves_the_jar_of_a_client_the_application_shares_alone(
    lwa_emulator: LWAEmulator,
) -> None:
    """``SignIn(http=client)`` replaced the client's cookie jar with one that
    keeps nothing, to keep LWA's cookies off other customers' token calls.
    An application that shares that client with other code (a partner API
    with a session cookie) lost its cookies at SignIn's construction, and
    the client kept none after: the partner's calls went out without them.
    The jar must be left alone (LWA's cookies stay off the token calls all
    the same: tests/test_review_edges.py)."""
    client = httpx2.Client(trust_env=False)
    client.cookies.set("partner_session", "kept", domain="partner.example")
    signin = make_signin(lwa_emulator, http=client)
    assert client.cookies.get("partner_session", domain="partner.example") == "kept"
    request = client.build_request("GET", "https://partner.example/orders")
    assert request.headers.get("cookie") == "partner_session=kept"
    assert _callback_status(signin, lwa_emulator) == 303  # signs in on it meanwhile


def test_the_asgi_middleware_leaves_the_jar_of_an_http_client_alone(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    """The same for ``http_client=``: a factory handing out the application's
    shared ``AsyncClient`` had its jar replaced on the middleware's first
    lookup, and the application's other calls lost their cookies. Lookups
    work on it, and it keeps its cookies. (A shared *sync* client cannot be
    handed out: the middleware closes the one its construction-time check
    gets, as before this session.)"""
    shared = httpx2.AsyncClient(trust_env=False)
    shared.cookies.set("partner_session", "kept", domain="partner.example")
    token = lwa_emulator.issue_token()

    def factory(asyncio: bool) -> httpx2.Client | httpx2.AsyncClient:
        return shared if asyncio else httpx2.Client(trust_env=False)

    asgi = make_asgi(http_client=factory)

    async def main() -> int:
        try:
            sent = await asgi_call(asgi, asgi_scope("/me", bearer(token)))
            status: int = sent[0]["status"]
            return status
        finally:
            await asgi.aclose()

    assert anyio.run(main) == 200
    assert shared.cookies.get("partner_session", domain="partner.example") == "kept"


def test_signins_http_client_keeps_the_body_cap(lwa_emulator: LWAEmulator) -> None:
    """``max_response_bytes`` refuses larger LWA answers unread (503), on the
    middleware's drivers and so on SignIn's calls through them; through an
    ``http=`` client, the token endpoint's answer was read whole, however
    large (a proxy gone wrong, a captive portal). Here the token answer is
    valid JSON padded past 64 KiB: the sign-in must refuse it (503), as it
    does without ``http=``."""

    def padded(path: str, answer: Answer) -> Answer:
        if not path.startswith("/auth/o2/token"):
            return answer
        status, headers, _ = answer
        body = json.dumps({**json_answer(answer), "pad": "x" * 100_000}).encode()
        return status, {**headers, "content-length": str(len(body))}, body

    with RewritingProxy(lwa_emulator) as proxy:
        proxy.rewrite_answer = padded
        lwa_emulator.add_redirect_uri(ORIGIN + "/callback")
        signin = SignIn(
            client_id=lwa_emulator.client_id,
            client_secret=lwa_emulator.client_secret,
            redirect_uri=ORIGIN + "/callback",
            session_secret=SESSION_SECRET,
            api_base_url=proxy.base_url,
            authorize_url=lwa_emulator.authorize_url,
            http=httpx2.Client(trust_env=False),
        )
        assert _callback_status(signin, lwa_emulator) == 503
