# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 5 (part): ``redis+sentinel://`` against a real primary, a
replica and a Sentinel started here, through a failover.

Waits are real (Sentinel notices a dead primary after its
``down-after-milliseconds``), each polled against a generous bound.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import RedisServer, free_port, uvicorn_server
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    call,
    http,
    redis_bin,
)
from support.private import Settings, private_fleet
from support.redis_servers import wait_for

from lwa_middleware import ConfigurationError
from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


class Topology:
    """A primary, a replica of it, and one Sentinel watching them."""

    def __init__(self, binary: str) -> None:
        self.primary = RedisServer(binary)
        self.replica = RedisServer(binary)
        self.primary.start()
        self.replica.start()
        with self.replica.client() as client:
            client.replicaof("127.0.0.1", self.primary.port)
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="lwa-sentinel-")
        conf = os.path.join(self._dir.name, "sentinel.conf")
        with open(conf, "w") as handle:
            handle.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                f"sentinel monitor svc 127.0.0.1 {self.primary.port} 1\n"
                "sentinel down-after-milliseconds svc 800\n"
                "sentinel failover-timeout svc 4000\n"
            )
        self._proc = subprocess.Popen([binary, conf, "--sentinel"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.primary_port() == self.primary.port, 15)
        wait_for(self._replica_known, 15)

    def sentinel(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def primary_port(self) -> int | None:
        try:
            with self.sentinel() as client:
                found = client.sentinel_get_master_addr_by_name("svc")
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def _replica_known(self) -> bool:
        try:
            with self.sentinel() as client:
                return bool(client.sentinel_slaves("svc"))
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/svc/0"

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=10)
        self.primary.close()
        self.replica.close()
        self._dir.cleanup()


@pytest.fixture
def topology(redis_bin: str) -> Iterator[Topology]:
    found = Topology(redis_bin)
    yield found
    found.close()


def test_a_sentinel_url_is_validated() -> None:
    for bad in ("redis+sentinel://127.0.0.1:26379", "redis+sentinel://127.0.0.1/svc",
                "redis+sentinel://:pw@h:1/svc/x"):
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_options(client_id="amzn1.application-oa2-client.x", redis_url=bad)
        assert "pw" not in str(raised.value).replace("password", "")
    Settings.from_options(client_id="amzn1.application-oa2-client.x",
                          redis_url="redis+sentinel://:pw@h1:26379,h2:26380/svc/2")


def test_sharing_and_pushes_survive_a_sentinel_failover(
    make_asgi: Any, lwa_emulator: LWAEmulator, topology: Topology, http: httpx2.Client
) -> None:
    a = make_asgi(redis_url=topology.url, redis_timeout=SLACK, cache_key_secret=b"k" * 32)
    b = make_asgi(redis_url=topology.url, redis_timeout=SLACK, cache_key_secret=b"k" * 32)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua, uvicorn_server(b) as ub:
        assert call(http, ua, "/me", token).status_code == 200
        assert call(http, ub, "/me", token).status_code == 200
        assert b.stats.shared_hits == 1  # through the Sentinel's primary
        assert lwa_emulator.calls["tokeninfo"] == 1

        topology.primary.stop()  # the primary dies
        wait_for(lambda: topology.primary_port() == topology.replica.port, 30)
        # Requests never failed meanwhile; sharing resumes on the new primary.
        resumed = False
        deadline = time.monotonic() + 20
        while not resumed and time.monotonic() < deadline:
            fresh = lwa_emulator.issue_token()
            assert call(http, ua, "/me", fresh).status_code == 200
            shared = b.stats.shared_hits
            assert call(http, ub, "/me", fresh).status_code == 200
            resumed = b.stats.shared_hits == shared + 1
            time.sleep(0.3)
        assert resumed, "sharing did not resume after the failover"
        with topology.replica.client() as client:
            assert client.dbsize() > 0  # the promoted replica holds the entries

        # And a revocation still reaches the other worker's memory.
        wait_for(lambda: private_fleet(b).subscribed and private_fleet(a).subscribed, 20)
        asyncio.run(a.revoke(token))
        wait_for(lambda: call(http, ub, "/me", token).status_code == 401, 2)


def test_closing_the_cache_closes_its_sentinel_connections(
    make_asgi: Any, lwa_emulator: LWAEmulator, topology: Topology, http: httpx2.Client
) -> None:
    """Lifespan shutdown closes the connections to the Sentinels too (redis-py
    leaves them to the garbage collector, a ResourceWarning much later)."""

    def ours() -> int:
        # Every client the Sentinel has, but the one asking.
        with topology.sentinel() as client:
            return len(client.client_list()) - 1

    before = ours()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        # A generous deadline: a timed-out call drops its connection, and
        # this test needs the Sentinel connections to exist until shutdown.
        mw = make_asgi(redis_url=topology.url, redis_timeout=5.0, cache_key_secret=b"k" * 32)
        with uvicorn_server(mw) as url:
            assert call(http, url, "/me", lwa_emulator.issue_token()).status_code == 200
            assert mw.stats.redis_errors == 0
            # It went through the Sentinel's primary (the connection that asked
            # the Sentinel may be closed already: the pool drops idle ones
            # each time it learns the primary).
            with topology.primary.client() as client:
                assert client.dbsize() > 0
        del mw
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [
        str(w.message) for w in caught
    ]
    wait_for(lambda: ours() == before, 5)


class _Held:
    """A stand-in connection that records being disconnected."""

    def __init__(self) -> None:
        self.dropped = 0

    def disconnect(self) -> None:
        self.dropped += 1


def test_a_new_primary_drops_only_idle_sentinel_connections() -> None:
    """redis-py calls ``disconnect(inuse_connections=False)`` on the pool when
    it learns a primary (at its first connection, and at each failover), to
    drop idle connections only. The pool's hook must pass that on: closing the
    Sentinel connections another thread is asking on (its discover_master)
    under it fails that lookup. On close (``True``) every one goes."""
    import redis.sentinel
    from support.private import _SentinelPool

    manager = redis.sentinel.Sentinel([("127.0.0.1", 1)])
    pool = _SentinelPool("lwa", manager)
    sentinel_pool = manager.sentinels[0].connection_pool
    idle, busy = _Held(), _Held()
    sentinel_pool._available_connections.append(idle)
    sentinel_pool._in_use_connections.add(busy)
    try:
        pool.disconnect(inuse_connections=False)
        assert (idle.dropped, busy.dropped) == (1, 0)
        pool.disconnect()
        assert busy.dropped == 1
    finally:
        sentinel_pool._available_connections.clear()
        sentinel_pool._in_use_connections.clear()
