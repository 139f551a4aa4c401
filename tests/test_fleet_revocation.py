# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 1: a revoke() or invalidate() reaches every worker at once.

Against a real ``redis-server`` and the LWA emulator, with several
middlewares (each with its own in-process cache and its own subscriber)
standing for several workers. Waits are real only where a real server must
act (a push to arrive, a subscriber to reconnect), each polled against a
generous bound; the exact propagation figures are in the fleet benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import RedisServer, uvicorn_server
from support.clock import FakeClock
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    _module_redis,
    call,
    http,
    keys_of,
    make,
    own_redis,
    rclient,
    redis_bin,
    redis_srv,
)
from support.private import CHANNEL, STREAM, private_fleet, token_digest

from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

#: The bound the tests hold propagation to: generous for a loaded 2-core
#: machine, yet well under local_cache_ttl (5 s), the bound before pushes.
BOUND = 2.0


def revoke(mw: Any, token: str) -> None:
    if isinstance(mw, LWAMiddleware):
        asyncio.run(mw.revoke(token))
    else:
        mw.revoke(token)


def invalidate(mw: Any, token: str) -> None:
    if isinstance(mw, LWAMiddleware):
        asyncio.run(mw.invalidate(token))
    else:
        mw.invalidate(token)


def wait_for(condition: Callable[[], bool], bound: float = 10.0) -> float:
    """Poll ``condition`` (real servers are acting); the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > bound:
            raise AssertionError(f"not within {bound} s")
        time.sleep(0.01)
    return time.monotonic() - started


def subscribed(mw: Any) -> bool:
    fleet = private_fleet(mw)
    return fleet is not None and fleet.subscribed


def refused(http: httpx2.Client, base: str, token: str) -> bool:
    return call(http, base, "/me", token).status_code == 401


@contextlib.contextmanager
def holding(
    make: Any, lwa: LWAEmulator, url: str, http: httpx2.Client, count: int
) -> Iterator[tuple[list[Any], list[str], str]]:
    """``count`` served workers sharing ``url``, each holding one new token in
    memory, every one but the first subscribed: ``(workers, bases, token)``."""
    made = [make(redis_url=url, redis_timeout=SLACK) for _ in range(count)]
    serve = made[0][1]
    workers = [mw for mw, _ in made]
    token = lwa.issue_token()
    with contextlib.ExitStack() as stack:
        bases = [stack.enter_context(serve(mw)) for mw in workers]
        for base in bases:
            assert call(http, base, "/me", token).status_code == 200
        wait_for(lambda: all(subscribed(mw) for mw in workers[1:]))
        yield workers, bases, token


# -- push --------------------------------------------------------------------


def test_a_revoke_reaches_the_other_workers_memory_at_once(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    with holding(make, lwa_emulator, redis_srv.url, http, 3) as ((a, b, c), (_, ub, uc), token):
        calls = lwa_emulator.calls["tokeninfo"]
        revoke(a, token)
        took = wait_for(lambda: refused(http, ub, token) and refused(http, uc, token), BOUND)
        assert took < BOUND
        response = call(http, ub, "/me", token)
        assert "revoked" in response.json()["error_description"]
        # Refused from memory: neither asked LWA (which still vouches for it).
        assert lwa_emulator.calls["tokeninfo"] == calls
    assert b.stats.fleet_pushed == 1
    assert c.stats.fleet_pushed == 1


def test_an_invalidate_reaches_the_other_workers_memory_at_once(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    with holding(make, lwa_emulator, redis_srv.url, http, 2) as ((a, b), (_, ub), token):
        key = token_digest(token.encode())
        assert b.resolver.cache.get(key) is not None
        invalidate(a, token)
        wait_for(lambda: b.resolver.cache.get(key) is None, BOUND)
        calls = lwa_emulator.calls["tokeninfo"]
        assert call(http, ub, "/me", token).status_code == 200
        assert lwa_emulator.calls["tokeninfo"] == calls + 1  # forgotten: asked again
    assert b.stats.fleet_pushed == 1


def test_while_subscribed_a_local_copy_is_trusted_for_cache_ttl(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    clock = FakeClock()
    mw = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK, clock=clock, cache_ttl=300)
    warm, token, early = (lwa_emulator.issue_token() for _ in range(3))
    with uvicorn_server(mw) as base:
        assert call(http, base, "/me", warm).status_code == 200
        wait_for(lambda: subscribed(mw))
        fleet = private_fleet(mw)
        fleet.stop()
        start, fleet.start = fleet.start, lambda: None  # held away
        # Made while the subscriber is away: trusted local_cache_ttl only.
        assert call(http, base, "/me", early).status_code == 200
        fleet.start = start
        fleet.start()
        wait_for(lambda: subscribed(mw))
        assert call(http, base, "/me", token).status_code == 200
        clock.advance(60)  # far past local_cache_ttl (5 s), within cache_ttl
        hits = mw.stats.hits
        assert call(http, base, "/me", token).status_code == 200
        assert mw.stats.hits == hits + 1
        assert call(http, base, "/me", early).status_code == 200
        assert mw.stats.shared_hits == 1  # the early copy was asked for again
    assert lwa_emulator.calls["tokeninfo"] == 3


def test_a_forged_push_is_ignored(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    mw = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(mw) as base:
        assert call(http, base, "/me", token).status_code == 200
        wait_for(lambda: subscribed(mw))
        [key] = keys_of(rclient, "id")
        digest = key.decode().rsplit(":", 1)[1]
        # Someone who can PUBLISH, without the secret, tries to log the user out.
        until = int((time.time() + 600) * 1000)
        rclient.publish(CHANNEL, f"99999999999999-0 {'0' * 64} r {digest} {until}")
        rclient.publish(CHANNEL, f"99999999999999-1 r {digest} {until}")
        fleet = private_fleet(mw)
        wait_for(lambda: fleet.forged >= 1 and fleet.forged + fleet.malformed >= 2)
        assert call(http, base, "/me", token).status_code == 200
    assert mw.stats.fleet_pushed == 0


def test_nothing_pushed_or_logged_holds_the_token(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    pubsub = rclient.pubsub()
    pubsub.subscribe(CHANNEL)
    with uvicorn_server(a) as base:
        assert call(http, base, "/me", token).status_code == 200
        assert call(http, base, "/me", other).status_code == 200
        revoke(a, token)
        invalidate(a, other)
    heard: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            heard.append(message["data"])
    pubsub.close()
    logged = [fields[b"m"] for _, fields in rclient.xrange(STREAM)]
    assert len(heard) == 2
    for raw in [*heard, *logged]:
        for secret in (token, other):
            assert secret.encode() not in raw
            assert secret.split("|", 1)[-1][:40].encode() not in raw


# -- replay ------------------------------------------------------------------


def test_a_worker_that_missed_the_push_replays_it_from_the_stream(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    with holding(make, lwa_emulator, redis_srv.url, http, 2) as ((a, b), (_, ub), token):
        private_fleet(b).stop()  # away: the push is lost to it
        revoke(a, token)
        key = token_digest(token.encode())
        assert b.resolver.cache.rejection(key) is None
        private_fleet(b).start()  # back: it reads what it missed
        wait_for(lambda: b.resolver.cache.rejection(key) is not None, BOUND * 3)
        assert refused(http, ub, token)
    assert b.stats.fleet_replayed == 1
    assert b.stats.fleet_resyncs == 0


def test_a_gap_in_the_stream_drops_what_memory_holds(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    b = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(b) as ub:
        wait_for(lambda: call(http, ub, "/me", token).status_code == 200 and subscribed(b))
        assert call(http, ub, "/me", token).status_code == 200
        fleet = private_fleet(b)
        fleet.stop()
        rclient.xtrim(STREAM, maxlen=0)  # trimmed past what B saw
        rclient.xadd(STREAM, {"m": b"x"})
        fleet.start()
        wait_for(lambda: b.stats.fleet_resyncs == 1, BOUND * 3)
        assert b.resolver.cache.get(token_digest(token.encode())) is None
        shared = b.stats.shared_hits
        assert call(http, ub, "/me", token).status_code == 200
        assert b.stats.shared_hits == shared + 1


def test_a_revocation_read_from_redis_is_kept_until_the_token_expires(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token(expires_in=3600)
    with uvicorn_server(a) as ua:
        assert call(http, ua, "/me", token).status_code == 200
        revoke(a, token)
    clock = FakeClock()
    fresh = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK, clock=clock,
                      negative_cache_ttl=30)
    with uvicorn_server(fresh) as base:
        assert refused(http, base, token)
        clock.advance(600)  # far past negative_cache_ttl, within the token's life
        assert fresh.resolver.cache.rejection(token_digest(token.encode())) is not None
        clock.advance(3600)
        assert fresh.resolver.cache.rejection(token_digest(token.encode())) is None


# -- data loss -----------------------------------------------------------------


def test_pushes_survive_a_flushall(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    a, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    b, _ = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    token, before = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with serve(a) as ua, serve(b) as ub:
        for base in (ua, ub):
            assert call(http, base, "/me", before).status_code == 200
        wait_for(lambda: subscribed(b))
        revoke(a, before)
        wait_for(lambda: refused(http, ub, before), BOUND)
        for base in (ua, ub):
            assert call(http, base, "/me", token).status_code == 200
        rclient.flushall()
        revoke(a, token)
        wait_for(lambda: refused(http, ub, token), BOUND)
        # Both revocations are in Redis again: the one made before the flush
        # replayed on the epoch's loss (and announced again), and the new one.
        assert len(keys_of(rclient, "rev")) == 2
        wait_for(lambda: b.stats.fleet_pushed >= 3, BOUND)
        time.sleep(1.5)  # and no more: the loss is announced once a process
    # (4 if A's subscriber claimed the loss between the new revocation's
    # write and its own announcement: then both announce it.)
    assert b.stats.fleet_pushed in (3, 4)


def test_pushes_resume_after_a_restart_and_what_was_missed_is_dropped(
    make_asgi: Any, lwa_emulator: LWAEmulator, own_redis: RedisServer, http: httpx2.Client
) -> None:
    a = make_asgi(redis_url=own_redis.url, redis_timeout=SLACK)
    b = make_asgi(redis_url=own_redis.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua, uvicorn_server(b) as ub:
        assert call(http, ua, "/me", token).status_code == 200
        assert call(http, ub, "/me", token).status_code == 200
        wait_for(lambda: subscribed(b))
        connects = private_fleet(b).connects
        own_redis.stop()
        wait_for(lambda: not subscribed(b))
        own_redis.start()  # empty: the stream B read is gone
        wait_for(lambda: private_fleet(b).connects > connects and subscribed(b), 15)
        assert b.stats.fleet_resyncs == 1  # it cannot know what it missed
        assert call(http, ub, "/me", token).status_code == 200
        wait_for(lambda: subscribed(a))
        revoke(a, token)
        wait_for(lambda: refused(http, ub, token), BOUND)


def test_an_evicted_revocation_is_asserted_again(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    a = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua:
        assert call(http, ua, "/me", token).status_code == 200
        wait_for(lambda: subscribed(a))
        revoke(a, token)
        [rev] = keys_of(rclient, "rev")
        rclient.delete(rev)  # as allkeys-lru would, the epoch surviving
        # Each time the subscriber (re)connects, and every REASSERT_INTERVAL.
        rclient.client_kill_filter(_type="pubsub")
        wait_for(lambda: keys_of(rclient, "rev") == [rev], 10)
        assert 0 < rclient.pttl(rev) <= 3600 * 1000


# -- seams -------------------------------------------------------------------


def test_a_paused_redis_costs_no_hang_and_pushes_resume_after_it(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    """CLIENT PAUSE ALL: the subscriber's heartbeat goes unanswered and it
    reconnects; requests meanwhile are misses with the short deadline."""
    a = make_asgi(redis_url=redis_srv.url)
    b = make_asgi(redis_url=redis_srv.url)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua, uvicorn_server(b) as ub:
        wait_for(lambda: call(http, ub, "/me", token).status_code == 200 and subscribed(b))
        assert call(http, ua, "/me", token).status_code == 200
        connects = private_fleet(b).connects
        rclient.execute_command("CLIENT", "PAUSE", "4500", "ALL")
        started = time.monotonic()
        while time.monotonic() - started < 4:
            fresh = lwa_emulator.issue_token()
            begun = time.monotonic()
            assert call(http, ub, "/me", fresh).status_code == 200
            assert time.monotonic() - begun < 1.5  # a miss, never a hang
        wait_for(lambda: private_fleet(b).connects > connects and subscribed(b), 20)
        wait_for(lambda: subscribed(a), 20)
        revoke(a, token)
        wait_for(lambda: refused(http, ub, token), BOUND)
