"""``RedisSessionStore`` against a real redis-server: two workers, one Redis.

Each "worker" is its own ``SignIn`` and ``LWAMiddleware`` (as two processes
would have), sharing only Redis and the session secret: sessions opened on
one are used on the other, nothing readable is stored, one refresh serves
50 concurrent requests across both, and Redis down is a 503, never a 500.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx2
import pytest
import redis
from starlette.testclient import TestClient
from support.clock import FakeClock

from lwa_middleware.signin import RedisSessionStore, SignIn
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.shared_cache_support import RedisServer, free_port
from tests.signin.signin_support import (
    ORIGIN,
    Worker,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    session_of,
    sign_in,
    starlette_app,
    wsgi_app,
)

pytestmark = pytest.mark.redis

ADA = BUILTIN_CUSTOMERS[0]


@pytest.fixture
def workers(
    rclient: redis.Redis, redis_server: RedisServer, lwa_emulator: LWAEmulator
) -> Iterator[tuple[Worker, Worker, FakeClock]]:
    clock = FakeClock.starting_now()
    a = Worker(lwa_emulator, redis_server.url, clock, delay=0.3)
    b = Worker(lwa_emulator, redis_server.url, clock, delay=0.3)
    yield a, b, clock
    for worker in (a, b):
        worker.signin.close()
        worker.close()


def _dump(client: redis.Redis) -> tuple[list[bytes], list[bytes]]:
    """The session store's keys, and every value in this Redis (the shared
    cache's too, whatever its type: DUMP serialises any key's content)."""
    everything = list(client.scan_iter("*"))
    keys = [k for k in everything if k.startswith(b"lwa:signin:")]
    values = [v for v in (client.dump(k) for k in everything) if v is not None]
    return keys, values


def test_a_session_opened_on_one_worker_works_on_the_other(
    workers: tuple[Worker, Worker, FakeClock], lwa_emulator: LWAEmulator
) -> None:
    a, b, _ = workers
    with a.client() as on_a, b.client() as on_b:
        session_id = session_cookie(sign_in(on_a, lwa_emulator))
        assert session_id is not None
        on_b.cookies.set("lwa_session", session_id)
        me = on_b.get("/me").json()
        assert me["user_id"] == ADA.user_id
        assert me["app_user"] == {"id": ADA.user_id, "name": ADA.name}  # link, once, on A
        # Logout on B ends it on A too, and A refuses its token (shared revocation).
        token = session_of(b.signin, session_id).access_token
        assert on_b.post("/logout", headers={"Origin": ORIGIN}).status_code == 303
        on_a.cookies.set("lwa_session", session_id)
        assert on_a.get("/me").status_code == 401
        assert on_a.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_login_started_on_one_worker_completes_on_the_other(
    workers: tuple[Worker, Worker, FakeClock], lwa_emulator: LWAEmulator
) -> None:
    a, b, _ = workers
    with a.client() as on_a, b.client() as on_b:
        login = on_a.get("/login")
        on_b.cookies.update(on_a.cookies)
        callback = path_of(authorize(lwa_emulator, login.headers["location"]))
        assert on_b.get(callback).status_code == 303
        assert on_b.get("/me").json()["user_id"] == ADA.user_id
        # ...once: the pending login is gone from Redis for both.
        assert on_a.get(callback).status_code == 400


def test_nothing_readable_is_stored(
    workers: tuple[Worker, Worker, FakeClock], lwa_emulator: LWAEmulator, rclient: redis.Redis
) -> None:
    a, _, clock = workers
    with a.client() as on_a:
        login = on_a.get("/login")
        state = dict(httpx2.URL(login.headers["location"]).params)["state"]
        login_id = on_a.cookies["lwa_session_login"]
        keys, values = _dump(rclient)
        # The pending login, and the index bounding their number (its members
        # are the store keys: digests, like the keys themselves).
        assert sorted(keys)[1:] == [b"lwa:signin:v1:logins"]
        pending = [state, login_id]
        for secret in pending:
            assert all(secret.encode() not in k for k in keys)
            assert all(secret.encode() not in v for v in values)
        back = on_a.get(path_of(authorize(lwa_emulator, login.headers["location"])))
        session_id = session_cookie(back)
        assert session_id is not None
        clock.advance(3600)
        assert on_a.get("/me").status_code == 200  # refreshed: two generations stored over time
        session = session_of(a.signin, session_id)
        (code_grant,) = a.recorder.grants("authorization_code")
        secrets = [
            *pending,
            session_id,
            session.access_token,
            session.refresh_token,
            ADA.user_id,
            ADA.name,
            ADA.email,
            code_grant["code"],
            code_grant["code_verifier"],
            *(g["refresh_token"] for g in a.recorder.grants("refresh_token")),
        ]
        keys, values = _dump(rclient)
        ours = [k for k in keys if k.startswith(b"lwa:signin:")]
        assert ours
        # The session store: nothing readable at all (tokens, ids, profile).
        blob = b"\n".join(ours + [v for v in (rclient.get(k) for k in ours) if v])
        for secret in secrets:
            assert secret.encode() not in blob, secret[:8]
        # The whole Redis (the middleware's cache holds identities, by design):
        # no token, code, verifier, session or login id.
        everything = b"\n".join(keys + values)
        for secret in secrets[:5] + secrets[8:]:
            assert secret.encode() not in everything, secret[:8]


def test_50_concurrent_requests_across_two_workers_make_one_refresh(
    workers: tuple[Worker, Worker, FakeClock], lwa_emulator: LWAEmulator
) -> None:
    a, b, clock = workers
    with a.client() as on_a:
        session_id = session_cookie(sign_in(on_a, lwa_emulator))
    assert session_id is not None
    before = session_of(a.signin, session_id).access_token
    clock.advance(3600)  # the access token just expired
    # A: 25 WSGI threads (threaded server); B: 25 ASGI tasks, at the same time.
    wsgi = wsgi_app(lwa_emulator, a.signin)
    barrier = threading.Barrier(26)
    statuses: list[str] = []

    def one() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/me",
            "QUERY_STRING": "",
            "HTTP_COOKIE": f"lwa_session={session_id}",
            "wsgi.url_scheme": "http",
        }
        barrier.wait()
        seen: list[str] = []
        b"".join(wsgi(environ, lambda s, h, *x: seen.append(s)))
        statuses.append(seen[0])

    async def burst() -> list[int]:
        transport = httpx2.ASGITransport(app=b.app)
        async with httpx2.AsyncClient(
            transport=transport, base_url=ORIGIN, cookies={"lwa_session": session_id}
        ) as http:
            await asyncio.to_thread(barrier.wait)
            answers = await asyncio.gather(*(http.get("/me") for _ in range(25)))
        return [answer.status_code for answer in answers]

    threads = [threading.Thread(target=one) for _ in range(25)]
    for thread in threads:
        thread.start()
    asgi_statuses = asyncio.run(burst())
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 25
    assert asgi_statuses == [200] * 25
    refreshes = len(a.recorder.grants("refresh_token")) + len(b.recorder.grants("refresh_token"))
    assert refreshes == 1
    assert lwa_emulator.calls["token"] == 2  # the code, then the one refresh
    assert session_of(b.signin, session_id).access_token != before


@pytest.fixture
def dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


def test_redis_down_is_a_503_at_every_step_never_a_500(
    lwa_emulator: LWAEmulator, redis_server: RedisServer, rclient: redis.Redis
) -> None:
    worker = Worker(lwa_emulator, redis_server.url, FakeClock.starting_now())
    with worker.client() as client:
        session_id = session_cookie(sign_in(client, lwa_emulator))
        pending = client.get("/login")  # a login in progress when Redis dies
        redis_server.stop()
        try:
            login = client.get("/login")
            assert login.status_code == 503
            assert login.headers["retry-after"]
            assert "location" not in login.headers
            assert "unavailable" in login.text.lower()
            back = path_of(authorize(lwa_emulator, pending.headers["location"]))
            callback = client.get(back)
            assert callback.status_code == 503
            assert "lwa_session=" not in callback.headers.get("set-cookie", "").replace(
                "lwa_session=;", ""
            )
            assert lwa_emulator.calls["token"] == 1  # the code was not even exchanged
            client.cookies.set("lwa_session", session_id)
            me = client.get("/me")  # the session cannot be read: fail closed
            assert me.status_code == 503
            assert me.json()["error"] == "temporarily_unavailable"
            assert me.headers["retry-after"]
            assert client.get("/").status_code == 503  # optional, but a cookie was sent
            out = client.post("/logout", headers={"Origin": ORIGIN})
            assert out.status_code == 503
        finally:
            redis_server.start()
        # Redis back (empty: this test server keeps nothing on disk): the lost
        # session is simply gone, and signing in works again.
        assert client.get("/me").status_code == 401
        # (The cookie set by hand above lives beside the server's in the test
        # client's jar; a browser keeps one per name, domain and path.)
        client.cookies.clear()
        assert sign_in(client, lwa_emulator).status_code == 303
        me = client.get("/me")
        assert me.json().get("user_id") == ADA.user_id, (me.status_code, me.text)
    worker.signin.close()


def test_an_unreachable_redis_at_start_is_a_503_too(
    lwa_emulator: LWAEmulator, dead_redis: str
) -> None:
    signin: SignIn = make_signin(lwa_emulator, redis_url=dead_redis)
    assert isinstance(signin.store, RedisSessionStore)
    with TestClient(starlette_app(lwa_emulator, signin), base_url=ORIGIN) as client:
        answer = client.get("/login", follow_redirects=False)
        assert answer.status_code == 503
        assert client.get("/").status_code == 200  # no cookie: no session to read
    signin.close()
