"""A hostile review of the edges after the redesign (issues 18, 20, 21, 22):
each test here is an attack that worked on ``main`` before its fix.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from support.callers import asgi_call, asgi_scope, bearer
from support.clock import FakeClock
from support.lwa_proxy import Answer, RewritingProxy, json_answer
from werkzeug.test import Client

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.signin import SignIn
from lwa_middleware.signin.starlette import SignedInUser, signin_routes
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    SESSION_SECRET,
    make_signin,
    session_of,
)


class _CookieWatch:
    """An LWA that sets a cookie on every answer, and the cookies it is sent back."""

    def __init__(self, proxy: RewritingProxy) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()
        proxy.rewrite_request = self._request
        proxy.rewrite_answer = self._answer

    def _request(self, path: str, headers: dict[str, str]) -> dict[str, str]:
        if "cookie" in headers:
            with self._lock:
                self.sent.append(headers["cookie"])
        return headers

    @staticmethod
    def _answer(path: str, answer: Answer) -> Answer:
        status, headers, body = answer
        # A load balancer's or a session cookie of LWA's: bound to the customer asked about.
        return status, {**headers, "set-cookie": "amz-session=first-customer; Path=/"}, body


async def _asgi_status(mw: LWAMiddleware, token: str) -> int:
    sent = await asgi_call(mw, asgi_scope("/me", bearer(token)))
    status: int = sent[0]["status"]
    return status


def _own_client(asyncio: bool) -> httpx2.Client | httpx2.AsyncClient:
    """An ``http_client`` factory as the docs show one (a proxy would go here)."""
    return (httpx2.AsyncClient if asyncio else httpx2.Client)(trust_env=False)


@pytest.mark.parametrize(
    ("backend", "hook"),
    [("asyncio", False), ("trio", False), ("wsgi", False), ("asyncio", True), ("wsgi", True)],
)
def test_a_cookie_lwa_sets_never_travels_with_another_customers_lookup(
    backend: str,
    hook: bool,
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    """The aiohttp transport keeps no cookie jar; the httpx2 clients (trio, and
    the clients of an ``http_client`` factory) kept one per client, so a
    ``Set-Cookie`` in the answer about one customer's token went back to LWA
    with the next customer's lookups."""
    ada, grace = (lwa_emulator.issue_token(customer=c) for c in BUILTIN_CUSTOMERS[:2])
    options: dict[str, Any] = {"http_client": _own_client} if hook else {}
    with RewritingProxy(lwa_emulator) as proxy:
        watch = _CookieWatch(proxy)
        if backend == "wsgi":
            wsgi = make_wsgi(api_base_url=proxy.base_url, **options)
            try:
                for token in (ada, grace):
                    answer = Client(wsgi).get("/me", headers={"Authorization": f"Bearer {token}"})
                    assert answer.status_code == 200
            finally:
                wsgi.close()
        else:
            asgi = make_asgi(api_base_url=proxy.base_url, **options)

            async def main() -> None:
                try:
                    assert [await _asgi_status(asgi, t) for t in (ada, grace)] == [200, 200]
                finally:
                    await asgi.aclose()

            anyio.run(main, backend=backend)
    assert lwa_emulator.calls["tokeninfo"] == 2
    assert watch.sent == []


# -- logout against a refresh, on the middleware's own HTTP drivers -------------------

#: Well under the middleware's deadline (below): the refresh is still at LWA
#: when the logout is done, and the test releases it then.
_HOLD = 20.0


class _Issued:
    """The access tokens LWA's token endpoint gave (seen from a proxy in front of it)."""

    def __init__(self, proxy: RewritingProxy) -> None:
        self.tokens: list[str] = []
        proxy.rewrite_answer = self._answer

    def _answer(self, path: str, answer: Answer) -> Answer:
        if path.split("?")[0] == "/auth/o2/token" and answer[0] == 200:
            self.tokens.append(json_answer(answer)["access_token"])
        return answer


def _signin(lwa: LWAEmulator, base_url: str, **options: Any) -> SignIn:
    """A SignIn of the emulator's client whose LWA API is ``base_url`` (a proxy)."""
    lwa.add_redirect_uri(ORIGIN + "/callback")
    return SignIn(
        client_id=lwa.client_id,
        client_secret=lwa.client_secret,
        redirect_uri=ORIGIN + "/callback",
        session_secret=SESSION_SECRET,
        api_base_url=base_url,
        authorize_url=lwa.authorize_url,
        **options,
    )


def _wired(signin: SignIn, client_id: str, base_url: str) -> LWAWSGIMiddleware:
    """A WSGI middleware wired to ``signin`` (``login()`` refuses a SignIn wired to none)."""
    return LWAWSGIMiddleware(
        lambda environ, start_response: [],
        client_id=client_id,
        api_base_url=base_url,
        session=signin,
        routes=signin.route_policies(),
    )


