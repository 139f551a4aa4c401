# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""The shared Redis cache, against a real ``redis-server`` and the LWA emulator.

Every middleware here is served by a real server (uvicorn in a thread for
ASGI, a threaded wsgiref server for WSGI, separate uvicorn processes for the
multi-process test) and every request crosses a loopback socket. Several
middlewares in one process stand for several workers: each has its own
in-process cache, so only Redis can make them agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import (
    BlackHole,
    RedisServer,
    Workers,
    free_port,
    uvicorn_server,
    wsgi_server,
)
from support.clock import FakeClock
from support.fleet import (  # noqa: F401  (fixtures)
    SHARED_LOGGER,
    SLACK,
    _module_redis,
    all_values,
    call,
    failure_warnings,
    http,
    keys_of,
    kind_of,
    opened,
    rclient,
    redis_bin,
    redis_srv,
    settle,
    timed,
    user_id,
)
from support.private import BACKOFF

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

# -- sharing -----------------------------------------------------------------


def test_two_asgi_and_one_wsgi_resolve_a_token_once_between_them(
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    a1 = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    a2 = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    w = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="98109")
    customer = lwa_emulator.customer_for(token)
    with uvicorn_server(a1) as u1, uvicorn_server(a2) as u2, wsgi_server(w) as u3:
        first = call(http, u1, "/me", token)
        assert first.status_code == 200, first.text
        assert user_id(first) == customer.user_id
        assert lwa_emulator.calls == {"tokeninfo": 1, "profile": 1}

        for base, path in ((u2, "/zip"), (u3, "/me"), (u2, "/me"), (u3, "/zip")):
            response = call(http, base, path, token)
            assert response.status_code == 200, (base, path, response.text)
            assert response.json()["identity"] == first.json()["identity"]
        assert lwa_emulator.calls == {"tokeninfo": 1, "profile": 1}
        assert a2.stats.shared_hits == 1
        assert w.stats.shared_hits == 1
        assert a1.stats.shared_hits == 0

        # A rejection is shared too.
        revoked = lwa_emulator.issue_token()
        lwa_emulator.revoke(revoked)
        before = lwa_emulator.calls["tokeninfo"]
        for base in (u1, u2, u3):
            response = call(http, base, "/me", revoked)
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_token"
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert lwa_emulator.calls["tokeninfo"] == before + 1
    w.close()


def test_unix_socket_url_is_shared(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    w1 = make_wsgi(redis_url=redis_srv.unix_url, redis_timeout=SLACK)
    w2 = make_wsgi(redis_url=redis_srv.unix_url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with wsgi_server(w1) as u1, wsgi_server(w2) as u2:
        assert call(http, u1, "/me", token).status_code == 200
        assert call(http, u2, "/me", token).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert w2.stats.shared_hits == 1
    w1.close()
    w2.close()


def test_configured_secret_stays_out_of_redis_and_partitions_the_keys(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    w1 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=b"k" * 32)
    w2 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret="k" * 32)
    other = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=b"z" * 32)
    token = lwa_emulator.issue_token()
    with wsgi_server(w1) as u1, wsgi_server(w2) as u2, wsgi_server(other) as u3:
        for base in (u1, u2, u3):
            assert call(http, base, "/me", token).status_code == 200
    # Same secret: shared. Another secret: a key space of its own.
    assert lwa_emulator.calls["tokeninfo"] == 2
    assert w2.stats.shared_hits == 1
    assert other.stats.shared_hits == 0
    assert rclient.exists("lwa:v1:secret") == 0
    assert len(keys_of(rclient, "id")) == 2
    for mw in (w1, w2, other):
        mw.close()


