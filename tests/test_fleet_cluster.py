# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 5: ``redis+cluster://`` against a real 3-master Redis
Cluster started here (``--cluster-enabled yes``, ``redis-cli --cluster
create``), through redis-py's cluster clients, blocking and asyncio.

Every key of a token, and its bucket's marker and fencing counter, carry one
hash tag, so each script touches one slot: no MOVED or CROSSSLOT, and the keys
spread over every node.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from redis.crc import key_slot
from shared_cache_support import uvicorn_server, wsgi_server
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    call,
    http,
    redis_bin,
    share_then_revoke,
)
from support.private import Settings, private_async_shared, private_fleet, private_sync_shared
from support.redis_servers import LocalCluster, wait_for

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.shared_cache import ACL_RULES, CLUSTER_ACL_RULES
from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

CLIENT = "amzn1.application-oa2-client.cluster"


@pytest.fixture(scope="module")
def _module_cluster(redis_bin: str) -> Iterator[LocalCluster]:
    cluster = LocalCluster(redis_bin, masters=3)
    yield cluster
    cluster.close()


@pytest.fixture
def cluster(_module_cluster: LocalCluster) -> LocalCluster:
    """The module's cluster, every node empty."""
    for node in _module_cluster.nodes:
        with node.client() as client:
            client.flushall()
    return _module_cluster


def node_keys(cluster: LocalCluster) -> list[set[bytes]]:
    """The keys each node holds."""
    found = []
    for node in cluster.nodes:
        with node.client() as client:
            found.append(set(client.scan_iter(count=1000)))
    return found


def kind_keys(cluster: LocalCluster, kind: str) -> set[bytes]:
    keys: set[bytes] = set()
    for held in node_keys(cluster):
        keys |= {k for k in held if k.split(b"}:")[-1].startswith(kind.encode() + b":")}
    return keys


def no_faults(*middlewares: Any) -> None:
    for mw in middlewares:
        assert mw.stats.redis_errors == 0, mw.stats.snapshot()
        assert mw.stats.redis_faults == 0, mw.stats.snapshot()
        for shared in (private_async_shared(mw), private_sync_shared(mw)):
            if shared is not None:
                assert shared.faults == {}
                assert shared.cluster


def test_a_cluster_url_is_validated() -> None:
    for bad in ("redis+cluster://127.0.0.1", "redis+cluster://:pw@h:1/3",
                "rediss+cluster://:pw@h:x", "redis+cluster://:pw@h:1?socket_timeout=9"):
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_options(client_id=CLIENT, redis_url=bad)
        assert "pw" not in str(raised.value).replace("password", "")
    for good in ("redis+cluster://:pw@h1:7000,h2:7001", "rediss+cluster://u:pw@h:7000/0"
                 "?ssl_ca_certs=/tmp/ca.pem", "redis+cluster://[::1]:7000/"):
        Settings.from_options(client_id=CLIENT, redis_url=good)


def test_tokens_are_shared_over_a_cluster_and_revocations_reach_every_worker(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster,
    http: httpx2.Client,
) -> None:
    """40 tokens resolved by an ASGI worker are served by a WSGI one from the
    cluster (LWA once a token); their keys are on every node, each token's in
    one slot; a revocation on one reaches the other at once."""
    a: LWAMiddleware = make_asgi(redis_url=cluster.url, redis_timeout=SLACK)
    w: LWAWSGIMiddleware = make_wsgi(redis_url=cluster.url, redis_timeout=SLACK)
    tokens = [lwa_emulator.issue_token() for _ in range(40)]
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        for token in tokens:
            assert call(http, ua, "/me", token).status_code == 200
        for token in tokens:
            assert call(http, uw, "/me", token).status_code == 200
        assert lwa_emulator.calls == {"tokeninfo": 40, "profile": 40}
        assert w.stats.shared_hits == 40

        # Every node holds identities; each token's keys share one slot.
        held = node_keys(cluster)
        ids = [{k for k in keys if b"}:id:" in k} for keys in held]
        assert all(ids), [len(i) for i in ids]
        assert sum(map(len, ids)) == 40
        for keys in held:
            for key in keys:
                if b"{" in key:
                    tag = key.split(b"}")[0] + b"}"
                    assert key_slot(key) == key_slot(tag + b":epoch")
        assert any(b"lwa:v1:secret" in keys for keys in held)  # a generated secret

        # A revocation on the WSGI worker is pushed to the ASGI one.
        wait_for(lambda: private_fleet(a).subscribed and private_fleet(w).subscribed, 20)
        w.revoke(tokens[0])
        wait_for(lambda: call(http, ua, "/me", tokens[0]).status_code == 401, 5)
        assert a.stats.fleet_pushed >= 1
        assert len(kind_keys(cluster, "rev")) == 1
        no_faults(a, w)
    w.close()


