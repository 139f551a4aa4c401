"""Issue 18, item 10: the middleware and ``SignIn`` sharing one Redis as
exactly the least-privilege user docs/how-to/redis.md and SECURITY.md document: the
shared cache's ``ACL_RULES``, then the session store's
:data:`lwa_middleware.signin.ACL_RULES` (rules add up), on a real redis-server.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from support.clock import FakeClock
from support.private import shared_cache

from lwa_middleware import signin
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.shared_cache_support import RedisServer
from tests.signin.signin_support import (
    ORIGIN,
    Worker,
    authorize,
    path_of,
    session_cookie,
    session_of,
    sign_in,
)

pytestmark = pytest.mark.redis

PASSWORD = "acl-test-password-0123456789"
ROOT = Path(__file__).resolve().parents[2]
#: The documented commands, word for word (docs/how-to/redis.md "ACL: the least a Redis
#: user needs", SECURITY.md "Redis ACL for sign-in"), less the password.
SHARED = f"ACL SETUSER lwa on >a-long-password {shared_cache.ACL_RULES}"
SIGNIN = f"ACL SETUSER lwa {signin.ACL_RULES}"
SIGNIN_ALONE = (
    f"ACL SETUSER lwa-signin on >a-long-password resetkeys resetchannels -@all {signin.ACL_RULES}"
)


def _run(admin: redis.Redis, command: str) -> None:
    """A documented ``ACL SETUSER`` line, with the test's password."""
    words = command.replace(">a-long-password", f">{PASSWORD}").split()
    admin.execute_command(*words)


@pytest.fixture
def users(redis_server: RedisServer, rclient: redis.Redis) -> RedisServer:
    for user in ("lwa", "lwa-signin", "cache-only"):
        rclient.execute_command("ACL", "DELUSER", user)
    _run(rclient, SHARED)
    _run(rclient, SIGNIN)
    _run(rclient, SIGNIN_ALONE)
    _run(rclient, SHARED.replace("SETUSER lwa ", "SETUSER cache-only "))
    return redis_server


def _url(server: RedisServer, user: str) -> str:
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_documented_rules_are_the_tested_ones() -> None:
    for doc in ("docs/how-to/redis.md", "SECURITY.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for command in (SHARED, SIGNIN, SIGNIN_ALONE):
            assert command in text, (doc, command)


@pytest.mark.timeout(120)
def test_sign_in_refresh_and_logout_as_the_documented_user(
    lwa_emulator: LWAEmulator, users: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers, each a SignIn and a middleware with redis_url, both as
    the user ``lwa``: a login, a login refused past the bound, a callback, a
    session used on the other worker, a refresh (lease, conditional write),
    a logout whose revocation the other worker honours. No NOPERM anywhere."""
    caplog.set_level(logging.WARNING)
    clock = FakeClock.starting_now()
    url = _url(users, "lwa")
    a = Worker(lwa_emulator, url, clock, max_pending_logins=2)
    b = Worker(lwa_emulator, url, clock, max_pending_logins=2)
    with a.client() as on_a, b.client() as on_b:
        session_id = session_cookie(sign_in(on_a, lwa_emulator))
        assert session_id is not None
        on_b.cookies.set("lwa_session", session_id)
        assert on_b.get("/me").json()["user_id"] == BUILTIN_CUSTOMERS[0].user_id
        assert on_a.get("/login").status_code == 302
        assert on_a.get("/login").status_code == 302
        assert on_a.get("/login").status_code == 503  # the bound, counted by the script
        first = session_of(a.signin, session_id).access_token
        clock.advance(3600)  # refreshed on B
        assert on_b.get("/me").json()["user_id"] == BUILTIN_CUSTOMERS[0].user_id
        (refreshed,) = b.recorder.issued
        assert session_of(a.signin, session_id).access_token == refreshed != first
        on_a.cookies.set("lwa_session", session_id)
        assert on_a.post("/logout", headers={"Origin": ORIGIN}).status_code == 303
        assert on_b.get("/me").status_code == 401
        bearer = {"Authorization": f"Bearer {refreshed}"}
        assert on_b.get("/me", headers=bearer).status_code == 401  # revoked through Redis
    for worker in (a, b):
        stats = worker.app.stats
        assert stats.redis_errors == 0, stats.snapshot()
        assert stats.redis_faults == 0, stats.snapshot()
    assert "NOPERM" not in caplog.text
    assert "unavailable" not in caplog.text


def test_sign_in_alone_as_its_own_user(lwa_emulator: LWAEmulator, users: RedisServer) -> None:
    """``lwa-signin`` (sign-in rules only) is enough for SignIn's store; the
    middleware beside it keeps its cache in memory."""
    from starlette.testclient import TestClient

    from tests.signin.signin_support import make_signin, starlette_app

    clock = FakeClock.starting_now()
    alone = make_signin(lwa_emulator, redis_url=_url(users, "lwa-signin"), clock=clock)
    app = starlette_app(lwa_emulator, alone)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        login = client.get("/login")
        assert login.status_code == 302
        back = client.get(path_of(authorize(lwa_emulator, login.headers["location"])))
        assert back.status_code == 303
        clock.advance(3600)
        assert client.get("/me").status_code == 200  # refreshed
        assert client.post("/logout", headers={"Origin": ORIGIN}).status_code == 303
        assert client.get("/me").status_code == 401


def test_the_cache_rules_alone_are_not_enough_and_the_log_names_the_fix(
    lwa_emulator: LWAEmulator, users: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "lwa_middleware.signin")
    worker = Worker(lwa_emulator, _url(users, "cache-only"), FakeClock.starting_now())
    with worker.client() as client:
        answer = client.get("/login")
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert signin.ACL_RULES in caplog.text
    assert PASSWORD not in caplog.text
    # Structured like every record of the library (issue 21): a JSON formatter reads these.
    said = [r for r in caplog.records if signin.ACL_RULES in r.getMessage()]
    assert [(r.lwa_event, r.lwa_reason) for r in said] == [  # type: ignore[attr-defined]
        ("session_store_fault", "noperm")
    ]
