# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 2: a degraded mode that protects LWA.

The Redis breaker (back-off with jitter, one half-open probe) and the
classification of configuration faults are driven on a FakeClock without
Redis; the degraded cache lifetime and the faults of real servers (AUTH,
OOM, a read-only replica) against real ``redis-server`` processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import RedisServer, free_port, uvicorn_server
from support.clock import FakeClock
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    _module_redis,
    call,
    http,
    rclient,
    redis_bin,
    redis_srv,
)
from support.plans import TOKEN, calls, drive, make
from support.private import (
    BACKOFF,
    BACKOFF_MAX,
    FAULTS,
    LOG_INTERVAL,
    PROBE_WINDOW,
    READ_MISS,
    Fleet,
    IdentityCache,
    Settings,
    Stats,
    _Plans,
    classify,
    plan_get,
    set_plan_epoch,
    set_plan_jitter,
)

from lwa_middleware import ConfigurationError, LWAMiddleware
from lwa_middleware.testing import LWAEmulator

SHARED_LOGGER = "lwa_middleware.shared_cache"
DOWN = redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def fail(plans: _Plans, clock: FakeClock, error: Exception = DOWN) -> None:
    _, found = drive(plan_get(plans)(TOKEN, False), [error], clock)
    assert found is None


def probes(plans: _Plans, clock: FakeClock) -> bool:
    """Whether a lookup now asks Redis (it is answered with a miss)."""
    steps, _ = drive(plan_get(plans)(TOKEN, False), lambda call: [0, READ_MISS], clock)
    return bool(calls(steps))


# -- the breaker ---------------------------------------------------------------


def test_the_back_off_doubles_per_failed_probe_up_to_its_cap(clock: FakeClock) -> None:
    plans = make(clock)
    set_plan_jitter(plans, lambda: 1.0)  # the top of the jitter range: the full pause
    fail(plans, clock)
    assert plans.degraded
    pauses = []
    for _ in range(5):
        start = clock()
        while not probes_or_fail(plans, clock):
            clock.advance(0.25)
        pauses.append(clock() - start)
    assert pauses == [BACKOFF, 2 * BACKOFF, 4 * BACKOFF, BACKOFF_MAX, BACKOFF_MAX]
    clock.advance(BACKOFF_MAX)
    assert probes(plans, clock)  # a probe that succeeds closes the breaker
    assert not plans.degraded
    assert probes(plans, clock)


def probes_or_fail(plans: _Plans, clock: FakeClock) -> bool:
    """Let a lookup through if the breaker allows it, and fail it."""
    steps, _ = drive(plan_get(plans)(TOKEN, False), lambda call: DOWN, clock)
    return bool(calls(steps))


def test_the_jitter_draws_each_pause_in_its_upper_half(clock: FakeClock) -> None:
    plans = make(clock)
    set_plan_jitter(plans, lambda: 0.0)  # the bottom of the range
    fail(plans, clock)
    clock.advance(BACKOFF / 2 - 0.01)
    assert not probes(plans, clock)
    clock.advance(0.02)
    assert probes(plans, clock)


def test_half_open_lets_one_probe_through_and_the_rest_skip(clock: FakeClock) -> None:
    plans = make(clock)
    fail(plans, clock)
    clock.advance(BACKOFF)
    probe = plan_get(plans)(TOKEN, False)
    assert next(probe).name == "read"  # the probe is out, not yet answered
    skipped = plans.skipped
    for _ in range(3):
        assert not probes(plans, clock)  # the others still skip Redis
    assert plans.skipped == skipped + 3
    with pytest.raises(StopIteration):
        probe.send([0, READ_MISS])
    assert not plans.degraded
    assert probes(plans, clock)


def test_a_probe_that_never_reports_back_does_not_keep_redis_skipped(
    clock: FakeClock,
) -> None:
    plans = make(clock)
    fail(plans, clock)
    clock.advance(BACKOFF)
    lost = plan_get(plans)(TOKEN, False)
    next(lost)
    lost.close()  # a cancelled task: its plan is closed, not answered
    assert not probes(plans, clock)
    clock.advance(PROBE_WINDOW)
    assert probes(plans, clock)


# -- configuration faults ------------------------------------------------------


