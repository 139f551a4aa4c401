"""Issue 24, items 2 and 3: sharing recovers after a Redis Cluster failover,
and after a Sentinel failover.

A 3-master + 3-replica Cluster (``cluster-node-timeout`` 1 s, so a replica
is promoted within a few seconds), four WSGI middlewares standing for four
workers, the LWA emulator. One master is killed under traffic; once its
replica is promoted, a new token must again cost one LWA lookup for the
whole fleet (the lease waits included: their client used to keep the dead
node in its slot map for good), and no request may hang. The figures
(promotion time, p99, time to normal) are the fleet benchmark's; the bounds
here are generous for a loaded 2-core machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.callers import WsgiCaller
from support.private import BACKOFF_MAX, private_sync_shared
from support.redis_servers import LocalCluster, SentinelTopology, redis_binary, wait_for

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]

TIMEOUT = 2.0
SECRET = "s" * 32


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    made = LocalCluster(binary, replicas=1, node_timeout_ms=1000)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sentinel() -> Iterator[SentinelTopology]:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    made = SentinelTopology(binary, replicas=1, sentinels=3)
    try:
        yield made
    finally:
        made.close()


def burst(workers: list[Any], lwa: LWAEmulator) -> tuple[int, float, list[int]]:
    """One new token asked by every worker at once: ``(tokeninfo calls, slowest
    answer in seconds, statuses)``."""
    token = lwa.issue_token()
    before = lwa.calls["tokeninfo"]

    def ask(mw: Any) -> tuple[int, float]:
        started = time.monotonic()
        code = WsgiCaller(mw).get("/me", token).status
        return code, time.monotonic() - started

    with ThreadPoolExecutor(len(workers)) as pool:
        results = list(pool.map(ask, workers))
    return (
        lwa.calls["tokeninfo"] - before,
        max(t for _, t in results),
        [c for c, _ in results],
    )


def test_sharing_comes_back_after_a_cluster_failover(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, cluster: LocalCluster
) -> None:
    def kill() -> Callable[[], bool]:
        cluster.masters()[0].stop()
        return lambda: len(cluster.masters()) == 3 and cluster.healthy()

    through_failover(make_wsgi, lwa_emulator, cluster.url, kill)


def test_sharing_comes_back_after_a_sentinel_failover(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, sentinel: SentinelTopology
) -> None:
    def kill() -> Callable[[], bool]:
        old = sentinel.primary.port
        sentinel.primary.stop()
        return lambda: sentinel.primary_port() not in (None, old)

    through_failover(make_wsgi, lwa_emulator, sentinel.url, kill)


def through_failover(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, url: str,
    kill: Callable[[], Callable[[], bool]],
) -> None:
    """Four workers on ``url``; ``kill()`` a primary (it returns whether a
    replica was promoted yet) under traffic; then sharing must come back."""
    options = {
        "redis_url": url, "redis_timeout": 0.3, "cache_key_secret": SECRET,
        "timeout": TIMEOUT,
    }
    workers = [make_wsgi(**options) for _ in range(4)]
    # Healthy: one lookup per new token for the fleet (a few, so every worker
    # has waited on a lease once and holds its wait client).
    for _ in range(6):
        calls, _, statuses = burst(workers, lwa_emulator)
        assert statuses == [200] * 4
    assert calls == 1
    promoted_yet = kill()
    started = time.monotonic()
    slowest = 0.0
    # Under traffic until a replica took over.
    while not promoted_yet():
        assert time.monotonic() - started < 60, "no replica was promoted"
        _, took, statuses = burst(workers, lwa_emulator)
        assert statuses == [200] * 4  # answered: Redis failing is a miss
        slowest = max(slowest, took)
    promoted = time.monotonic() - started
    # Back to one lookup per new token, for several tokens in a row (over
    # every master: each token lands in a slot of its own).
    streak = 0

    def shared_again() -> bool:
        nonlocal streak, slowest
        calls, took, statuses = burst(workers, lwa_emulator)
        assert statuses == [200] * 4
        slowest = max(slowest, took)
        streak = streak + 1 if calls == 1 else 0
        return streak >= 8

    recovered = time.monotonic()
    wait_for(shared_again, 30, poll=0.1)
    print(f"promoted after {promoted:.1f} s; one lookup a token again "
          f"{time.monotonic() - recovered:.1f} s later; slowest answer {slowest:.2f} s")
    assert slowest < TIMEOUT + 3.0  # never a hang (generous: a loaded machine)


# -- item 6: start-up on a Cluster with a generated secret --------------------


def test_a_fresh_fleet_on_a_cluster_shares_from_its_first_burst(
    lwa_emulator: LWAEmulator, tmp_path: Any
) -> None:
    """Four uvicorn workers started together on a fresh Cluster, no
    ``cache_key_secret``: each new token, sent to all four at once, costs one
    LWA lookup for the fleet from the very first burst."""
    import httpx2
    from support.redis_servers import Workers

    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    cluster = LocalCluster(binary)
    workers = Workers(str(tmp_path), 4, {
        "W_CLIENT_ID": lwa_emulator.client_id, "W_API": lwa_emulator.base_url,
        "W_REDIS": cluster.url, "W_REDIS_TIMEOUT": "0.05",
    })
    clients = [httpx2.Client(timeout=30, trust_env=False) for _ in workers.urls]
    try:
        workers.wait_ready(60)
        costs = []
        for _ in range(5):
            token = lwa_emulator.issue_token()
            before = lwa_emulator.calls["tokeninfo"]

            def ask(pair: tuple[httpx2.Client, str], token: str = token) -> int:
                client, url = pair
                return client.get(url + "/r/me",
                                  headers={"Authorization": f"Bearer {token}"}).status_code

            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(ask, zip(clients, workers.urls, strict=True))) == [200] * 4
            costs.append(lwa_emulator.calls["tokeninfo"] - before)
        stats = [client.get(url + "/stats").json()
                 for client, url in zip(clients, workers.urls, strict=True)]
        print("tokeninfo calls per token, first bursts:", costs)
        # One each, whatever the load: under a load average of 10 to 20 a
        # worker's first round trips (a connect, the command table, a script
        # load, the secret) outran the reply deadline, and its breaker then
        # skipped Redis: [2, 1, 1, 1, 1] to [4, 4, 4, 4, 4]. Also run with
        # a few busy loops beside it.
        assert costs == [1] * len(costs), stats
        assert [s["redis_errors"] for s in stats] == [0] * len(stats), stats
    finally:
        for client in clients:
            client.close()
        workers.close()
        cluster.close()


# -- item 2: revoke() during a Cluster failover ------------------------------


def rev_slot(mw: Any, token: str) -> int:
    """The Cluster slot of ``token``'s revocation key (keyed by the secret)."""
    from redis.crc import key_slot
    from support.private import token_key

    shared = private_sync_shared(mw)
    return int(key_slot(token_key("rev", shared._hex(shared._secret, token)).encode()))