def _wsgi_signin(lwa: LWAEmulator, base_url: str, clock: FakeClock) -> LWAWSGIMiddleware:
    """A SignIn without an ``http=`` client, wired into a WSGI middleware: its
    token calls go out on that middleware's I/O thread."""
    signin = _signin(lwa, base_url, clock=clock, timeout=_HOLD + 30)

    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = get_identity(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(identity.user_id if identity else "anonymous").encode()]

    return LWAWSGIMiddleware(
        hello,
        client_id=lwa.client_id,
        api_base_url=base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
        timeout=_HOLD + 30,  # the driver's deadline is the middleware's
    )


def _signed_in(signin: SignIn, lwa: LWAEmulator) -> str:
    """The browser flow, through SignIn's steps (what every glue calls): a session id."""
    login = signin.login()
    login_cookie = (login.header("Set-Cookie") or "").split(";")[0]
    back = urlsplit(lwa.consent(login.header("Location") or ""))
    done = signin.callback(parse_qsl(back.query), [login_cookie])
    assert done.status == 303, done.body
    cookies = dict(v.split(";")[0].split("=", 1) for k, v in done.headers if k == "Set-Cookie")
    return cookies["lwa_session"]


def test_a_logout_while_a_refresh_is_at_lwa_stays_won_on_the_wsgi_io_thread(
    lwa_emulator: LWAEmulator,
) -> None:
    """The race tests of issue 18 (tests/signin/test_signin_races.py) give
    SignIn its own ``http=`` client; here the refresh goes out on the WSGI
    middleware's I/O thread, as it does by default, and the logout lands
    while LWA holds it. The refreshed token must end refused too."""
    clock = FakeClock.starting_now()
    with RewritingProxy(lwa_emulator) as proxy:
        issued = _Issued(proxy)
        wsgi = _wsgi_signin(lwa_emulator, proxy.base_url, clock)
        signin = wsgi.settings.session
        assert isinstance(signin, SignIn)
        try:
            session_id = _signed_in(signin, lwa_emulator)
            browser = Client(wsgi)
            browser.set_cookie("lwa_session", session_id)
            assert browser.get("/").data == BUILTIN_CUSTOMERS[0].user_id.encode()
            clock.advance(3600)  # the access token expired: the next request refreshes
            before = lwa_emulator.calls["token"]
            lwa_emulator.set_latency(_HOLD, "token")
            answers: list[tuple[int, bytes]] = []

            def refresh() -> None:
                answer = browser.get("/")
                answers.append((answer.status_code, answer.data))

            refreshing = threading.Thread(target=refresh)
            refreshing.start()
            try:
                assert lwa_emulator.wait_for_calls("token", before + 1, 30), "no refresh at LWA"
                headers = [
                    (b"origin", ORIGIN.encode()),
                    (b"cookie", f"lwa_session={session_id}".encode()),
                ]
                assert signin.logout("POST", headers).status == 303
                assert refreshing.is_alive()  # still held at LWA
            finally:
                lwa_emulator.set_latency(0, "token")
                lwa_emulator.clear_faults()
                refreshing.join(60)
            assert answers == [(200, b"anonymous")]
            assert session_of(signin, session_id) is None
            first, refreshed = issued.tokens  # LWA did answer the refresh
            for token in (first, refreshed):
                bearer = {"Authorization": f"Bearer {token}"}
                assert Client(wsgi).get("/", headers=bearer).status_code == 401
            assert lwa_emulator.customer_for(refreshed) is not None  # LWA still vouches
        finally:
            wsgi.close()
            signin.close()


# -- SignIn's timeout on the middleware's drivers ---------------------------------------


@pytest.mark.parametrize("adapter", ["wsgi", "asgi"])
def test_signins_timeout_bounds_its_token_calls_on_the_middlewares_drivers(
    adapter: str, lwa_emulator: LWAEmulator
) -> None:
    """``SignIn(timeout=...)`` is "the deadline of each call to LWA", and its
    refresh lease and waiters are sized on it; since its calls went out on the
    middleware's drivers, the middleware's ``timeout`` bounded them instead,
    so a token call could outlive SignIn's lease (and SignIn's deadline was
    silently ignored). Here LWA takes 3 s, SignIn allows 0.5 s, the
    middleware 30 s: the sign-in must give up (503), not wait for LWA."""
    signin = make_signin(lwa_emulator, timeout=0.5)
    options: dict[str, Any] = {
        "client_id": lwa_emulator.client_id,
        "api_base_url": lwa_emulator.base_url,
        "session": signin,
        "routes": {**signin.route_policies(), "/": "optional"},
        "timeout": 30.0,
    }
    try:
        if adapter == "wsgi":
            wsgi = LWAWSGIMiddleware(lambda environ, start_response: [], **options)
            login = signin.login()
            lwa_emulator.set_latency(3.0, "token")
            back = urlsplit(lwa_emulator.consent(login.header("Location") or ""))
            cookie = (login.header("Set-Cookie") or "").split(";")[0]
            status = signin.callback(parse_qsl(back.query), [cookie]).status
            wsgi.close()
        else:
            asgi = LWAMiddleware(
                SignedInUser(Starlette(routes=signin_routes(signin)), signin), **options
            )
            with TestClient(asgi, base_url=ORIGIN, follow_redirects=False) as browser:
                login = browser.get("/login")
                lwa_emulator.set_latency(3.0, "token")
                back = urlsplit(lwa_emulator.consent(login.headers["location"]))
                status = browser.get(f"{back.path}?{back.query}").status_code
    finally:
        lwa_emulator.set_latency(0, "token")
        signin.close()
    assert status == 503


