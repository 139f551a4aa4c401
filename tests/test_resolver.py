"""The resolver's order of business, against the LWA emulator, on a FakeClock:
a hit, a miss, a rejection remembered then forgotten, cache expiry, stale-if-
error, ``revalidate()``, revocation, the breaker, and single-flight counts.
Each scenario runs on both drivers: blocking (``resolve_sync``) and async
(``resolve_async``, on asyncio). No test waits for time to pass: the clock
is advanced."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.clock import FakeClock
from support.private import (
    BreakerOpen,
    Entry,
    Policy,
    Resolver,
    Settings,
    private_task_flights,
    private_thread_flights,
)

from lwa_middleware import InvalidToken, UpstreamUnavailable, revalidate
from lwa_middleware.testing import Fault, LWAEmulator

REQUIRED = Policy.parse("required")
UID = Policy.parse(["profile:user_id"])


class Driven:
    """A resolver and a ``resolve(token, policy)`` through one of its drivers."""

    def __init__(self, resolver: Resolver, kind: str) -> None:
        self.resolver = resolver
        self.kind = kind
        self.runner = asyncio.Runner() if kind == "async" else None

    @property
    def stats(self) -> Any:
        return self.resolver.stats

    def resolve(self, token: str, policy: Policy = REQUIRED) -> Entry:
        if self.runner is None:
            return self.resolver.resolve_sync(token, policy)
        return self.runner.run(self.resolver.resolve_async(token, policy))

    def revoke(self, token: str) -> None:
        if self.runner is None:
            self.resolver.revoke(token)
        else:
            self.runner.run(self.resolver.arevoke(token))

    def close(self) -> None:
        if self.runner is None:
            self.resolver.close()
        else:
            self.runner.run(self.resolver.aclose())
            self.runner.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sync", "async"])
def make(
    request: pytest.FixtureRequest, lwa_emulator: LWAEmulator, clock: FakeClock
) -> Iterator[Callable[..., Driven]]:
    made: list[Driven] = []

    def build(**options: Any) -> Driven:
        options.setdefault("client_id", lwa_emulator.client_id)
        options.setdefault("api_base_url", lwa_emulator.base_url)
        driven = Driven(Resolver(Settings.from_options(clock=clock, **options)), request.param)
        made.append(driven)
        return driven

    yield build
    for driven in made:
        driven.close()


def test_miss_then_hit(make: Callable[..., Driven], lwa_emulator: LWAEmulator) -> None:
    r = make()
    token = lwa_emulator.issue_token(name="Ada")
    first = r.resolve(token)
    assert first.identity.name == "Ada"
    assert (r.stats.misses, r.stats.lookups, r.stats.hits) == (1, 1, 0)
    assert r.resolve(token) is first
    assert r.stats.hits == 1
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


def test_cache_ttl_expires_on_the_clock(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(cache_ttl=60)
    token = lwa_emulator.issue_token()
    r.resolve(token)
    clock.advance(59)
    r.resolve(token)
    assert lwa_emulator.calls["tokeninfo"] == 1
    clock.advance(2)
    r.resolve(token)
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_never_past_the_token_expiry(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(cache_ttl=3600)
    token = lwa_emulator.issue_token(expires_in=30)
    entry = r.resolve(token)
    assert entry.fresh_until <= clock() + 30
    clock.advance(31)
    # The emulator's own clock did not move: it still says yes, so LWA was asked.
    r.resolve(token)
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_a_rejection_is_remembered_then_expires(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(negative_cache_ttl=30)
    bad = "Atza|" + "r" * 100
    for _ in range(3):
        with pytest.raises(InvalidToken):
            r.resolve(bad)
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert r.stats.rejected == 1
    assert r.stats.rejections_cached == 2
    clock.advance(31)
    with pytest.raises(InvalidToken):
        r.resolve(bad)
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_transient_failures_are_never_remembered(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator
) -> None:
    r = make()
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR)
    with pytest.raises(UpstreamUnavailable) as caught:
        r.resolve(token)
    assert caught.value.retry_after is not None
    lwa_emulator.clear_faults()
    assert r.resolve(token).identity.user_id == lwa_emulator.customer_for(token).user_id
    assert r.stats.upstream_errors == 1


def test_stale_if_error_serves_a_live_token_through_an_outage(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(cache_ttl=60, stale_if_error=True)
    token = lwa_emulator.issue_token(expires_in=600)
    entry = r.resolve(token)
    clock.advance(61)  # stale, the token still live
    lwa_emulator.inject(Fault.DOWN)
    assert r.resolve(token) is entry
    assert r.stats.stale_served == 1
    # Never on a revalidate() route, and never past the token's expiry.
    with pytest.raises(UpstreamUnavailable):
        r.resolve(token, revalidate())
    clock.advance(600)
    with pytest.raises(UpstreamUnavailable):
        r.resolve(token)
    assert r.stats.stale_served == 1


def test_without_stale_if_error_an_outage_is_a_503(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(cache_ttl=60)
    token = lwa_emulator.issue_token()
    r.resolve(token)
    clock.advance(61)
    lwa_emulator.inject(Fault.DOWN)
    with pytest.raises(UpstreamUnavailable):
        r.resolve(token)
    assert r.stats.stale_served == 0


def test_a_rejection_evicts_what_stale_if_error_would_serve(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(cache_ttl=10, stale_if_error=True, negative_cache_ttl=30)
    token = lwa_emulator.issue_token()
    r.resolve(token)
    lwa_emulator.revoke(token)
    with pytest.raises(InvalidToken):
        r.resolve(token, revalidate())  # asks LWA, which says no
    clock.advance(11)
    lwa_emulator.inject(Fault.DOWN)
    with pytest.raises(InvalidToken):  # remembered, not served stale
        r.resolve(token)
    clock.advance(30)  # the rejection forgotten: still no stale copy to serve
    with pytest.raises(UpstreamUnavailable):
        r.resolve(token)
    assert r.stats.stale_served == 0


def test_revalidate_always_asks_lwa(make: Callable[..., Driven], lwa_emulator: LWAEmulator) -> None:
    r = make()
    token = lwa_emulator.issue_token()
    r.resolve(token)
    for expected in (2, 3):
        r.resolve(token, revalidate())
        assert lwa_emulator.calls["tokeninfo"] == expected
    r.resolve(token)  # the plain route still hits the refreshed entry
    assert lwa_emulator.calls["tokeninfo"] == 3


def test_a_tokeninfo_only_entry_is_upgraded_for_a_profile_route(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator
) -> None:
    r = make(user_id_from_tokeninfo=True)
    token = lwa_emulator.issue_token()
    thin = r.resolve(token, UID)
    assert not thin.has_profile
    assert lwa_emulator.calls["profile"] == 0
    full = r.resolve(token, REQUIRED)
    assert full.has_profile
    assert lwa_emulator.calls["profile"] == 1
    assert r.resolve(token, UID) is full


def test_revoke_refuses_until_the_token_would_expire(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make()
    token = lwa_emulator.issue_token(expires_in=120)
    r.resolve(token)
    r.revoke(token)
    with pytest.raises(InvalidToken, match="revoked"):
        r.resolve(token)
    assert lwa_emulator.calls["tokeninfo"] == 1
    clock.advance(125)  # past the token's own expiry: the revocation is dropped
    r.resolve(token)
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_the_breaker_opens_then_probes_after_its_cooldown(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator, clock: FakeClock
) -> None:
    r = make(breaker_threshold=2, breaker_cooldown=5)
    lwa_emulator.inject(Fault.SERVER_ERROR)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            r.resolve(lwa_emulator.issue_token())
    calls = lwa_emulator.calls["tokeninfo"]
    with pytest.raises(BreakerOpen):
        r.resolve(lwa_emulator.issue_token())
    assert lwa_emulator.calls["tokeninfo"] == calls  # not asked while open
    assert r.stats.breaker_opened == 1
    lwa_emulator.clear_faults()
    clock.advance(5.1)
    assert r.resolve(lwa_emulator.issue_token()).identity is not None


def test_concurrent_lookups_share_one(
    make: Callable[..., Driven], lwa_emulator: LWAEmulator
) -> None:
    r = make()
    token = lwa_emulator.issue_token()
    # Latency only widens the window in which requests overlap; the counts
    # hold whatever the overlap: late arrivals are cache hits instead.
    lwa_emulator.set_latency(0.3)
    n = 12
    if r.kind == "sync":
        barrier = threading.Barrier(n)

        def one() -> Entry:
            barrier.wait(30)
            return r.resolve(token)

        with ThreadPoolExecutor(n) as pool:
            entries = list(pool.map(lambda _: one(), range(n)))
    else:
        resolver = r.resolver

        async def burst() -> list[Entry]:
            return list(
                await asyncio.gather(*(resolver.resolve_async(token, REQUIRED) for _ in range(n)))
            )

        assert r.runner is not None
        entries = r.runner.run(burst())
        assert r.stats.coalesced == n - 1  # one loop, all at once: every other task joined
    assert len({id(e) for e in entries}) == 1
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert r.stats.coalesced + r.stats.hits == n - 1
    assert len(private_thread_flights(r)) == len(private_task_flights(r)) == 0
