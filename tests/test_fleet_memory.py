"""Issue 24, item 5: a Redis at ``maxmemory`` still carries every revocation.

The recommended policy is ``noeviction`` (README, SECURITY.md and the ``oom``
log line say the same): nothing of ours is evicted, and the scripts that carry
a revocation (write, re-assert, announce) may write past ``maxmemory``
(Redis 7's ``allow-oom`` flag), while a lookup's own writes (an identity, a
lease) are skipped without opening the breaker, so revocations are still read.

Against a real ``redis-server`` filled to ``maxmemory`` with other keys, and
the LWA emulator, with WSGI middlewares standing for workers. The figures
per policy (``allkeys-lru`` included) are the fleet benchmark's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from support.callers import WsgiCaller
from support.private import FAULTS, FULL_MEANWHILE, private_fleet, private_sync_shared
from support.redis_servers import RedisServer, redis_binary, wait_for

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

REDIS_TIMEOUT = 0.3
BOUND = 5.0


@pytest.fixture
def full_redis() -> Iterator[RedisServer]:
    """A Redis at maxmemory under noeviction: :func:`fill` it once the workers met it."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    srv = RedisServer(binary, extra=["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"])
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def fill(srv: RedisServer) -> int:
    """Write other keys until Redis refuses (OOM); how many fitted."""
    client = srv.client()
    count = 0
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            for i in range(100):
                pipe.set(f"other:{count + i}", b"x" * 1000)
            pipe.execute()
            count += 100
    except redis.exceptions.OutOfMemoryError:
        # At the brink, a write may still pass now and then: set the limit
        # under what is used, so every write that may be refused is.
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used - (1 << 20)))
        return count
    finally:
        client.close()


def status(mw: Any, token: str) -> int:
    return WsgiCaller(mw).get("/me", token).status


def test_at_maxmemory_revocations_reach_every_worker_and_every_new_one(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, full_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = {"redis_url": full_redis.url, "redis_timeout": REDIS_TIMEOUT}
    a, b = make_wsgi(**options), make_wsgi(**options)
    held = lwa_emulator.issue_token()
    for mw in (a, b):
        assert status(mw, held) == 200
    wait_for(lambda: private_fleet(b).subscribed, BOUND)
    assert fill(full_redis) > 0
    # Seen first while Redis is full: answered, not stored, and no breaker.
    late = lwa_emulator.issue_token()
    with caplog.at_level(logging.ERROR, "lwa_middleware.shared_cache"):
        for mw in (a, b):
            assert status(mw, late) == 200
    assert not private_sync_shared(a).degraded
    assert not private_sync_shared(b).degraded
    assert "[oom]" in caplog.text
    a.revoke(held)  # both written and announced, past maxmemory
    a.revoke(late)
    wait_for(lambda: status(b, held) == 401 and status(b, late) == 401, BOUND)
    fresh = make_wsgi(**options)  # a worker started while Redis is full
    assert status(fresh, held) == 401
    assert status(fresh, late) == 401
    assert status(fresh, lwa_emulator.issue_token()) == 200  # others still served


def test_the_oom_log_line_says_what_a_full_redis_does(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, full_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lookup's write refused for want of memory opens no breaker: the line
    must not say requests go on without Redis (revocations are still read)."""
    mw = make_wsgi(redis_url=full_redis.url, redis_timeout=REDIS_TIMEOUT)
    assert status(mw, lwa_emulator.issue_token()) == 200
    assert fill(full_redis) > 0
    with caplog.at_level(logging.ERROR, "lwa_middleware.shared_cache"):
        assert status(mw, lwa_emulator.issue_token()) == 200
    lines = [r.getMessage() for r in caplog.records if "[oom]" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "without Redis" not in lines[0]
    assert lines[0].endswith(FULL_MEANWHILE)
    assert "lookups go on unshared" in lines[0]
    assert "revocations are still written and read" in lines[0]


def test_the_oom_log_line_recommends_the_documented_policy() -> None:
    _, fix = FAULTS["oom"]
    assert "keep maxmemory-policy noeviction" in fix
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # The README's Redis section moved to docs/how-to/redis.md.
    for doc in ("SECURITY.md", "docs/how-to/redis.md"):
        text = (root / doc).read_text()
        assert "maxmemory-policy noeviction" in text, doc
        assert "allkeys-lru (not noeviction)" not in text, doc
    # The docs and the log line say the same of a full Redis.
    for doc in ("SECURITY.md", "docs/how-to/redis.md"):
        text = " ".join((root / doc).read_text().split())
        assert "lookups go on unshared" in text, doc
        assert "revocations are still written and read" in text, doc