# -- forged callbacks and the log ------------------------------------------------------


def test_a_flood_of_forged_callbacks_does_not_drown_the_log(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can start a sign-in and come back to the callback with a wrong
    ``state``, an ``error=`` or a made-up code, as often as they like (each
    callback frees the pending login it used). Each such callback logged a
    warning: one log line per two anonymous requests. Like the middleware's
    own warnings (an outage, a flood), they are now throttled, each telling
    how many it stands for."""
    signin = make_signin(lwa_emulator)
    wsgi = _wired(signin, lwa_emulator.client_id, lwa_emulator.base_url)

    def forged(query: list[tuple[str, str]]) -> int:
        login_cookie = (signin.login().header("Set-Cookie") or "").split(";")[0]
        return signin.callback(query, [login_cookie]).status

    def pending_state() -> tuple[str, str]:
        login = signin.login()
        state = dict(parse_qsl(urlsplit(login.header("Location") or "").query))["state"]
        return state, (login.header("Set-Cookie") or "").split(";")[0]

    try:
        with caplog.at_level(logging.INFO, logger="lwa_middleware"):
            for _ in range(30):
                assert forged([("state", "x" * 43), ("code", "c")]) == 400
                state, cookie = pending_state()
                answer = signin.callback([("state", state), ("error", "server_error")], [cookie])
                assert answer.status == 400
                state, cookie = pending_state()
                answer = signin.callback([("state", state), ("code", "made-up")], [cookie])
                assert answer.status == 400
    finally:
        wsgi.close()
        signin.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    by_reason = collections.Counter(getattr(r, "lwa_reason", None) for r in warnings)
    # Each kind is still logged (once here: the test takes far less than the interval).
    assert by_reason == {"state": 1, "authorize_error": 1, "code_refused": 1}


# -- a SignIn of another client --------------------------------------------------------


@pytest.mark.parametrize("adapter", [LWAMiddleware, LWAWSGIMiddleware])
def test_a_signin_of_a_client_the_middleware_refuses_fails_at_construction(
    adapter: Any, lwa_emulator: LWAEmulator
) -> None:
    """The middleware checks every new token's ``aud`` against its own
    ``client_id``: wired to a SignIn of another client, every sign-in went
    through at LWA, then was refused here as "LWA refused the new access
    token", a silent wiring mistake."""
    signin = make_signin(lwa_emulator)
    try:
        with pytest.raises(ConfigurationError, match=r"SignIn's client_id .* not among"):
            adapter(
                lambda *args: None,
                client_id="amzn1.application-oa2-client.another",
                api_base_url=lwa_emulator.base_url,
                session=signin,
                routes=signin.route_policies(),
            )
    finally:
        signin.close()


def test_a_cookie_lwa_sets_never_travels_with_another_customers_sign_in(
    lwa_emulator: LWAEmulator,
) -> None:
    """The same for the token endpoint's calls through a client given to
    ``SignIn(http=...)``: one customer's code exchange must not carry a cookie
    LWA set in answer to another's."""
    with RewritingProxy(lwa_emulator) as proxy:
        watch = _CookieWatch(proxy)
        signin = _signin(lwa_emulator, proxy.base_url, http=httpx2.Client(trust_env=False))
        wsgi = _wired(signin, lwa_emulator.client_id, proxy.base_url)
        try:
            for _ in range(2):
                _signed_in(signin, lwa_emulator)
        finally:
            wsgi.close()
            signin.close()
    assert lwa_emulator.calls["token"] == 2
    assert watch.sent == []


def test_a_flood_of_logins_while_the_session_store_is_down_does_not_drown_the_log(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The same during a session store outage: every anonymous ``/login``
    logged "the session store did not answer"."""
    from support.redis_servers import free_port

    signin = make_signin(lwa_emulator, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    wsgi = _wired(signin, lwa_emulator.client_id, lwa_emulator.base_url)
    try:
        with caplog.at_level(logging.INFO, logger="lwa_middleware"):
            assert [signin.login().status for _ in range(30)] == [503] * 30
    finally:
        wsgi.close()
        signin.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "lwa_event", None) for r in warnings] == ["signin_unavailable"]