def test_nothing_in_redis_can_be_turned_back_into_a_token(
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    w = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    good = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="10001")
    uid_only = lwa_emulator.issue_token(scopes=["profile:user_id"])
    revoked = lwa_emulator.issue_token()
    lwa_emulator.revoke(revoked)
    # Two tokens sharing all but their last characters get distinct entries.
    near = good[:-1] + ("A" if good[-1] != "A" else "B")
    tokens = [good, uid_only, revoked, near]
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        assert call(http, ua, "/me", good).status_code == 200
        assert call(http, uw, "/uid", uid_only).status_code == 200
        assert call(http, ua, "/me", revoked).status_code == 401
        assert call(http, uw, "/me", near).status_code == 401
        # A lookup in flight, so a lease is there to inspect too.
        lwa_emulator.set_latency(0.5)
        slow = lwa_emulator.issue_token()
        tokens.append(slow)
        thread = threading.Thread(target=call, args=(http, uw, "/me", slow))
        thread.start()
        deadline = time.monotonic() + 5
        while not keys_of(rclient, "lease") and time.monotonic() < deadline:
            time.sleep(0.01)
        stored = all_values(rclient)
        thread.join(timeout=10)
        stored.update(all_values(rclient))

    kinds = {kind_of(key) for key in stored}
    kinds -= {b"epoch", b"fence"}  # each bucket's data-loss marker and fencing counter
    kinds.discard(b"lwa:v1:epoch")  # the marker of the data set
    assert kinds == {b"id", b"rej", b"lease", b"lwa:v1:secret"}, kinds
    assert len(keys_of(rclient, "id")) == 3  # good, uid_only, slow
    assert len(keys_of(rclient, "rej")) == 2  # revoked, near
    blob = b"\n".join(k + b"=" + v for k, v in stored.items())
    for token in tokens:
        raw = token.encode()
        for start in range(len(raw) - 15):
            assert raw[start : start + 16] not in blob, "a token fragment is stored in Redis"
        # The digest is keyed: a plain hash of the token is not a key.
        for digest in (hashlib.sha256(raw).hexdigest(), hashlib.blake2b(raw).hexdigest()):
            assert digest.encode() not in blob
    for key, value in stored.items():
        if kind_of(key) in (b"id", b"rej"):
            data = opened(value)  # JSON, not pickle, behind its MAC
            assert data["v"] == 2
    identity = opened(stored[keys_of(rclient, "id")[0]])
    assert set(identity) == {
        "v",
        "user_id",
        "email",
        "name",
        "postal_code",
        "scopes",
        "client_id",
        "expires_at",
        "has_profile",
    }
    w.close()


# -- lifetimes ---------------------------------------------------------------


def test_redis_ttls_are_bounded_by_cache_ttl_and_by_the_token(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    short_lived = make_wsgi(
        redis_url=redis_srv.url, redis_timeout=SLACK, cache_ttl=300, negative_cache_ttl=7
    )
    short_ttl = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_ttl=2)
    token = lwa_emulator.issue_token(expires_in=3)
    with wsgi_server(short_lived) as u1:
        assert call(http, u1, "/me", token).status_code == 200
        [key] = keys_of(rclient, "id")
        assert 0 < rclient.pttl(key) <= 3000
        revoked = lwa_emulator.issue_token()
        lwa_emulator.revoke(revoked)
        assert call(http, u1, "/me", revoked).status_code == 401
        [rej] = keys_of(rclient, "rej")
        assert 0 < rclient.pttl(rej) <= 7000
    rclient.flushall()
    with wsgi_server(short_ttl) as u2:
        assert call(http, u2, "/me", lwa_emulator.issue_token(expires_in=3600)).status_code == 200
        [key] = keys_of(rclient, "id")
        assert 0 < rclient.pttl(key) <= 2000
    short_lived.close()
    short_ttl.close()


