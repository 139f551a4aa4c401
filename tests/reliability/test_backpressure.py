"""Back-pressure: an LWA outage must shed load fast instead of piling it up.

Hundreds of requests with distinct tokens hit a dead (``DOWN``) or hanging
(``HANG``) LWA. The deadline, the in-flight cap and the circuit breaker
together must answer every one of them 503 with ``Retry-After`` within a few
seconds, let only a handful of lookups reach LWA, and let the service recover
as soon as LWA is back: the breaker's probe closes it.

The breaker reads a :class:`~support.clock.FakeClock`, held still while a
burst is in flight, so no probe falls due however slowly the machine runs the
burst; a test then steps the clock past the cooldown instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

import pytest
from support.callers import WsgiCaller
from support.clock import FakeClock
from support.private import private_sync_driver

from lwa_middleware import LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

from .conftest import Caller, assert_unavailable

#: The upstream deadline (real time: httpx enforces it). Short, since every
#: hanging lookup waits it out; BOUND stays far below what queueing would take.
TIMEOUT = 1.0
CAP = 10
THRESHOLD = 5
COOLDOWN = 0.5
#: "Finished instead of queueing": without the breaker and the cap, a hanging
#: LWA would hold these requests for TIMEOUT each, in waves of CAP.
BOUND = 10.0


def _burst_size(caller: Caller) -> int:
    # Threads are dearer than tasks: ~100 through a thread pool for WSGI.
    return 500 if caller.kind == "asgi" else 100


def _options(clock: FakeClock, **extra: object) -> dict[str, object]:
    return {
        "clock": clock,
        "timeout": TIMEOUT,
        "max_concurrent_lookups": CAP,
        "breaker_threshold": THRESHOLD,
        "breaker_cooldown": COOLDOWN,
        **extra,
    }


def _lwa_calls(lwa: LWAEmulator) -> int:
    return lwa.calls["tokeninfo"] + lwa.calls["profile"]


def _assert_recovers(
    caller: Caller, lwa: LWAEmulator, clock: FakeClock, cooldown: float = COOLDOWN
) -> None:
    """Once LWA is back and the cooldown has passed, one probe closes the breaker."""
    lwa.clear_faults()
    clock.advance(cooldown + 0.1)
    token = lwa.issue_token()
    reply = caller.get(token=token)
    assert reply.status == 200, reply.body
    assert reply.user_id == lwa.customer_for(token).user_id
    assert not caller.mw.resolver.breaker.is_open
    again = lwa.issue_token()
    assert caller.get(token=again).status == 200


@pytest.mark.parametrize("fault", [Fault.DOWN, Fault.HANG], ids=str)
def test_cold_burst_into_an_outage_is_shed(
    fault: Fault, make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    clock = FakeClock()
    caller = make_caller(**_options(clock))
    tokens = [lwa_emulator.issue_token() for _ in range(_burst_size(caller))]
    lwa_emulator.inject(fault)
    started = time.monotonic()
    replies = caller.many(tokens)
    elapsed = time.monotonic() - started

    assert Counter(r.status for r in replies) == {503: len(tokens)}
    for reply in replies:
        assert_unavailable(reply)
    assert elapsed < BOUND
    # At most CAP lookups in flight, and THRESHOLD failures open the breaker:
    # each lookup is one tokeninfo and one profile call.
    assert _lwa_calls(lwa_emulator) <= 2 * (CAP + THRESHOLD), dict(lwa_emulator.calls)
    assert caller.mw.stats.upstream_errors >= THRESHOLD
    assert caller.mw.stats.breaker_opened == 1
    _assert_recovers(caller, lwa_emulator, clock)


def test_steady_arrivals_into_a_hanging_lwa_are_bounded(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """Requests keep arriving while the first lookups hang.

    Those that queued for an in-flight slot before the breaker opened must
    not go on to call LWA once it has opened: LWA should see about CAP +
    THRESHOLD lookups (the clock is held, so no probe), not one per request
    that arrived during the first TIMEOUT seconds.
    """
    clock = FakeClock()
    caller = make_caller(**_options(clock))
    if caller.kind == "asgi":
        count, spread = 200, 0.008
    else:
        count, spread = 60, 0.025
    tokens = [lwa_emulator.issue_token() for _ in range(count)]
    lwa_emulator.inject(Fault.HANG)
    started = time.monotonic()
    replies = caller.many(tokens, spread=spread)
    elapsed = time.monotonic() - started

    assert Counter(r.status for r in replies) == {503: count}
    for reply in replies:
        assert_unavailable(reply)
    assert elapsed < BOUND
    assert _lwa_calls(lwa_emulator) <= 2 * (CAP + THRESHOLD), (
        f"{dict(lwa_emulator.calls)} LWA calls for {count} requests in {elapsed:.1f}s"
    )
    _assert_recovers(caller, lwa_emulator, clock)


def test_open_breaker_sheds_a_burst_without_asking_lwa(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """While the breaker is open and no probe is due, LWA hears nothing at all.

    The clock is held still during the burst, so however long the machine
    takes to run it, no probe falls due: zero LWA calls, and every refusal is
    the breaker's, its ``Retry-After`` the whole cooldown (30 s, unlike the
    configured RETRY_AFTER). Then the clock steps past the cooldown and one
    probe closes the breaker.
    """
    cooldown = 30.0
    clock = FakeClock()
    caller = make_caller(**_options(clock, breaker_cooldown=cooldown))
    lwa_emulator.inject(Fault.SERVER_ERROR)
    for _ in range(THRESHOLD):
        assert_unavailable(caller.get(token=lwa_emulator.issue_token()))
    assert caller.mw.resolver.breaker.is_open
    calls = _lwa_calls(lwa_emulator)
    assert calls == 2 * THRESHOLD

    tokens = [lwa_emulator.issue_token() for _ in range(_burst_size(caller))]
    started = time.monotonic()
    replies = caller.many(tokens)
    elapsed = time.monotonic() - started
    for reply in replies:
        # Retry-After tells the client when the breaker lets a probe through.
        assert_unavailable(reply, retry_after=math.ceil(cooldown))
    assert elapsed < BOUND
    assert _lwa_calls(lwa_emulator) == calls, dict(lwa_emulator.calls)
    assert caller.mw.stats.upstream_errors == THRESHOLD
    assert caller.mw.stats.breaker_opened == 1
    _assert_recovers(caller, lwa_emulator, clock, cooldown)


def test_an_open_breaker_refuses_without_queueing_for_a_slot(
    make_wsgi: Callable[..., LWAWSGIMiddleware], lwa_emulator: LWAEmulator
) -> None:
    """With every in-flight slot taken (hung lookups), the open breaker still
    answers at once with its own ``Retry-After``: a refusal that queued for a
    slot would wait the whole deadline and come out as ``Saturated``."""
    cooldown = 30.0
    clock = FakeClock()
    caller = WsgiCaller(make_wsgi(**_options(clock, breaker_cooldown=cooldown), retry_after=4))
    try:
        lwa_emulator.inject(Fault.SERVER_ERROR)
        for _ in range(THRESHOLD):
            assert_unavailable(caller.get(token=lwa_emulator.issue_token()))
        assert caller.mw.resolver.breaker.is_open
        driver = private_sync_driver(caller.mw)
        assert driver is not None
        for _ in range(CAP):
            assert driver._slots.acquire(blocking=False)
        try:
            started = time.monotonic()
            reply = caller.get(token=lwa_emulator.issue_token())
            waited = time.monotonic() - started
        finally:
            for _ in range(CAP):
                driver._slots.release()
        assert_unavailable(reply, retry_after=math.ceil(cooldown))
        assert caller.mw.stats.saturated == 0
        assert waited < TIMEOUT, f"the refusal queued for a slot ({waited:.2f}s)"
    finally:
        caller.close()


def test_breaker_recovers_under_steady_traffic(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """Traffic never pauses for a whole cooldown in production.

    After LWA is back, requests refused by the open breaker must not keep it
    open: within a couple of cooldowns a probe goes through and new tokens
    resolve again.
    """
    clock = FakeClock()
    caller = make_caller(**_options(clock))
    lwa_emulator.inject(Fault.DOWN)
    for _ in range(THRESHOLD):
        assert_unavailable(caller.get(token=lwa_emulator.issue_token()))
    assert caller.mw.resolver.breaker.is_open
    lwa_emulator.clear_faults()

    step = COOLDOWN / 5
    recovered: float | None = None
    statuses: Counter[int] = Counter()
    # One request every COOLDOWN/5 (of the breaker's clock) for up to 4 cooldowns.
    for n in range(20):
        reply = caller.get(token=lwa_emulator.issue_token())
        statuses[reply.status] += 1
        assert reply.status in (200, 503)
        if reply.status == 200:
            recovered = n * step
            break
        clock.advance(step)
    assert recovered is not None, (
        f"still refused {4 * COOLDOWN:.1f}s after LWA came back: {dict(statuses)}"
    )
    # Refusals do not restart the cooldown: the first request once it is over probes.
    assert recovered <= COOLDOWN + step