def test_one_lookup_between_workers_over_a_cluster(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster,
    http: httpx2.Client,
) -> None:
    """The lease (and its fencing counter) in the token's slot, the waiter
    subscribed to it through the asyncio cluster client's pub/sub: one LWA
    lookup for two workers."""
    a = make_asgi(redis_url=cluster.url, redis_timeout=SLACK)
    w = make_wsgi(redis_url=cluster.url, redis_timeout=SLACK)
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        assert call(http, ua, "/me", lwa_emulator.issue_token()).status_code == 200  # warm
        lwa_emulator.set_latency(0.5)
        token = lwa_emulator.issue_token()
        before = lwa_emulator.calls["tokeninfo"]
        holder = threading.Thread(target=call, args=(http, uw, "/me", token))
        holder.start()
        wait_for(lambda: bool(kind_keys(cluster, "lease")) or not holder.is_alive(), 10)
        assert call(http, ua, "/me", token).status_code == 200
        holder.join(timeout=10)
        assert lwa_emulator.calls["tokeninfo"] == before + 1
        shared = private_async_shared(a)
        assert shared is not None
        assert shared.waits == 1
        assert a.stats.shared_hits == 1
        no_faults(a, w)
    w.close()


def test_revocations_are_published_again_after_the_cluster_lost_its_data(
    make_asgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster, http: httpx2.Client,
) -> None:
    """Every node flushed: the next lookup meets a bucket without its marker,
    the data set's marker (on whichever node holds it) is gone too, and the
    worker writes its revocation again."""
    a = make_asgi(redis_url=cluster.url, redis_timeout=SLACK, cache_key_secret=b"c" * 32)
    token = lwa_emulator.issue_token()
    with uvicorn_server(a) as ua:
        assert call(http, ua, "/me", token).status_code == 200
        asyncio.run(a.revoke(token))
        assert len(kind_keys(cluster, "rev")) == 1
        for node in cluster.nodes:
            with node.client() as client:
                client.flushall()
        assert call(http, ua, "/me", lwa_emulator.issue_token()).status_code == 200
        assert len(kind_keys(cluster, "rev")) == 1
        shared = private_async_shared(a)
        assert shared is not None
        assert shared.restores == 1
        assert shared.republished >= 1
        no_faults(a)
    # Another worker, never told, refuses the token from the cluster.
    b = make_asgi(redis_url=cluster.url, redis_timeout=SLACK, cache_key_secret=b"c" * 32)
    with uvicorn_server(b) as ub:
        assert call(http, ub, "/me", token).status_code == 401


def test_a_plain_url_to_a_cluster_node_is_named_with_its_fix(
    make_wsgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis:// to one node: redirected keys are a MOVED fault naming
    redis+cluster://, and requests still succeed through LWA."""
    w = make_wsgi(redis_url=f"redis://127.0.0.1:{cluster.nodes[0].port}/0",
                  redis_timeout=SLACK)
    with wsgi_server(w) as uw:
        for _ in range(12):  # some land on the other nodes' slots
            assert call(http, uw, "/me", lwa_emulator.issue_token()).status_code == 200
            private_sync_shared(w)._skip_until = 0.0  # probe again at once
    assert w.stats.redis_faults >= 1
    assert "redis+cluster://" in caplog.text
    w.close()


def test_the_acl_user_on_a_cluster_needs_the_documented_rules_only(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster,
    http: httpx2.Client,
) -> None:
    rules = [*ACL_RULES.split(), *CLUSTER_ACL_RULES.split()]
    for node in cluster.nodes:
        with node.client() as admin:
            admin.execute_command("ACL", "SETUSER", "lwa", "reset", "on", ">pw-cluster", *rules)
    url = cluster.url.replace("://", "://lwa:pw-cluster@", 1)
    a = make_asgi(redis_url=url, redis_timeout=SLACK)
    w = make_wsgi(redis_url=url, redis_timeout=SLACK)
    share_then_revoke(http, lwa_emulator, a, w)
    no_faults(a, w)


def test_the_periodic_reassertion_lets_pushes_in_between_its_round_trips(
    make_wsgi: Any, lwa_emulator: LWAEmulator, cluster: LocalCluster
) -> None:
    """On a Cluster a re-assertion is one round trip per bucket: for a process
    that made hundreds of revocations, the subscriber must not sit on pushes
    for the whole pass (hundreds of ms), so pending pushes are drained after
    every round trip."""
    from support.private import bucket, close_client

    w: LWAWSGIMiddleware = make_wsgi(redis_url=cluster.url, redis_timeout=SLACK)
    for _ in range(120):
        w.revoke(lwa_emulator.issue_token())
    fleet = private_fleet(w)
    buckets = {bucket(digest) for digest in fleet.memory.items}
    assert len(buckets) > 50
    drains: list[int] = []
    client = fleet._client()
    try:
        fleet._reassert(client, announce=False, between=lambda: drains.append(1))
    finally:
        close_client(client)
    # One drain per bucket written (and per announce batch, none here).
    assert len(drains) >= len(buckets), (len(drains), len(buckets))
    w.close()
