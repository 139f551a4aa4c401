"""The circuit breaker, alone and inside the middlewares.

Time is a :class:`~support.clock.FakeClock`: cooldowns pass when a test says
so, never by sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient
from support.clock import FakeClock
from support.private import CircuitBreaker, Throttle
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    assert breaker.check() is None
    assert breaker.failure() is False
    assert breaker.failure() is False
    assert breaker.check() is None
    assert not breaker.is_open
    assert breaker.failure() is True  # this one opened it
    assert breaker.is_open
    assert breaker.check() == 30
    clock.advance(12.5)
    assert breaker.check() == 18
    assert breaker.failure() is False  # a late failure restarts the cooldown, no new opening
    assert breaker.check() == 30


def test_refusing_only_looks_and_never_claims_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    assert breaker.refusing() is None
    breaker.failure()
    assert breaker.refusing() == 30
    clock.advance(29.5)
    assert breaker.refusing() == 1
    clock.advance(1)
    # A probe is due: refusing() says "ask check()", however often it is asked...
    assert breaker.refusing() is None
    assert breaker.refusing() is None
    # ...and the probe is still there for the first lookup that holds a slot.
    assert breaker.check() is None
    assert breaker.check() == 1


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=30)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.check() is None
    breaker.failure()
    assert breaker.check() is not None


def test_probe_after_cooldown_then_close_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=0.2, clock=clock)
    breaker.failure()
    assert breaker.check() is not None
    clock.advance(0.19)
    assert breaker.check() is not None
    clock.advance(0.02)
    assert breaker.check() is None  # the probe
    assert breaker.check() is not None  # only one probe at a time
    breaker.success()
    assert not breaker.is_open
    assert breaker.check() is None
    assert breaker.check() is None


def test_failed_probe_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=5, cooldown=0.2, clock=clock)
    for _ in range(5):
        breaker.failure()
    clock.advance(0.25)
    assert breaker.check() is None
    # The probe failed: one failure is enough now, and it is no new opening.
    assert breaker.failure() is False
    assert breaker.check() is not None
    clock.advance(0.25)
    assert breaker.check() is None


def test_a_lost_probe_does_not_keep_it_open_for_ever() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=0.1, clock=clock)
    breaker.failure()
    clock.advance(0.12)
    assert breaker.check() is None  # probe that never reports back
    assert breaker.check() is not None
    clock.advance(0.05)
    assert breaker.check() is not None  # the probe may still be on its way
    clock.advance(0.1)
    assert breaker.check() is None


def test_one_probe_among_threads() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=0.1, clock=clock)
    breaker.failure()
    clock.advance(0.12)
    barrier = threading.Barrier(16)
    results: list[int | None] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=5)
        got = breaker.check()
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(results) == 16
    assert results.count(None) == 1


def _through_asgi(mw: LWAMiddleware, token: str, n: int) -> list[int]:
    with TestClient(mw) as client:
        return [
            client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code
            for _ in range(n)
        ]


def _through_wsgi(mw: LWAWSGIMiddleware, token: str, n: int) -> list[int]:
    client = Client(mw)
    return [
        client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code
        for _ in range(n)
    ]


def test_breaker_in_the_middlewares_stops_calling_lwa(
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    asgi = make_asgi(breaker_threshold=2, breaker_cooldown=30)
    assert _through_asgi(asgi, token, 4) == [503] * 4
    assert lwa_emulator.calls["tokeninfo"] == 2
    wsgi = make_wsgi(breaker_threshold=2, breaker_cooldown=30)
    assert _through_wsgi(wsgi, token, 4) == [503] * 4
    assert lwa_emulator.calls["tokeninfo"] == 4
    wsgi.close()


def test_breaker_recovers_after_cooldown(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    clock = FakeClock()
    events: list[str] = []
    mw = make_asgi(
        breaker_threshold=1,
        breaker_cooldown=0.3,
        clock=clock,
        on_event=lambda name, data: events.append(name),
    )
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(mw) as client:
        first = client.get("/me", headers=headers)
        assert first.status_code == 503
        blocked = client.get("/me", headers=headers)
        assert blocked.status_code == 503
        assert int(blocked.headers["retry-after"]) >= 1
        assert lwa_emulator.calls["tokeninfo"] == 1
        lwa_emulator.clear_faults()
        clock.advance(0.35)
        assert client.get("/me", headers=headers).status_code == 200
        assert client.get("/me", headers=headers).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 2
    assert mw.stats.breaker_opened == 1
    assert events.count("breaker_open") == 1


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, clock=clock)
    assert throttle.allow() == 0
    assert [throttle.allow() for _ in range(3)] == [None, None, None]
    clock.advance(9.9)
    assert throttle.allow() is None
    clock.advance(0.1)
    assert throttle.allow() == 4
    assert throttle.allow() is None
    clock.advance(60)
    assert throttle.allow() == 1


def test_garbage_lwa_rejects_never_counts_as_a_failure_even_when_slow(
    lwa_emulator: LWAEmulator,
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    """LWA-shaped garbage that a slow LWA rejects (400) is a success for the breaker."""
    events: list[tuple[str, Any]] = []
    mw = make_wsgi(
        breaker_threshold=1,
        negative_cache_ttl=0,
        on_event=lambda name, data: events.append((name, dict(data))),
    )
    lwa_emulator.set_latency(0.1)
    client = Client(mw)
    for i in range(5):
        garbage = "Atza|" + f"{i:04d}" * 100
        reply = client.get("/me", headers={"Authorization": f"Bearer {garbage}"})
        assert reply.status_code == 401
    assert mw.stats.rejected == 5
    assert mw.stats.upstream_errors == 0
    assert not mw.resolver.breaker.is_open
    assert [name for name, _ in events if name != "rejected"] == []
    mw.close()


def test_rejections_do_not_open_the_breaker(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    mw = make_asgi(breaker_threshold=2, negative_cache_ttl=0)
    good = lwa_emulator.issue_token()
    with TestClient(mw) as client:
        for i in range(4):
            r = client.get("/me", headers={"Authorization": f"Bearer bogus-{i}"})
            assert r.status_code == 401
        assert client.get("/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
