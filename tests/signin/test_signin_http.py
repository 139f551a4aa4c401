"""One HTTP stack per process kind (issue 19): the sign-in reaches LWA on the
middleware's own driver, the async one under ASGI, the blocking one under
WSGI; a revocation builds no driver at all."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.testclient import TestClient
from support.clock import FakeClock
from support.private import private_async_driver, private_sync_driver, token_request
from support.servers import serve_uvicorn

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.integrations.flask import LWA
from lwa_middleware.signin.flask import signin_blueprint
from lwa_middleware.testing import Fault, LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    session_of,
    sign_in,
    starlette_app,
)


class _Constructions:
    """Every plain ``httpx2.Client`` built off the test's own thread (the
    server's loop and worker threads): observed, the real constructor still runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        test_thread = threading.current_thread()
        real = httpx2.Client.__init__

        def counting(client: httpx2.Client, *args: Any, **kwargs: Any) -> None:
            if type(client) is httpx2.Client and threading.current_thread() is not test_thread:
                self.count += 1
            real(client, *args, **kwargs)

        monkeypatch.setattr(httpx2.Client, "__init__", counting)


def _open_async_clients(mw: LWAMiddleware) -> int:
    driver = private_async_driver(mw)
    return 0 if driver is None else sum(k.ag_frame is not None for k in driver._keepers)


def test_under_uvicorn_the_sign_in_builds_no_blocking_client(
    lwa_emulator: LWAEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _Constructions(monkeypatch)
    clock = FakeClock.starting_now()
    signin = make_signin(lwa_emulator, clock=clock)
    mw = starlette_app(lwa_emulator, signin)
    with serve_uvicorn(mw, close_on_shutdown=True) as base, httpx2.Client(base_url=base) as http:
        login = http.get("/login")
        assert login.status_code == 302
        answer = http.get(path_of(authorize(lwa_emulator, login.headers["location"])))
        assert answer.status_code == 303, answer.text
        session_id = session_cookie(answer)
        assert session_id is not None
        first = session_of(signin, session_id).access_token
        clock.advance(3600)  # the access token expired: the next request refreshes it
        me = http.get("/me")
        assert me.json()["user_id"] == "amzn1.account.AFADALOVELACE0000000000001"
        assert session_of(signin, session_id).access_token != first
        assert http.post("/logout", headers={"Origin": ORIGIN}).status_code == 303
        assert _open_async_clients(mw) == 1
    assert sum(r.endpoint == "token" for r in lwa_emulator.requests) == 2  # code + refresh
    # Code exchange, lookup, refresh and logout all went out on the async driver:
    # no blocking client, no blocking driver (and its thread pool) was built.
    assert built.count == 0
    assert private_sync_driver(mw) is None
    assert _open_async_clients(mw) == 0  # closed by the middleware's lifespan shutdown


def _recording_factory(seen: list[tuple[str, str, str | None]]) -> Any:
    """An ``http_client`` factory whose clients note (method, path, grant_type) of each request."""

    def record(request: httpx2.Request) -> None:
        grant = dict(parse_qsl(request.content.decode())).get("grant_type")
        seen.append((request.method, request.url.path, grant))

    async def arecord(request: httpx2.Request) -> None:
        record(request)

    def factory(asyncio: bool) -> httpx2.Client | httpx2.AsyncClient:
        if asyncio:
            return httpx2.AsyncClient(event_hooks={"request": [arecord]})
        return httpx2.Client(event_hooks={"request": [record]})

    return factory


def test_under_asgi_the_token_posts_go_through_the_middlewares_http_client(
    lwa_emulator: LWAEmulator,
) -> None:
    seen: list[tuple[str, str, str | None]] = []
    signin = make_signin(lwa_emulator)
    app = starlette_app(lwa_emulator, signin, http_client=_recording_factory(seen))
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        assert sign_in(client, lwa_emulator).status_code == 303
    assert ("POST", "/auth/o2/token", "authorization_code") in seen
    assert ("GET", "/auth/o2/tokeninfo", None) in seen


def test_under_wsgi_the_token_posts_go_through_the_middlewares_http_client(
    lwa_emulator: LWAEmulator,
) -> None:
    seen: list[tuple[str, str, str | None]] = []
    origin = "http://localhost"
    signin = make_signin(lwa_emulator, origin=origin)
    app = Flask(__name__)
    LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes=signin.route_policies(),
        http_client=_recording_factory(seen),
    )
    app.register_blueprint(signin_blueprint(signin))
    client = app.test_client()
    login = client.get("/login")
    back = urlsplit(authorize(lwa_emulator, login.headers["Location"]))
    assert client.get(f"{back.path}?{back.query}").status_code == 303
    assert ("POST", "/auth/o2/token", "authorization_code") in seen
    assert ("GET", "/auth/o2/tokeninfo", None) in seen