def _retry_then_refused_everywhere(
    revoker: Any, raised: list[str], tokens: list[str], workers: list[Any]
) -> None:
    """As SECURITY.md says, a revoke() that raised is retried (until it lands:
    the revoker's client may still be learning the new primary or slot map
    just after the promotion); then every worker, a fresh one included,
    refuses every token revoked during the failover."""
    for token in raised:
        wait_for(lambda token=token: _revoked(revoker, token), 20, poll=0.5)
    wait_for(
        lambda: all(WsgiCaller(mw).get("/me", t).status == 401 for mw in workers for t in tokens),
        30,
        poll=0.2,
    )


def _revoked(revoker: Any, token: str) -> bool:
    """Whether ``revoker.revoke(token)`` landed this time."""
    from lwa_middleware import SharedCacheError

    try:
        revoker.revoke(token)
    except SharedCacheError:
        return False
    return True


@pytest.fixture
def partial_cluster() -> Iterator[LocalCluster]:
    """As ``cluster``, with ``cluster-require-full-coverage no``: under the
    default (yes) every node answers CLUSTERDOWN to every slot between the
    dead master's FAIL and its replica's promotion, so then every revoke()
    raises, whatever its slot (Redis's choice, not the library's)."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    made = LocalCluster(binary, replicas=1, node_timeout_ms=1000,
                        extra=("--cluster-require-full-coverage", "no"))
    try:
        yield made
    finally:
        made.close()


def test_revoke_during_a_cluster_failover_raises_only_for_the_dead_slots(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, partial_cluster: LocalCluster
) -> None:
    """One master killed: ``revoke()`` raises only for tokens whose slot sat on
    it, before its replica took over (it raised for every token once one had
    failed: the revoking process's retry of that one failed the others), and
    every revocation made during the failover is refused afterwards by every
    worker and by a new one."""
    from lwa_middleware import SharedCacheError

    cluster = partial_cluster

    options = {
        "redis_url": cluster.url, "redis_timeout": 0.3, "cache_key_secret": SECRET,
        "timeout": TIMEOUT,
    }
    workers = [make_wsgi(**options) for _ in range(4)]
    # A worker revokes (an admin route, say): it met Redis before the kill.
    # A process whose first round trip falls in the failover also reads the
    # data set's marker, whose slot may be the dead one (not covered here).
    revoker = workers[0]
    probe = cluster.client()
    try:
        tokens = [lwa_emulator.issue_token() for _ in range(16)]
        for token in tokens:
            assert [WsgiCaller(mw).get("/me", token).status for mw in workers] == [200] * 4
        victim = cluster.masters()[0]
        owner = {t: probe.nodes_manager.get_node_from_slot(rev_slot(revoker, t)).port
                 for t in tokens}
    finally:
        probe.close()
    dead = [t for t in tokens if owner[t] == victim.port]
    alive = [t for t in tokens if owner[t] != victim.port]
    assert dead
    assert alive
    # A token of the dead master first, so its failure precedes the others.
    order = [dead[0], *[t for pair in zip(alive, dead[1:] + alive, strict=False)
                        for t in pair]]
    order = list(dict.fromkeys(order + tokens))
    victim.stop()
    started = time.monotonic()
    raised: list[str] = []
    before_promotion: list[str] = []  # revoked while the master was dead
    # The revoker's breaker may still be in a pause it drew before the
    # promotion (at most BACKOFF_MAX, plus its timeout), so a raise in that
    # window after the promotion is allowed; one later is a fault.
    grace = BACKOFF_MAX + 2.0
    promoted_at: float | None = None
    late: list[str] = []  # raised past the grace after the promotion
    for token in order:
        if promoted_at is None and len(cluster.masters()) == 3 and cluster.healthy():
            promoted_at = time.monotonic()
        try:
            revoker.revoke(token)
        except SharedCacheError:
            raised.append(token)
            if promoted_at is not None and time.monotonic() - promoted_at > grace:
                late.append(token)
        if promoted_at is None:
            before_promotion.append(token)
        burst(workers, lwa_emulator)  # traffic meanwhile
    wait_for(lambda: len(cluster.masters()) == 3 and cluster.healthy(), 60)
    print(f"promoted within {time.monotonic() - started:.1f} s; raised for "
          f"{len(raised)} tokens, {len(before_promotion)} revoked before the promotion")
    assert [t for t in raised if t in alive] == []  # only the dead master's slots
    assert late == []
    assert any(t in alive for t in before_promotion[1:])  # the case was exercised
    _retry_then_refused_everywhere(revoker, raised, tokens, [*workers, make_wsgi(**options)])


# -- item 3: revoke() during a Sentinel failover ------------------------------


def test_revoke_during_a_sentinel_failover_raises_only_while_no_primary(
    make_wsgi: Callable[..., Any], lwa_emulator: LWAEmulator, sentinel: SentinelTopology
) -> None:
    """The primary killed: ``revoke()`` may raise while no primary is known,
    never once the Sentinels promoted the replica, and every revocation made
    during the failover is refused afterwards by every worker and a new one.
    (This held on the code before issue 24's second pass too: a guard, not
    a fix; measured: 3 of 12 raised, all before the promotion.)"""
    from lwa_middleware import SharedCacheError

    options = {
        "redis_url": sentinel.url, "redis_timeout": 0.3, "cache_key_secret": SECRET,
        "timeout": TIMEOUT,
    }
    workers = [make_wsgi(**options) for _ in range(4)]
    revoker = workers[0]
    tokens = [lwa_emulator.issue_token() for _ in range(12)]
    for token in tokens:
        assert [WsgiCaller(mw).get("/me", token).status for mw in workers] == [200] * 4
    old = sentinel.primary.port
    sentinel.primary.stop()
    raised_after_promotion: list[str] = []  # past the breaker's last pause
    raised: list[str] = []
    grace = BACKOFF_MAX + 2.0  # see the Cluster test above
    promoted_at: float | None = None
    for token in tokens:
        if promoted_at is None and sentinel.primary_port() not in (None, old):
            promoted_at = time.monotonic()
        try:
            revoker.revoke(token)
        except SharedCacheError:
            raised.append(token)
            if promoted_at is not None and time.monotonic() - promoted_at > grace:
                raised_after_promotion.append(token)
        burst(workers, lwa_emulator)  # traffic meanwhile
        time.sleep(0.2)
    wait_for(lambda: sentinel.primary_port() not in (None, old), 60)
    print(f"raised for {len(raised)} of {len(tokens)}")
    assert raised_after_promotion == []
    _retry_then_refused_everywhere(revoker, raised, tokens, [*workers, make_wsgi(**options)])