FAULT_CASES = [
    (redis.AuthenticationError("invalid username-password pair"), "auth"),
    (redis.ResponseError("NOAUTH Authentication required."), "auth"),
    (redis.exceptions.NoPermissionError("NOPERM this user has no permissions"), "noperm"),
    (redis.ResponseError("ERR unknown command 'EVALSHA', with args beginning with:"),
     "unknown_command"),
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
     "oom"),
    (redis.ReadOnlyError("You can't write against a read only replica."), "readonly"),
    (redis.ResponseError("MOVED 3999 127.0.0.1:6381"), "moved"),
    (redis.ResponseError("CROSSSLOT Keys in request don't hash to the same slot"),
     "crossslot"),
]


def _tls_error() -> Exception:
    import ssl

    try:
        try:
            raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
        except ssl.SSLError as exc:
            raise redis.ConnectionError("Error 1 connecting to 127.0.0.1:6380.") from exc
    except redis.ConnectionError as outer:
        return outer


def _cluster_init_error(cause: Exception) -> Exception:
    """What redis-py's cluster client raises when no startup node let it in:
    a RedisClusterException chained to the node's own error."""
    try:
        try:
            raise cause
        except redis.RedisError as exc:
            raise redis.exceptions.RedisClusterException(
                "Redis Cluster cannot be connected. Please provide at least one reachable "
                f"node: {exc}"
            ) from exc
    except redis.exceptions.RedisClusterException as outer:
        return outer


CLUSTER_FAULT_CASES = [
    # A wrong password (or user) or a missing ACL permission on a Cluster.
    (_cluster_init_error(redis.AuthenticationError("invalid username-password pair")), "auth"),
    (_cluster_init_error(redis.ResponseError("NOAUTH Authentication required.")), "auth"),
    (_cluster_init_error(redis.exceptions.NoPermissionError("NOPERM no permissions")), "noperm"),
]


@pytest.mark.parametrize(
    ("error", "fault"), [*FAULT_CASES, *CLUSTER_FAULT_CASES, (_tls_error(), "tls")]
)
def test_configuration_faults_are_classified(error: Exception, fault: str) -> None:
    assert classify(error) == fault


@pytest.mark.parametrize(
    "error",
    [DOWN, redis.TimeoutError("Timeout reading from socket"), redis.ResponseError("ERR x"),
     _cluster_init_error(redis.ConnectionError("Error 111 connecting to 127.0.0.1:2."))],
)
def test_an_outage_is_not_a_configuration_fault(error: Exception) -> None:
    assert classify(error) is None


def fleet_plans(clock: FakeClock) -> tuple[_Plans, Stats, list[tuple[str, dict[str, Any]]]]:
    settings = Settings.from_options(
        client_id="amzn1.application-oa2-client.plans",
        redis_url="redis://127.0.0.1:1/0",
        cache_key_secret=b"s" * 32,
        clock=clock,
    )
    stats = Stats()
    events: list[tuple[str, dict[str, Any]]] = []
    fleet = Fleet(settings, IdentityCache(maxsize=10, ttl=300, clock=clock), stats,
                  lambda name, **data: events.append((name, data)))
    fleet.start = lambda: None  # type: ignore[method-assign]  # no subscriber thread here
    plans = _Plans(settings, fleet=fleet)
    set_plan_epoch(plans, b"epoch-1")
    return plans, stats, events


