# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 5: the shared cache as a least-privilege Redis ACL user
(exactly :data:`~lwa_middleware.shared_cache.ACL_RULES`, the rule set the
docs/how-to/redis.md documents), and the ``redis_client=`` factory, with a redis-py
``CredentialProvider`` (the IAM-token case) against that user.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
import redis.asyncio
from redis.credentials import CredentialProvider
from shared_cache_support import RedisServer, uvicorn_server, wsgi_server
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    _module_redis,
    call,
    http,
    keys_of,
    redis_bin,
    redis_srv,
    share_then_revoke,
)
from support.private import Settings, close_client, private_fleet, private_sync_shared
from support.redis_servers import wait_for

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.shared_cache import ACL_RULES
from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

CLIENT = "amzn1.application-oa2-client.acl"
PASSWORD = "acl-test-password-0123456789"
REDIS_DOC = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "redis.md"


@pytest.fixture
def acl_redis(redis_srv: RedisServer) -> RedisServer:
    """The module's redis-server, empty, with two users: ``lwa`` holding
    exactly ACL_RULES, and ``short`` the same without PUBLISH (so neither the
    scripts' nor the subscriber's)."""
    short = [rule for rule in ACL_RULES.split() if rule != "+publish"]
    with redis_srv.client() as admin:
        for user, rules in (("lwa", ACL_RULES.split()), ("short", short)):
            admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *rules)
    return redis_srv


def url(server: RedisServer, user: str = "lwa") -> str:
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_documented_rules_are_the_tested_ones() -> None:
    assert ACL_RULES in REDIS_DOC.read_text(encoding="utf-8")


