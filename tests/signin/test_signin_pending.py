"""Issue 18, item 3: a flood of anonymous ``GET /login`` never signs anyone out.

Pending logins live apart from sessions, under a bound of their own
(``max_pending_logins``, counted atomically in Redis) and a 10-minute life; a
flood beyond the bound is refused with a 503 page and ``Retry-After``. The
memory per pending login that SECURITY.md ("Pending logins") states is
measured here too.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections import Counter
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient
from support.callers import asgi_call, asgi_scope
from support.clock import FakeClock
from support.private import LOGIN_TTL
from support.redis_servers import RedisServer, wait_for

from lwa_middleware.signin import MemorySessionStore, RedisSessionStore
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    Worker,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    starlette_app,
)

#: What SECURITY.md promises a pending login costs, at most (measured: about
#: 480 bytes in memory, about 520 in Redis by MEMORY USAGE).
BYTES_PER_PENDING_LOGIN = 640
INDEX = "lwa:signin:v1:logins"


def _sign_in_each(client: TestClient, lwa: LWAEmulator, count: int) -> dict[str, str]:
    """``count`` browsers signed in (one customer each): session id -> user id."""
    sessions = {}
    for customer in BUILTIN_CUSTOMERS[:count]:
        client.cookies.clear()
        login = client.get("/login")
        back = authorize(lwa, login.headers["location"], customer=BUILTIN_CUSTOMERS.index(customer))
        session_id = session_cookie(client.get(path_of(back)))
        assert session_id is not None
        sessions[session_id] = customer.user_id
    client.cookies.clear()
    return sessions


def _flood(app: Any, count: int) -> tuple[Counter[int], set[tuple[str | None, bool]]]:
    """``count`` anonymous ``GET /login`` (no cookie, as a script sends them):
    the statuses, and for the refused ones (Retry-After, has a Location)."""

    async def run() -> tuple[Counter[int], set[tuple[str | None, bool]]]:
        statuses: Counter[int] = Counter()
        refused: set[tuple[str | None, bool]] = set()
        for _ in range(count):
            start = (await asgi_call(app, asgi_scope("/login")))[0]
            statuses[start["status"]] += 1
            if start["status"] != 302:
                headers = dict(start["headers"])
                retry = headers.get(b"retry-after")
                refused.add((retry.decode() if retry else None, b"location" in headers))
        return statuses, refused

    return asyncio.run(run())


def _all_signed_in(client: TestClient, sessions: dict[str, str]) -> bool:
    for session_id, user_id in sessions.items():
        client.cookies.clear()
        client.cookies.set("lwa_session", session_id)
        if client.get("/me").json().get("user_id") != user_id:
            return False
    client.cookies.clear()
    return True


def _flood_around_a_real_sign_in(client: TestClient, app: Any, lwa: LWAEmulator) -> dict[str, str]:
    """Browsers signed in, one sign-in under way, then 10,050 anonymous
    ``GET /login``: past the default bound (10,000, the real one included),
    refused with a 503 and Retry-After. Every session survives, and the
    sign-in under way completes. The sessions."""
    sessions = _sign_in_each(client, lwa, 3)
    started = client.get("/login")
    login_cookie = dict(client.cookies)
    client.cookies.clear()
    statuses, refused = _flood(app, 10_050)
    assert _all_signed_in(client, sessions)
    assert statuses == {302: 9_999, 503: 51}
    assert refused == {("5", False)}  # Retry-After, and no trip to LWA
    client.cookies.update(login_cookie)
    back = client.get(path_of(authorize(lwa, started.headers["location"])))
    assert back.status_code == 303
    client.cookies.clear()
    return sessions


def test_10050_anonymous_logins_leave_every_memory_session_intact(
    lwa_emulator: LWAEmulator,
) -> None:
    clock = FakeClock()  # the store's: pending logins expire by it
    signin = make_signin(lwa_emulator, store=MemorySessionStore(clock=clock))
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        sessions = _flood_around_a_real_sign_in(client, app, lwa_emulator)
        # Ten minutes on, the flood's pending logins are gone: logins work again.
        assert client.get("/login").status_code == 302
        assert client.get("/login").status_code == 503
        clock.advance(LOGIN_TTL + 1)
        client.cookies.clear()
        assert client.get("/login").status_code == 302
        assert _all_signed_in(client, sessions)


@pytest.mark.redis
def test_10050_anonymous_logins_are_bounded_in_redis_and_evict_no_session(
    lwa_emulator: LWAEmulator, redis_server: RedisServer, rclient: redis.Redis
) -> None:
    worker = Worker(lwa_emulator, redis_server.url, FakeClock.starting_now())
    with worker.client() as client:
        sessions = _flood_around_a_real_sign_in(client, worker.app, lwa_emulator)
        # Counted across workers in Redis; the completed sign-in freed its place.
        assert rclient.zcard(INDEX) == 9_999
        assert len(list(rclient.scan_iter("lwa:signin:v1:login:*", count=1000))) == 9_999
        assert client.get("/login").status_code == 302
        assert client.get("/login").status_code == 503
        assert _all_signed_in(client, sessions)


@pytest.mark.redis
def test_expired_pending_logins_free_their_place_in_redis(
    redis_server: RedisServer, rclient: redis.Redis
) -> None:
    """Expiry by Redis's own clock (TIME), so workers' clocks do not matter."""
    store = RedisSessionStore(redis_server.url, timeout=5, max_pending=2)
    try:
        assert store.add_login("login:a", b"A", 0.3)
        assert store.add_login("login:b", b"B", 0.3)
        assert not store.add_login("login:c", b"C", 60)
        wait_for(lambda: store.add_login("login:c", b"C", 60), 10)
        assert store.take_login("login:a") is None
        assert rclient.zcard(INDEX) == 1
        assert store.take_login("login:c") == b"C"
        assert store.take_login("login:c") is None  # once
    finally:
        store.close()


def test_memory_per_pending_login_in_memory(lwa_emulator: LWAEmulator) -> None:
    store = MemorySessionStore()
    signin = make_signin(lwa_emulator, store=store)
    starlette_app(lwa_emulator, signin)  # wired (session=signin): login() refuses otherwise
    signin.login()  # imports and first-use caches out of the way
    count = 2_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            assert signin.login().status == 302
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_login = grown / count
    print(f"memory store: {per_login:.0f} bytes per pending login")
    assert 0 < per_login < BYTES_PER_PENDING_LOGIN


@pytest.mark.redis
def test_memory_per_pending_login_in_redis(
    lwa_emulator: LWAEmulator, redis_server: RedisServer, rclient: redis.Redis
) -> None:
    signin = make_signin(lwa_emulator, redis_url=redis_server.url)
    starlette_app(lwa_emulator, signin)  # wired (session=signin): login() refuses otherwise
    count = 2_000
    for _ in range(count):
        assert signin.login().status == 302
    keys = list(rclient.scan_iter("lwa:signin:v1:login:*"))
    assert len(keys) == count
    per_key = sum(rclient.memory_usage(key) for key in keys) / count
    per_index_entry = rclient.memory_usage(INDEX, samples=0) / count
    print(f"redis: {per_key:.0f} bytes a key + {per_index_entry:.0f} in the index")
    assert 0 < per_key + per_index_entry < BYTES_PER_PENDING_LOGIN