def test_a_fault_is_one_log_line_naming_cause_and_fix_and_is_counted(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    plans, stats, events = fleet_plans(clock)
    wrong = redis.AuthenticationError("invalid username-password pair")
    for _ in range(3):
        fail(plans, clock, wrong)
        clock.advance(BACKOFF_MAX)
    lines = [r.getMessage() for r in caplog.records if "misconfigured" in r.getMessage()]
    assert len(lines) == 1, lines
    cause, fix = FAULTS["auth"]
    assert cause in lines[0]
    assert fix in lines[0]
    assert "[auth]" in lines[0]
    assert stats.redis_faults == 3
    assert stats.redis_errors == 3
    assert stats.redis_breaker_opened == 1
    assert ("redis_fault", {"cause": "auth"}) in events
    assert plans.faults == {"auth": 3}
    clock.advance(LOG_INTERVAL)
    fail(plans, clock, wrong)
    assert len([r for r in caplog.records if "misconfigured" in r.getMessage()]) == 2
    clock.advance(BACKOFF_MAX)
    assert probes(plans, clock)
    assert ("redis_recovered", {}) in events


def test_timeout_options_in_redis_url_are_refused() -> None:
    for query in ("socket_timeout=30", "socket_connect_timeout=5", "retry_on_timeout=yes",
                  "health_check_interval=10&db=1"):
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_options(client_id="amzn1.application-oa2-client.x",
                                  redis_url=f"redis://u:hunter2@127.0.0.1:6379/0?{query}")
        message = str(raised.value)
        assert query.split("=")[0] in message
        assert "redis_timeout" in message
        assert "hunter2" not in message
    # Others (TLS files, client name) are fine.
    Settings.from_options(client_id="amzn1.application-oa2-client.x",
                          redis_url="rediss://127.0.0.1:6380/0?ssl_ca_certs=/ca.pem")


def test_a_tls_connect_has_its_own_budget() -> None:
    from support.private import TLS_CONNECT_TIMEOUT, connect_timeout

    def settings(url: str) -> Settings:
        return Settings.from_options(client_id="amzn1.application-oa2-client.x",
                                     redis_url=url, redis_timeout=0.05)

    assert connect_timeout(settings("redis://127.0.0.1:6379/0")) == 0.05
    assert connect_timeout(settings("rediss://127.0.0.1:6380/0")) == TLS_CONNECT_TIMEOUT


# -- the degraded lifetime, against real servers -------------------------------------


@pytest.fixture
def own_redis(redis_bin: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_bin)
    server.start()
    yield server
    server.close()


def test_while_redis_is_down_copies_live_the_no_redis_lifetime(
    make_asgi: Any, lwa_emulator: LWAEmulator, http: httpx2.Client
) -> None:
    clock = FakeClock()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: refused at once
    mw: LWAMiddleware = make_asgi(redis_url=dead, clock=clock, cache_ttl=300)
    token = lwa_emulator.issue_token()
    with uvicorn_server(mw) as base:
        assert call(http, base, "/me", token).status_code == 200
        for _ in range(5):
            clock.advance(30)  # far past local_cache_ttl (5 s), within cache_ttl
            assert call(http, base, "/me", token).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 1  # not one per local_cache_ttl
    assert mw.stats.redis_breaker_opened == 1
    assert mw.stats.redis_errors >= 1


def test_a_wrong_password_is_reported_once_and_requests_go_on(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_bin: str, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    server = RedisServer(redis_bin)
    server.start()
    try:
        server.client().config_set("requirepass", "right-password")
        mw = make_asgi(redis_url=f"redis://:wrong-password@127.0.0.1:{server.port}/0")
        with uvicorn_server(mw) as base:
            for _ in range(3):
                assert call(http, base, "/me", lwa_emulator.issue_token()).status_code == 200
        lines = [r.getMessage() for r in caplog.records if "misconfigured" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "[auth]" in lines[0]
        assert "wrong-password" not in lines[0]
        assert mw.stats.redis_faults >= 1
    finally:
        server.close()


def test_an_out_of_memory_redis_is_reported_as_such(
    make_asgi: Any, lwa_emulator: LWAEmulator, own_redis: RedisServer, http: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    with own_redis.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        mw = make_asgi(redis_url=own_redis.url, redis_timeout=SLACK)
        with uvicorn_server(mw) as base:
            assert call(http, base, "/me", lwa_emulator.issue_token()).status_code == 200
        admin.config_set("maxmemory", "0")
    assert any("[oom]" in r.getMessage() for r in caplog.records)
    assert mw.stats.redis_faults >= 1


def test_a_read_only_replica_is_reported_and_the_pool_reconnects(
    make_asgi: Any, lwa_emulator: LWAEmulator, own_redis: RedisServer, redis_bin: str,
    http: httpx2.Client, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SHARED_LOGGER)
    replica = RedisServer(redis_bin)
    replica.start()
    try:
        with replica.client() as admin:
            admin.replicaof("127.0.0.1", own_redis.port)
            clock = FakeClock()
            mw = make_asgi(redis_url=replica.url, redis_timeout=SLACK, clock=clock)
            with uvicorn_server(mw) as base:
                assert call(http, base, "/me", lwa_emulator.issue_token()).status_code == 200
                assert mw.stats.redis_reconnects == 1
                # The failover: the replica is promoted; the next probe uses it.
                admin.replicaof("NO", "ONE")
                clock.advance(BACKOFF_MAX)  # past the back-off
                token = lwa_emulator.issue_token()
                assert call(http, base, "/me", token).status_code == 200
            assert admin.dbsize() > 0  # written to, once primary
    finally:
        replica.close()
    assert any("[readonly]" in r.getMessage() for r in caplog.records)