def test_the_whole_flow_runs_as_the_least_privilege_user(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, acl_redis: RedisServer,
    http: httpx2.Client,
) -> None:
    """Sharing, a lease waited on, a revocation pushed and replayed: as the
    ACL user, with no NOPERM anywhere."""
    a: LWAMiddleware = make_asgi(redis_url=url(acl_redis), redis_timeout=SLACK)
    w: LWAWSGIMiddleware = make_wsgi(redis_url=url(acl_redis), redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        assert call(http, ua, "/me", token).status_code == 200
        assert call(http, uw, "/me", token).status_code == 200
        assert w.stats.shared_hits == 1
        # Single-flight: the WSGI worker waits on the ASGI worker's lease.
        lwa_emulator.set_latency(0.5)
        slow = lwa_emulator.issue_token()
        before = lwa_emulator.calls["tokeninfo"]
        holder = threading.Thread(target=call, args=(http, ua, "/me", slow))
        holder.start()
        with acl_redis.client() as admin:
            wait_for(lambda: bool(keys_of(admin, "lease")) or not holder.is_alive(), 10)
        assert call(http, uw, "/me", slow).status_code == 200
        holder.join(timeout=10)
        assert lwa_emulator.calls["tokeninfo"] == before + 1
        lwa_emulator.set_latency(0)
        # A revocation pushed to the other worker, and replayed after a flush.
        wait_for(lambda: private_fleet(a).subscribed and private_fleet(w).subscribed, 20)
        asyncio.run(a.revoke(token))
        wait_for(lambda: call(http, uw, "/me", token).status_code == 401, 5)
        with acl_redis.client() as admin:
            admin.flushall()
            assert call(http, ua, "/me", lwa_emulator.issue_token()).status_code == 200
            assert len(keys_of(admin, "rev")) == 1
            # The subscriber's re-assertion (on each reconnect, every 30 s) too.
            admin.flushall()
            fleet = private_fleet(a)
            assert fleet is not None
            client = fleet._client()
            try:
                fleet._reassert(client, announce=True)
            finally:
                close_client(client)
            assert len(keys_of(admin, "rev")) == 1
        for mw in (a, w):
            assert mw.stats.redis_errors == 0, mw.stats.snapshot()
    w.close()


def test_a_missing_permission_is_named_with_the_rules_and_requests_go_on(
    make_wsgi: Any, lwa_emulator: LWAEmulator, acl_redis: RedisServer, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "lwa_middleware.shared_cache")
    w = make_wsgi(redis_url=url(acl_redis, "short"), redis_timeout=SLACK)
    with wsgi_server(w) as uw:
        assert call(http, uw, "/me", lwa_emulator.issue_token()).status_code == 200
    shared = private_sync_shared(w)
    assert shared is not None
    assert shared.faults.get("noperm", 0) >= 1
    assert w.stats.redis_faults >= 1
    assert "[noperm]" in caplog.text
    assert ACL_RULES in caplog.text  # the fix, in full
    assert PASSWORD not in caplog.text
    w.close()


# -- redis_client= -------------------------------------------------------------


class RotatingToken(CredentialProvider):
    """A stand-in for an IAM credential provider (ElastiCache, MemoryDB):
    asked for a user and a short-lived token on each new connection."""

    def __init__(self) -> None:
        self.asked = 0

    def get_credentials(self) -> tuple[str, str]:
        self.asked += 1
        return "lwa", PASSWORD

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.get_credentials()


def test_redis_client_with_a_credential_provider_shares_as_the_acl_user(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, acl_redis: RedisServer,
    http: httpx2.Client,
) -> None:
    provider = RotatingToken()
    made: list[bool] = []

    def factory(asyncio: bool) -> Any:
        made.append(asyncio)
        options = dict(host="127.0.0.1", port=acl_redis.port, credential_provider=provider,
                       socket_timeout=SLACK, socket_connect_timeout=SLACK, protocol=2)
        return redis.asyncio.Redis(**options) if asyncio else redis.Redis(**options)

    a = make_asgi(redis_client=factory, redis_timeout=SLACK)
    w = make_wsgi(redis_client=factory, redis_timeout=SLACK)
    share_then_revoke(http, lwa_emulator, a, w)
    assert provider.asked >= 2
    assert True in made  # the ASGI worker's asyncio client
    assert made.count(False) >= 2  # the WSGI worker's, and each process's subscriber


def test_redis_client_mistakes_fail_at_construction() -> None:
    def good(asyncio: bool) -> Any:
        raise AssertionError("not called at construction")

    Settings.from_options(client_id=CLIENT, redis_client=good)
    for bad, said in (
        (redis.Redis(), "a factory, not a client"),
        (redis.Redis, "a factory, not a client or a class"),
        (lambda: None, "accept asyncio="),
        ("redis://x", "a factory"),
    ):
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_options(client_id=CLIENT, redis_client=bad)
        assert said in str(raised.value)
        assert "redis_client(asyncio=False)" in str(raised.value)  # what to pass
    with pytest.raises(ConfigurationError, match="redis_url or redis_client, not both"):
        Settings.from_options(client_id=CLIENT, redis_client=good, redis_url="redis://h/0")


def test_a_factory_returning_the_wrong_client_is_a_named_fault(
    make_asgi: Any, lwa_emulator: LWAEmulator, acl_redis: RedisServer, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A blocking client where an asyncio one is asked for: requests still
    succeed through LWA, and the log says what to return."""
    caplog.set_level(logging.ERROR, "lwa_middleware.shared_cache")

    def factory(asyncio: bool) -> Any:
        return redis.Redis(host="127.0.0.1", port=acl_redis.port, username="lwa",
                           password=PASSWORD)

    a = make_asgi(redis_client=factory, redis_timeout=SLACK)
    with uvicorn_server(a) as ua:
        assert call(http, ua, "/me", lwa_emulator.issue_token()).status_code == 200
    assert a.stats.redis_faults == 1
    assert "[client]" in caplog.text
    assert "redis.asyncio.Redis" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_factory_client_decoding_replies_never_drops_a_revocation(
    make_wsgi: Any, lwa_emulator: LWAEmulator, redis_srv: RedisServer, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``decode_responses=True`` (common in an application's own factory)
    makes redis-py decode every reply: the sealed values and the generated
    secret fail to decode, so sharing was off for good behind an opaque
    ``UnicodeDecodeError`` logged as an outage (and a value that does decode
    would read as corrupt and be deleted). Such a client is a named ``client``
    fault saying what to fix, and the revocation another worker wrote stays."""
    caplog.set_level(logging.ERROR, "lwa_middleware.shared_cache")

    def factory(asyncio: bool) -> Any:
        options = dict(host="127.0.0.1", port=redis_srv.port, decode_responses=True,
                       socket_timeout=SLACK, socket_connect_timeout=SLACK, protocol=2)
        return redis.asyncio.Redis(**options) if asyncio else redis.Redis(**options)

    token = lwa_emulator.issue_token()
    secret = b"d" * 32
    plain = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=secret)
    plain.revoke(token)  # a worker with a well-made client revokes it
    admin = redis_srv.client()
    assert keys_of(admin, "rev")
    w = make_wsgi(redis_client=factory, redis_timeout=SLACK, cache_key_secret=secret)
    with wsgi_server(w) as uw:
        call(http, uw, "/me", token)  # Redis unusable here: LWA decides
    assert keys_of(admin, "rev")  # still there for every other worker
    other = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=secret)
    with wsgi_server(other) as uo:
        assert call(http, uo, "/me", token).status_code == 401
    admin.close()
    assert w.stats.redis_faults >= 1
    assert "[client]" in caplog.text
    assert "decode_responses" in caplog.text
    for mw in (plain, w, other):
        mw.close()


def test_a_factory_client_slow_to_fail_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's defaults (socket_timeout 5 s, 10 retries with back-off) hold
    a WSGI request for seconds on a black-holed Redis, where the library's own
    clients give up within redis_timeout: warned about (once), with the fix;
    the docs' example is not."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from support.private import Limits, _topology, make_client

    limits = Limits(timeout=0.05, connect_timeout=0.05, max_connections=2)
    caplog.set_level(logging.WARNING, "lwa_middleware.shared_cache")
    for options, warned in (
        ({}, ["socket_timeout=5", "10 redis-py retries"]),
        ({"socket_timeout": None, "retry": Retry(NoBackoff(), 0)}, ["socket_timeout=None"]),
        ({"socket_timeout": 0.1, "socket_connect_timeout": 0.5,
          "retry": Retry(NoBackoff(), 0)}, []),
    ):
        monkeypatch.setattr(_topology, "_warned_slow", False)
        caplog.clear()
        settings = Settings.from_options(
            client_id=CLIENT,
            redis_client=lambda asyncio, o=options: redis.Redis(port=1, protocol=2, **o),
        )
        close_client(make_client(settings, limits, asyncio=False))
        close_client(make_client(settings, limits, asyncio=False))
        if warned:
            assert len(caplog.records) == 1  # once a process
            for said in (*warned, "retry=redis.retry.Retry"):
                assert said in caplog.text
        else:
            assert caplog.records == []