def test_transient_failures_are_not_stored(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    w1 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    w2 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", times=1)
    with wsgi_server(w1) as u1, wsgi_server(w2) as u2:
        assert call(http, u1, "/me", token).status_code == 503
        assert keys_of(rclient, "id") == keys_of(rclient, "rej") == []
        assert keys_of(rclient, "lease") == []  # released, not left to expire
        assert call(http, u2, "/me", token).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 2
    w1.close()
    w2.close()


def test_an_entry_kept_past_its_token_expiry_is_never_served(
    make_asgi: Callable[..., LWAMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    first = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    late = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token(expires_in=2)
    with uvicorn_server(first) as u1, uvicorn_server(late) as u2:
        assert call(http, u1, "/me", token).status_code == 200
        [key] = keys_of(rclient, "id")
        assert rclient.pttl(key) <= 2000
        # As if a clock or a bug had let the entry outlive its token.
        rclient.pexpire(key, 60_000)
        time.sleep(2.2)
        before = lwa_emulator.calls["tokeninfo"]
        response = call(http, u2, "/me", token)
        assert response.status_code == 401
        assert lwa_emulator.calls["tokeninfo"] == before + 1
        assert late.stats.shared_hits == 0


# -- invalidation ------------------------------------------------------------


def test_invalidate_on_one_middleware_reaches_the_others(
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    a1 = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a1) as u1:
        assert call(http, u1, "/me", token).status_code == 200

    # Control: a fresh worker is served from Redis, without asking LWA.
    control = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    with uvicorn_server(control) as uc:
        assert call(http, uc, "/me", token).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert control.stats.shared_hits == 1

    asyncio.run(a1.invalidate(token))  # from another event loop than a1's server
    assert keys_of(rclient, "id") == []
    fresh = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    with uvicorn_server(fresh) as uf:
        assert call(http, uf, "/me", token).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 2
    assert fresh.stats.shared_hits == 0

    # The same from WSGI, for a rejection this time.
    w1 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    revoked = lwa_emulator.issue_token()
    lwa_emulator.revoke(revoked)
    with wsgi_server(w1) as uw:
        assert call(http, uw, "/me", revoked).status_code == 401
    assert len(keys_of(rclient, "rej")) == 1
    w1.invalidate(revoked)
    assert keys_of(rclient, "rej") == []
    w1.close()


# -- cross-process single-flight --------------------------------------------


def test_a_lease_holder_failing_hands_over_instead_of_failing_the_others(
    make_asgi: Callable[..., LWAMiddleware],
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    a1 = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    a2 = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3)
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", times=1)
    results: list[tuple[int, float]] = []
    with uvicorn_server(a1) as u1, uvicorn_server(a2) as u2:
        barrier = threading.Barrier(2)

        def hit(base: str) -> None:
            barrier.wait(timeout=5)
            response, elapsed = timed(http, base, "/me", token)
            results.append((response.status_code, elapsed))

        threads = [threading.Thread(target=hit, args=(base,)) for base in (u1, u2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    # The leader saw LWA's 503; the follower did not wait for nothing: it
    # took over and resolved the token itself.
    assert sorted(status for status, _ in results) == [200, 503]
    assert all(elapsed < 2.5 for _, elapsed in results), results
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_four_worker_processes_resolve_a_new_token_once(
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    tmp_path: Any,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    workers = Workers(
        str(tmp_path),
        4,
        {
            "W_CLIENT_ID": lwa_emulator.client_id,
            "W_API": lwa_emulator.base_url,
            "W_REDIS": redis_srv.url,
            "W_REDIS_TIMEOUT": str(SLACK),
        },
    )
    try:
        workers.wait_ready()
        # Steady state: every worker has its LWA and Redis connections and
        # the shared key secret before the measured burst.
        with httpx2.Client(timeout=10) as client:
            for url in workers.urls:
                warm = lwa_emulator.issue_token()
                for prefix in ("/r", "/n"):
                    assert call(client, url, prefix + "/me", warm).status_code == 200
        # Slow enough that every worker's request arrives while the first
        # lookup is still in flight.
        lwa_emulator.set_latency(0.3)

        def burst(prefix: str) -> tuple[int, list[int]]:
            token = lwa_emulator.issue_token()
            before = lwa_emulator.calls["tokeninfo"]
            barrier = threading.Barrier(len(workers.urls))
            statuses: list[int] = []
            users: set[str] = set()

            def hit(base: str) -> None:
                with httpx2.Client(timeout=10) as client:
                    barrier.wait(timeout=10)
                    response = call(client, base, prefix + "/me", token)
                statuses.append(response.status_code)
                users.add(response.json().get("user_id", ""))

            threads = [threading.Thread(target=hit, args=(url,)) for url in workers.urls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=15)
            assert len(users) == 1
            return lwa_emulator.calls["tokeninfo"] - before, statuses

        with_redis, statuses = burst("/r")
        assert statuses == [200] * 4
        with httpx2.Client(timeout=10) as client:
            stats = [client.get(url + "/stats").json() for url in workers.urls]
        without_redis, statuses = burst("/n")
        assert statuses == [200] * 4
    finally:
        workers.close()
    record_property("tokeninfo_with_redis", with_redis)
    record_property("tokeninfo_without_redis", without_redis)
    with capsys.disabled():
        print(
            f"\n4 workers, one new token: {with_redis} tokeninfo call(s) with Redis, "
            f"{without_redis} without"
        )
    assert with_redis == 1, stats
    assert without_redis == 4


# -- Redis trouble -----------------------------------------------------------


def test_redis_killed_mid_run_is_a_miss_and_sharing_resumes_after_restart(
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    redis_bin: str,
    http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    server = RedisServer(redis_bin)
    server.start()
    try:
        a1 = make_asgi(redis_url=server.url, redis_timeout=SLACK)
        a2 = make_asgi(redis_url=server.url, redis_timeout=SLACK)
        w = make_wsgi(redis_url=server.url, redis_timeout=SLACK)
        with uvicorn_server(a1) as u1, uvicorn_server(a2) as u2, wsgi_server(w) as u3:
            bases = (u1, u2, u3)
            token = lwa_emulator.issue_token()
            for base in bases:
                assert call(http, base, "/me", token).status_code == 200
            assert lwa_emulator.calls["tokeninfo"] == 1

            server.stop()
            for _ in range(3):
                fresh = lwa_emulator.issue_token()
                before = lwa_emulator.calls["tokeninfo"]
                for base in bases:
                    response, elapsed = timed(http, base, "/me", fresh)
                    assert response.status_code == 200, response.text
                    assert elapsed < 2.0
                # Each asked LWA itself: nothing is shared while Redis is down.
                assert lwa_emulator.calls["tokeninfo"] == before + 3
                # Cached in-process still works meanwhile.
                assert call(http, u1, "/me", token).status_code == 200

            server.start()
            resumed = False
            deadline = time.monotonic() + 8
            while not resumed and time.monotonic() < deadline:
                settle(0.3)
                fresh = lwa_emulator.issue_token()
                before = lwa_emulator.calls["tokeninfo"]
                statuses = [call(http, base, "/me", fresh).status_code for base in bases]
                assert statuses == [200, 200, 200]
                resumed = lwa_emulator.calls["tokeninfo"] == before + 1
            assert resumed, "sharing did not resume after Redis came back"
        w.close()
    finally:
        server.close()
    warnings = failure_warnings(caplog)
    # Redis came back empty: each middleware may also say, once, that it lost
    # its data and re-asserts its revocations (the data-loss check), which is
    # not a failure line.
    failures = [r for r in warnings if "lost its data" not in r.getMessage()]
    # At most once per interval and middleware, however many requests failed.
    assert 1 <= len(failures) <= 3, [r.getMessage() for r in warnings]
    assert len(warnings) - len(failures) <= 3, [r.getMessage() for r in warnings]
    for record in warnings:
        assert token not in record.getMessage()


def test_a_black_holed_redis_costs_no_hang(
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    with BlackHole() as hole:
        a = make_asgi(redis_url=hole.url)
        w = make_wsgi(redis_url=hole.url)
        with uvicorn_server(a) as ua, wsgi_server(w) as uw:
            started = time.monotonic()
            for i in range(20):
                token = lwa_emulator.issue_token()
                response, elapsed = timed(http, ua if i % 2 else uw, "/me", token)
                assert response.status_code == 200, response.text
                assert elapsed < 2.0
            total = time.monotonic() - started
        w.close()
        assert hole.accepted >= 2  # both really tried Redis
        # ...but backed off after each failure instead of paying the timeout
        # on every request: one new connection per back-off period at most.
        assert hole.accepted <= 2 * (2 + int(total / BACKOFF)), (hole.accepted, total)
    assert total < 5.0
    assert lwa_emulator.calls["tokeninfo"] == 20
    warnings = failure_warnings(caplog)
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]


def test_corrupt_or_foreign_values_are_misses_and_are_replaced(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    make_asgi: Callable[..., LWAMiddleware],
    lwa_emulator: LWAEmulator,
    rclient: redis.Redis,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    token = lwa_emulator.issue_token()
    first = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    with wsgi_server(first) as uw:
        assert call(http, uw, "/me", token).status_code == 200
    first.close()
    [key] = keys_of(rclient, "id")
    sealed = rclient.get(key)
    good = opened(sealed)
    forged = dict(good, client_id="amzn1.application-oa2-client.someone-else")
    corruptions: dict[str, Callable[[], Any]] = {
        "not JSON": lambda: rclient.set(key, b"{not json", px=60_000),
        "not UTF-8": lambda: rclient.set(key, b"\x80\x81\xff", px=60_000),
        "other schema": lambda: rclient.set(key, json.dumps(dict(good, v=99)), px=60_000),
        "wrong types": lambda: rclient.set(key, json.dumps(dict(good, scopes="p")), px=60_000),
        "missing field": lambda: rclient.set(
            key, json.dumps({k: v for k, v in good.items() if k != "has_profile"}), px=60_000
        ),
        "another client": lambda: rclient.set(key, json.dumps(forged), px=60_000),
        "an unsealed value": lambda: rclient.set(key, json.dumps(good), px=60_000),
        "a broken seal": lambda: rclient.set(key, b"0" * 64 + sealed[64:], px=60_000),
        "a hash": lambda: (rclient.delete(key), rclient.hset(key, "f", "v")),
    }
    for name, corrupt in corruptions.items():
        for make in (make_wsgi, make_asgi):
            corrupt()
            # A worker with an empty in-process cache.
            fresh = make(redis_url=redis_srv.url, redis_timeout=SLACK)
            serve = wsgi_server if make is make_wsgi else uvicorn_server
            before = lwa_emulator.calls["tokeninfo"]
            with serve(fresh) as base:
                response = call(http, base, "/me", token)
            assert response.status_code == 200, (name, response.text)
            assert lwa_emulator.calls["tokeninfo"] == before + 1, name
            assert fresh.stats.shared_hits == 0, name
            # Dropped, then replaced by the fresh lookup's good value.
            assert opened(rclient.get(key))["client_id"] == lwa_emulator.client_id, name
            if isinstance(fresh, LWAWSGIMiddleware):
                fresh.close()

    # A corrupt rejection is a miss too.
    revoked = lwa_emulator.issue_token()
    lwa_emulator.revoke(revoked)
    w1 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    with wsgi_server(w1) as uw:
        assert call(http, uw, "/me", revoked).status_code == 401
    [rej] = keys_of(rclient, "rej")
    rclient.set(rej, b'{"v":1,"error":"nope","description":""}', px=60_000)
    w2 = make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    before = lwa_emulator.calls["tokeninfo"]
    with wsgi_server(w2) as uw:
        assert call(http, uw, "/me", revoked).status_code == 401
    assert lwa_emulator.calls["tokeninfo"] == before + 1
    assert w2.stats.rejections_cached == 0
    w1.close()
    w2.close()


def test_a_worker_that_clears_its_own_cache_is_served_from_redis(
    make_asgi: Callable[..., LWAMiddleware],
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    http: httpx2.Client,
) -> None:
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as base:
        assert call(http, base, "/me", token).status_code == 200
        a.resolver.cache.clear()
        assert len(a.resolver.cache) == 0
        assert call(http, base, "/me", token).status_code == 200
    # The in-process cache answers first; once it forgot, Redis does, not LWA.
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert a.stats.shared_hits == 1


async def _asgi_status(app: LWAMiddleware, token: str) -> int:
    """One GET /me through ``app`` on the running loop; its status."""
    statuses: list[int] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/me", "raw_path": b"/me", "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def test_a_shared_hit_starts_no_flight_and_a_miss_still_takes_the_lease(
    make_asgi: Callable[..., LWAMiddleware],
    lwa_emulator: LWAEmulator,
    redis_srv: RedisServer,
    rclient: redis.Redis,
) -> None:
    # Issue 23: a Redis hit is read before any flight task (only a miss needs
    # one); the miss still takes the lease (cross-process single-flight).
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret="k" * 32)
    token = lwa_emulator.issue_token()
    flights: list[int] = []

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            if getattr(coro, "__qualname__", "") == "TaskFlights._land":
                flights.append(1)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        statuses = [await _asgi_status(a, token)]
        flown = len(flights)
        a.resolver.cache.clear()
        statuses.append(await _asgi_status(a, token))
        statuses.append(len(flights) - flown)
        await a.aclose()
        return statuses

    first, hit, flown_for_hit = asyncio.run(main())
    assert (first, hit) == (200, 200)
    assert len(flights) == 1
    assert flown_for_hit == 0
    assert a.stats.shared_hits == 1
    assert lwa_emulator.calls["tokeninfo"] == 1
    # One lease was taken (the fencing counter counts them), by the miss.
    fences = [int(rclient.get(k) or 0) for k in rclient.scan_iter(match="lwa:v1:{???}:fence")]
    assert fences == [1]


def test_while_redis_is_skipped_an_asgi_miss_skips_it_once(
    make_asgi: Callable[..., LWAMiddleware], lwa_emulator: LWAEmulator
) -> None:
    # The read before the flight (issue 23) is not made while Redis is
    # backed off: a miss then skips Redis once, as before, not twice.
    a = make_asgi(redis_url=f"redis://127.0.0.1:{free_port()}", clock=FakeClock())

    async def main() -> list[int]:
        statuses = [await _asgi_status(a, lwa_emulator.issue_token())]  # fails: backs off
        shared = a.resolver._async_shared
        assert shared is not None
        assert shared.degraded
        skipped = shared.skipped
        statuses += [await _asgi_status(a, lwa_emulator.issue_token()) for _ in range(3)]
        statuses.append(shared.skipped - skipped)
        await a.aclose()
        return statuses

    *statuses, skipped = asyncio.run(main())
    assert statuses == [200] * 4
    assert skipped == 3 * 2  # each miss: its read and its write-back
    assert lwa_emulator.calls["tokeninfo"] == 4


def test_a_revocation_survives_a_lookup_that_was_in_flight(
    redis_srv: RedisServer, lwa_emulator: LWAEmulator
) -> None:
    from support.private import Resolved, Settings, SyncSharedCache

    from lwa_middleware import Identity, InvalidToken

    settings = Settings.from_options(
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        redis_url=redis_srv.url,
        redis_timeout=SLACK,
    )
    worker_a, worker_b = SyncSharedCache(settings), SyncSharedCache(settings)
    token = lwa_emulator.issue_token()
    assert worker_a.get(token) is None  # A starts a lookup and holds the lease
    worker_b.revoke(token, 60)  # B logs the user out meanwhile
    identity = Identity(user_id="u", client_id=lwa_emulator.client_id, expires_at=time.time() + 60)
    worker_a.put(token, Resolved(identity, time.monotonic() + 60, has_profile=True))
    for worker in (worker_a, worker_b, SyncSharedCache(settings)):
        found = worker.get(token)
        assert isinstance(found, InvalidToken), found
        assert "revoked" in found.description
