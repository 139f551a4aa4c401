"""The session token source: refresh (once, under concurrency), its failures, CSRF, logout."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient
from support.clock import FakeClock
from support.private import memory_store_items, save_session, session_key

from lwa_middleware.signin import MemorySessionStore
from lwa_middleware.testing import Fault
from tests.signin.signin_support import (
    ORIGIN,
    Recorder,
    make_signin,
    session_cookie,
    session_of,
    sign_in,
    starlette_app,
    wsgi_app,
)


@pytest.fixture
def setup(lwa_emulator):
    clock = FakeClock.starting_now()
    recorder = Recorder(delay=0.3)  # a slow refresh: every request overlaps it
    signin = make_signin(lwa_emulator, clock=clock, http=httpx2.Client(transport=recorder))
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        session_id = session_cookie(sign_in(client, lwa_emulator))
        assert session_id is not None
        yield client, signin, clock, recorder, session_id, app


def _environ(session_id: str, method: str = "GET", **headers: str) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/me",
        "QUERY_STRING": "",
        "HTTP_COOKIE": f"lwa_session={session_id}",
        "wsgi.url_scheme": "http",
    }
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return environ


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], body


def test_asgi_50_concurrent_requests_on_an_expired_session_make_one_refresh(setup, lwa_emulator):
    _client, signin, clock, recorder, session_id, app = setup
    before = session_of(signin, session_id).access_token
    clock.advance(3600)  # the access token just expired

    async def burst() -> list[int]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url=ORIGIN, cookies={"lwa_session": session_id}
        ) as http:
            answers = await asyncio.gather(*(http.get("/me") for _ in range(50)))
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 50
    assert len(recorder.grants("refresh_token")) == 1
    assert sum(r.endpoint == "token" for r in lwa_emulator.requests) == 2  # code + one refresh
    after = session_of(signin, session_id)
    assert after.access_token != before
    assert after.expires_at > clock.now + 3000


def test_wsgi_50_concurrent_threads_on_an_expired_session_make_one_refresh(setup, lwa_emulator):
    _, signin, clock, recorder, session_id, _ = setup
    app = wsgi_app(lwa_emulator, signin)
    clock.advance(3600)
    barrier, results = threading.Barrier(50), []

    def one() -> None:
        barrier.wait()
        results.append(_call(app, _environ(session_id)))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == ["200 OK"] * 50
    assert {body for _, body in results} == {b"amzn1.account.AFADALOVELACE0000000000001"}
    assert len(recorder.grants("refresh_token")) == 1


def test_refresh_sends_the_refresh_token_only_to_the_token_endpoint(setup, lwa_emulator):
    client, signin, clock, recorder, session_id, _ = setup
    refresh = session_of(signin, session_id).refresh_token
    clock.advance(3600)
    assert client.get("/me").status_code == 200
    (grant,) = recorder.grants("refresh_token")
    assert grant["refresh_token"] == refresh
    assert grant["client_secret"]
    for method, url, _form in recorder.sent:
        assert method == "POST"
        assert url == f"{lwa_emulator.base_url}/auth/o2/token"
        assert refresh not in url
    for request in lwa_emulator.requests:  # nothing secret in any URL LWA received
        assert refresh not in request.target
        assert "code_verifier" not in request.target
    assert lwa_emulator.token_in_url == 0


def test_invalid_grant_ends_the_session(setup):
    client, signin, clock, _, session_id, _ = setup
    key = session_key(signin, session_id)
    session = session_of(signin, session_id)
    save_session(signin, key, dataclasses.replace(session, refresh_token="Atzr|removed-app"))
    clock.advance(3600)
    assert client.get("/me").status_code == 401
    assert session_of(signin, session_id) is None
    assert client.get("/me").status_code == 401
    assert client.get("/").json()["user_id"] is None  # optional routes: anonymous


def test_an_lwa_outage_during_refresh_fails_closed(setup, lwa_emulator):
    client, _signin, clock, _, _session_id, _ = setup
    clock.advance(3600)
    lwa_emulator.inject(Fault.DOWN)
    answer = client.get("/me")
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert answer.json()["error"] == "temporarily_unavailable"
    lwa_emulator.clear_faults()
    assert client.get("/me").status_code == 200  # the session survived the outage


def test_a_failed_refresh_is_logged_with_lwas_request_id(setup, lwa_emulator, caplog):
    # Issue 21: a warning with why, LWA's status and x-amzn-RequestId (field and
    # text); the failed refresh used to log nothing.
    client, _signin, clock, *_ = setup
    clock.advance(3600)
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="token")
    with caplog.at_level(logging.WARNING, logger="lwa_middleware.signin"):
        assert client.get("/me").status_code == 503
    (record,) = [r for r in caplog.records if getattr(r, "lwa_event", None) == "refresh_failed"]
    assert (record.lwa_reason, record.lwa_status) == ("status", 503)
    assert record.lwa_request_id
    assert record.lwa_request_id in record.getMessage()


def test_unsafe_cookie_requests_need_the_apps_origin(setup, lwa_emulator):
    client, _signin, *_ = setup
    assert client.post("/me").status_code == 403
    evil = client.post("/me", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert evil.json()["error"] == "cross_site_request"
    assert client.post("/me", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/me", headers={"Origin": ORIGIN}).status_code == 200
    assert client.post("/me", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.get("/me").status_code == 200  # safe methods need no proof
    token = lwa_emulator.issue_token()
    bearer = client.post("/me", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200  # Bearer requests are exempt
    assert client.post("/logout").status_code == 403  # logout too


def test_wsgi_checks_origin_too(setup, lwa_emulator):
    _, signin, _, _, session_id, _ = setup
    app = wsgi_app(lwa_emulator, signin)
    assert _call(app, _environ(session_id, "POST"))[0].startswith("403")
    assert _call(app, _environ(session_id, "POST", origin=ORIGIN))[0] == "200 OK"


def test_logout_ends_the_session_revokes_the_token_and_clears_the_cookie(setup):
    client, signin, _, _, session_id, _ = setup
    token = session_of(signin, session_id).access_token
    out = client.post("/logout", headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert "lwa_session=;" in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert session_of(signin, session_id) is None
    client.cookies.set("lwa_session", session_id)
    assert client.get("/me").status_code == 401
    # The token itself is refused by the middleware, though LWA still vouches for it.
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/logout").status_code == 405


def test_sessions_are_encrypted_at_rest(setup):
    _, signin, _, _, session_id, _ = setup
    session = session_of(signin, session_id)
    stored = dict(memory_store_items(signin.store))
    blob = b"".join(value for _, value in stored.values())
    keys = "".join(stored)
    for secret in (session.access_token, session.refresh_token, session.user_id, session_id):
        assert secret.encode() not in blob
        assert secret not in keys
    # A sealed value moved to another key does not open.
    key = session_key(signin, session_id)
    other = session_key(signin, "B" * 43)
    signin.store.put(other, signin.store.get(key), 60)
    assert session_of(signin, "B" * 43) is None


class _StoreWithoutDeleteIf:
    """A store written before ``SessionStore.delete_if``: every other method."""

    def __init__(self) -> None:
        inner = MemorySessionStore()
        for name in ("get", "put", "replace", "take", "delete", "add_login", "take_login"):
            setattr(self, name, getattr(inner, name))
        self.lease, self.release = inner.lease, inner.release


def test_a_store_without_delete_if_warns_and_a_refused_refresh_still_ends_the_session(
    lwa_emulator,
):
    clock = FakeClock.starting_now()
    with pytest.warns(DeprecationWarning, match=r"_StoreWithoutDeleteIf has no delete_if"):
        signin = make_signin(lwa_emulator, clock=clock, store=_StoreWithoutDeleteIf())
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        session_id = session_cookie(sign_in(client, lwa_emulator))
        lwa_emulator.remove_app(session_of(signin, session_id).user_id)
        clock.advance(3600)
        assert client.get("/me").status_code == 401
        assert session_of(signin, session_id) is None
        assert client.get("/me").status_code == 401


def test_an_open_breaker_refuses_a_refresh_without_calling_lwa(lwa_emulator):
    # Review: the refresh did not look at the lookups' circuit breaker. During
    # an outage each request on a session due for a refresh held its thread
    # for SignIn's timeout before its 503; now it is refused at once.
    clock = FakeClock.starting_now()
    recorder = Recorder()
    signin = make_signin(lwa_emulator, clock=clock, http=httpx2.Client(transport=recorder))
    app = starlette_app(lwa_emulator, signin, breaker_threshold=2, breaker_cooldown=600)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        assert session_cookie(sign_in(client, lwa_emulator)) is not None
        lwa_emulator.inject(Fault.DOWN)
        for _ in range(2):  # two new tokens LWA cannot vouch for open the breaker
            bearer = {"Authorization": f"Bearer {lwa_emulator.issue_token()}"}
            assert client.get("/me", headers=bearer).status_code == 503
        lwa_emulator.clear_faults()
        clock.advance(3600)  # the session's access token is due for a refresh
        sent = len(recorder.sent)
        answer = client.get("/me")
        assert answer.status_code == 503
        assert answer.json()["error"] == "temporarily_unavailable"
        assert 500 < int(answer.headers["retry-after"]) <= 600  # the breaker's cooldown
        assert len(recorder.sent) == sent  # LWA's token endpoint was not asked
    signin.close()
