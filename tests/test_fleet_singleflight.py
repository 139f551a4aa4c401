# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 3: cross-process single-flight that lasts as long as the lookup.

Waiters wait up to the lease holder's deadline and are woken by its publish
on the lease key, so a slow LWA (1.2 s, longer than the old 1 s wait) still
costs one lookup between workers. Against a real ``redis-server``; several
middlewares (ASGI and WSGI, each with its own memory) stand for workers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import uvicorn_server, wsgi_server
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    _module_redis,
    http,
    keys_of,
    rclient,
    redis_bin,
    redis_srv,
    timed,
)

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

SLOW = 1.2


def burst(bases: list[str], token: str) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(len(bases))

    def hit(base: str) -> None:
        with httpx2.Client(timeout=15) as client:
            barrier.wait(timeout=10)
            response, elapsed = timed(client, base, "/me", token)
        results.append((response.status_code, elapsed))

    threads = [threading.Thread(target=hit, args=(base,)) for base in bases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return results


def test_a_slow_lwa_is_asked_once_by_four_workers_and_the_waiters_wake_with_the_answer(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any,
    http: httpx2.Client,
) -> None:
    asgi = [make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK) for _ in range(2)]
    wsgi = [make_wsgi(redis_url=redis_srv.url, redis_timeout=SLACK) for _ in range(2)]
    with uvicorn_server(asgi[0]) as u1, uvicorn_server(asgi[1]) as u2, \
            wsgi_server(wsgi[0]) as w1, wsgi_server(wsgi[1]) as w2:
        bases = [u1, u2, w1, w2]
        for base in bases:  # warm: connections and the shared key secret
            response, _ = timed(http, base, "/me", lwa_emulator.issue_token())
            assert response.status_code == 200
        lwa_emulator.set_latency(SLOW)
        before = dict(lwa_emulator.calls)
        results = burst(bases, lwa_emulator.issue_token())
    for mw in wsgi:
        mw.close()
    assert [status for status, _ in results] == [200] * 4
    assert lwa_emulator.calls["tokeninfo"] - before["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] - before["profile"] == 1
    # Woken by the publish, not after a poll or a timeout: every request ends
    # soon after the one lookup (two LWA answers of 1.2 s each, in parallel).
    assert max(elapsed for _, elapsed in results) < 2 * SLOW + 1.5, results


def test_a_lease_carries_an_increasing_fencing_id(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    """Every lease taken on a token has a larger fencing id than the ones
    before it (the counter is its bucket's, in its Redis Cluster slot)."""
    mw = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    lwa_emulator.set_latency(0.5)
    fences: list[int] = []
    token = lwa_emulator.issue_token()
    with uvicorn_server(mw) as base:
        for _ in range(2):
            thread = threading.Thread(target=timed, args=(http, base, "/me", token))
            thread.start()
            while not keys_of(rclient, "lease") and thread.is_alive():
                time.sleep(0.005)  # a real server is acting
            [lease] = keys_of(rclient, "lease")
            value = rclient.get(lease)
            assert value is not None
            fences.append(int(value.split(b":")[0]))
            thread.join(timeout=10)
            assert keys_of(rclient, "lease") == []  # released by the put
            # Forget the token here and in Redis: the next lookup takes a new lease.
            mw.resolver.cache.clear()
            rclient.delete(*keys_of(rclient, "id"))
    assert fences[1] > fences[0]


def test_a_holder_whose_lease_was_taken_over_writes_nothing(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    """Fencing: a lookup that outlived its lease, now held by a newer lookup,
    must not write its (older) answer over what the newer one will write,
    nor take the newer holder's lease away. Its own caller is still served."""
    mw = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK)
    lwa_emulator.set_latency(0.5)
    token = lwa_emulator.issue_token()
    with uvicorn_server(mw) as base:
        done: list[int] = []
        thread = threading.Thread(
            target=lambda: done.append(timed(http, base, "/me", token)[0].status_code)
        )
        thread.start()
        while not keys_of(rclient, "lease") and thread.is_alive():
            time.sleep(0.005)  # a real server is acting
        [lease] = keys_of(rclient, "lease")
        # The lease ran out and another worker took it (a larger fencing id).
        rclient.set(lease, b"999999999:another-worker", px=30_000)
        thread.join(timeout=10)
    assert done == [200]
    assert keys_of(rclient, "id") == []  # the stale holder wrote nothing
    assert rclient.get(lease) == b"999999999:another-worker"
