"""Issue 24: a fleet that survives its Redis.

Item 1: every token a worker serves can be revoked by a push, whatever Redis
was doing when the token was first seen (the breaker open, Redis stalled
before the subscriber ever connected, no secret known yet). Item 4: a lost
write-back never strands the waiters of a lease.

Against a real ``redis-server`` (stalled with SIGSTOP: connections stay open
and nothing answers, as in a stall or a failover) and the LWA emulator, with
several WSGI middlewares (each with its own in-process cache, shared cache
and subscriber) standing for several workers. Each middleware's monotonic
clock is a :class:`FakeClock` where the test must hold a breaker open;
real-time waits are polled against generous bounds (the measured figures
are the fleet benchmark's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.callers import WsgiCaller
from support.clock import FakeClock
from support.private import BACKOFF, Settings, SyncSharedCache, private_fleet, private_sync_shared
from support.redis_servers import RedisServer, redis_binary, wait_for

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

#: Each Redis reply's deadline: a stalled Redis fails a call after this.
REDIS_TIMEOUT = 0.3
#: How long a push may take to be applied, on a loaded 2-core machine.
BOUND = 5.0
SECRET = "s" * 32


@pytest.fixture
def server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    srv = RedisServer(binary)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def status(mw: Any, token: str) -> int:
    return WsgiCaller(mw).get("/me", token).status


def subscribed(mw: Any) -> bool:
    return bool(private_fleet(mw).subscribed)


# -- item 1: every token served can be revoked by a push ----------------------


def test_a_token_first_seen_while_the_breaker_is_open_is_revoked_by_a_push(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, server: RedisServer
) -> None:
    # The clock stands still: the breaker, once open, stays open.
    a = make_wsgi(redis_url=server.url, redis_timeout=REDIS_TIMEOUT, clock=FakeClock())
    warm, first, token = (lwa_emulator.issue_token() for _ in range(3))
    assert status(a, warm) == 200
    wait_for(lambda: subscribed(a), BOUND)
    with server.paused():
        assert status(a, first) == 200  # Redis failed: the breaker opens
    assert private_sync_shared(a).degraded
    skipped = private_sync_shared(a).skipped
    assert status(a, token) == 200  # Redis skipped: asked LWA
    assert private_sync_shared(a).skipped == skipped + 2  # the read and the write-back
    assert subscribed(a)  # pushes still reach this worker
    b = make_wsgi(redis_url=server.url, redis_timeout=REDIS_TIMEOUT)
    b.revoke(token)  # written and pushed
    wait_for(lambda: status(a, token) == 401, BOUND)
    assert a.stats.fleet_pushed == 1


def test_a_revocation_pushed_before_the_subscriber_first_connected_is_replayed(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, server: RedisServer
) -> None:
    clock = FakeClock()
    options = {"redis_url": server.url, "redis_timeout": REDIS_TIMEOUT, "cache_key_secret": SECRET}
    a = make_wsgi(clock=clock, **options)
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with server.paused():
        assert status(a, token) == 200  # Redis stalled from the start
    assert not subscribed(a)
    b = make_wsgi(**options)
    b.revoke(token)  # pushed while a had no subscriber
    clock.advance(BACKOFF + 0.1)  # a's breaker lets a probe through (within local_cache_ttl)
    assert status(a, other) == 200  # Redis answers: a's subscriber starts
    wait_for(lambda: status(a, token) == 401, BOUND)
    assert a.stats.fleet_replayed == 1


def test_a_token_seen_before_the_secret_was_known_is_read_again_once_it_is(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, server: RedisServer
) -> None:
    # A generated secret, and Redis not reached yet: no push could name the
    # token (its Redis hex needs the secret). The copy lives as long as
    # without Redis while Redis stays away, and is read again once it answers.
    clock = FakeClock()
    a = make_wsgi(redis_url=server.url, redis_timeout=REDIS_TIMEOUT, clock=clock, cache_ttl=300)
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with server.paused():
        assert status(a, token) == 200
        clock.advance(a.resolver.settings.local_cache_ttl + 0.1)
        assert status(a, token) == 200  # still held: Redis is away
    assert lwa_emulator.calls["tokeninfo"] == 1
    b = make_wsgi(redis_url=server.url, redis_timeout=REDIS_TIMEOUT)
    b.revoke(token)
    clock.advance(BACKOFF + 0.1)  # a's breaker lets a probe through
    assert status(a, other) == 200  # Redis answers: a learns the secret
    assert status(a, token) == 401  # read again: Redis holds the revocation


# -- item 4: a lost write-back never strands the waiters ----------------------


def test_waiters_of_a_holder_whose_write_back_is_lost_answer_within_its_deadline(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, server: RedisServer
) -> None:
    timeout = 4.0
    options: dict[str, Any] = {
        "redis_url": server.url,
        "redis_timeout": REDIS_TIMEOUT,
        "cache_key_secret": SECRET,
        "timeout": timeout,
    }
    token = lwa_emulator.issue_token()
    # The holder: a worker's shared cache takes the lease on its miss, exactly
    # as before asking LWA, and is never heard of again (its write is lost).
    settings = Settings.from_options(
        client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url, **options
    )
    holder = SyncSharedCache(settings)
    try:
        assert holder.get(token) is None
    finally:
        holder.close()
    looks = server.client()
    assert looks.keys("lwa:v1:*:lease:*"), "the holder took no lease"
    looks.close()
    waiters = [make_wsgi(**options) for _ in range(3)]

    def timed(mw: Any) -> tuple[int, float]:
        started = time.monotonic()
        code = status(mw, token)
        return code, time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(timed, waiters))
    print("waiters answered after", [f"{took:.2f} s" for _, took in results])
    assert [code for code, _ in results] == [200, 200, 200]
    assert all(private_sync_shared(mw).waits == 1 for mw in waiters)  # each waited
    # The target is the deadline plus 1 s; the bound leaves room for a loaded
    # machine, and stays under twice the deadline (what the waiters took before).
    assert max(took for _, took in results) < timeout + 2.0