def test_the_token_endpoints_answer_has_the_lookups_size_cap(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    signin = make_signin(lwa_emulator)
    app = starlette_app(lwa_emulator, signin, max_response_bytes=16 * 1024)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        login = client.get("/login")
        back = authorize(lwa_emulator, login.headers["location"])
        lwa_emulator.inject(Fault.OVERSIZED, endpoint="token", times=1)
        with caplog.at_level(logging.WARNING, logger="lwa_middleware.signin"):
            answer = client.get(path_of(back))
    assert answer.status_code == 503
    said = [r for r in caplog.records if getattr(r, "lwa_event", None) == "signin_unavailable"]
    assert [r.lwa_reason for r in said] == ["too_large"]
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    assert lwa_emulator.client_secret not in caplog.text + answer.text
    assert code not in caplog.text + answer.text


def test_a_token_request_shows_no_secret() -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "Atzr|rt", "client_secret": "c-s-42"}
    request = token_request("https://api.amazon.com/auth/o2/token", form)
    assert request.method == "POST"
    assert request.url == "https://api.amazon.com/auth/o2/token"  # the secrets are in the body
    assert dict(parse_qsl(request.body.decode())) == form
    assert "Atzr" not in repr(request)
    assert "c-s-42" not in repr(request)


def test_revoke_builds_no_http_driver(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    blocking = LWAWSGIMiddleware(
        lambda environ, start: [],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    # Built at construction (warm start, before a server forks), closed by
    # close(): a revoke() after that, which asks LWA nothing, builds none again.
    blocking.close()
    blocking.revoke(token)
    blocking.invalidate(token)
    assert private_sync_driver(blocking) is None

    evented = LWAMiddleware(
        Starlette(), client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    asyncio.run(evented.revoke(token))
    assert private_async_driver(evented) is None
    assert private_sync_driver(evented) is None
    # Revoked all the same: refused without asking LWA.
    with TestClient(evented) as client:
        refused = client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert lwa_emulator.requests == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_sign_in_runs_on_the_async_driver_on_asyncio_and_trio(
    lwa_emulator: LWAEmulator, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    built = _Constructions(monkeypatch)
    signin = make_signin(lwa_emulator)
    mw = starlette_app(lwa_emulator, signin)

    async def main() -> None:
        transport = httpx2.ASGITransport(app=mw)
        async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            login = await http.get("/login")
            back = authorize(lwa_emulator, login.headers["location"])
            answer = await http.get(path_of(back))
            assert answer.status_code == 303
            me = (await http.get("/me")).json()
            assert me["user_id"] == "amzn1.account.AFADALOVELACE0000000000001"
            session_id = session_cookie(answer)
            assert session_id is not None
            token = session_of(signin, session_id).access_token
            assert (await http.post("/logout", headers={"Origin": ORIGIN})).status_code == 303
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/me", headers=bearer)).status_code == 401  # revoked
        await mw.aclose()

    anyio.run(main, backend=backend)
    assert built.count == 0
    assert private_sync_driver(mw) is None
    assert sum(r.endpoint == "token" for r in lwa_emulator.requests) == 1
