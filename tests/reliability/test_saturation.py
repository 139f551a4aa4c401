"""Local saturation and garbage floods are not LWA failures.

A burst of garbage tokens against a *healthy* LWA used to open the circuit
breaker: lookups that waited for an in-flight slot timed out (their deadline
ran while they queued) or gave up waiting, and both counted as LWA failures,
so real customers got 503 for a whole cooldown. These tests pin the fixes:

* waiting for a slot has its own bound, and giving up is ``Saturated``, a 503
  that never counts towards the breaker;
* a lookup's deadline starts when it gets its slot;
* tokens not shaped like LWA's take at most half the slots;
* the "LWA unavailable" warning is rate-limited.

No assertion here is about speed: latencies are injected at the emulator and
every bound is generous; the tests hold on a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.clock import FakeClock

from lwa_middleware.testing import Fault, LWAEmulator

from .conftest import RETRY_AFTER, AsgiCaller, Caller, Reply, assert_unavailable


def _garbage(count: int) -> list[str]:
    """Distinct garbage: half random strings, half ``Atza|``-shaped unknown tokens."""
    plain = [secrets.token_urlsafe(24) for _ in range(count - count // 2)]
    shaped = ["Atza|" + secrets.token_urlsafe(300)[:360] for _ in range(count // 2)]
    return plain + shaped


def _counting(events: Counter[str]) -> Callable[[str, object], None]:
    return lambda name, data: events.update([name])


def _assert_saturated(replies: Sequence[Reply], caller: Caller) -> int:
    """Every 503 is the middleware's own "too busy"; none came from the breaker."""
    shed = [r for r in replies if r.status == 503]
    for reply in shed:
        assert_unavailable(reply, retry_after=RETRY_AFTER)
    assert caller.mw.stats.saturated == len(shed)
    return len(shed)


def _assert_breaker_untouched(caller: Caller) -> None:
    stats = caller.mw.stats
    assert stats.upstream_errors == 0, stats
    assert stats.breaker_opened == 0, stats
    assert not caller.mw.resolver.breaker.is_open


def _wait_until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "condition never came true"
        time.sleep(0.01)


def _burst_then_one(
    caller: Caller, burst: Sequence[str], ready: Callable[[], bool], last: str
) -> tuple[list[Reply], Reply]:
    """Send ``burst`` at once; once ``ready()``, send ``last`` while the burst is in flight."""
    if isinstance(caller, AsgiCaller):
        asgi = caller

        async def scenario() -> tuple[list[Reply], Reply]:
            tasks = [asyncio.ensure_future(asgi.aget(token=t)) for t in burst]
            end = time.monotonic() + 30.0
            while not ready():
                assert time.monotonic() < end, "the burst never reached LWA"
                await asyncio.sleep(0.01)
            reply = await asgi.aget(token=last)
            return list(await asyncio.gather(*tasks)), reply

        return asgi.runner.run(scenario())
    with ThreadPoolExecutor(max_workers=len(burst) + 1) as pool:
        futures = [pool.submit(caller.get, token=t) for t in burst]
        _wait_until(ready)
        reply = caller.get(token=last)
        return [f.result() for f in futures], reply


def test_saturation_never_opens_the_breaker(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """Two slots, a slow LWA, many distinct valid tokens at once.

    At most 2 lookups per 0.2 s can finish within the 2 s a request waits for
    a slot, so some requests must be shed. Shedding is a 503 with the
    configured ``Retry-After``, counted as ``saturated``, never as an LWA
    failure: the breaker (threshold 2) stays closed and customers are served
    as soon as the burst is over.
    """
    events: Counter[str] = Counter()
    caller = make_caller(
        max_concurrent_lookups=2, timeout=2.0, breaker_threshold=2, on_event=_counting(events)
    )
    lwa_emulator.set_latency(0.2)
    tokens = [lwa_emulator.issue_token() for _ in range(60)]
    replies = caller.many(tokens)

    assert set(Counter(r.status for r in replies)) <= {200, 503}
    _assert_breaker_untouched(caller)
    shed = _assert_saturated(replies, caller)
    assert shed >= 1, "2 slots cannot serve 60 lookups of 0.2 s within 2 s"
    assert events["saturated"] == shed
    assert events["upstream_error"] == 0
    for reply, token in zip(replies, tokens, strict=True):
        if reply.status == 200:
            assert reply.user_id == lwa_emulator.customer_for(token).user_id

    lwa_emulator.set_latency(0)
    for _ in range(3):
        assert caller.get(token=lwa_emulator.issue_token()).status == 200


def test_lookup_deadline_starts_when_the_slot_is_taken(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """One slot, LWA answering in 2 s, a 3 s timeout, two new tokens at once.

    The second lookup waits about 2 s for the slot, then needs 2 s more. Had
    its deadline started before the wait, it would have 1 s left and fail as
    an LWA timeout; it gets its whole 3 s instead.
    """
    caller = make_caller(max_concurrent_lookups=1, timeout=3.0)
    lwa_emulator.set_latency(2.0)
    tokens = [lwa_emulator.issue_token() for _ in range(2)]
    replies = caller.many(tokens)
    assert [r.status for r in replies] == [200, 200], [r.body for r in replies]
    _assert_breaker_untouched(caller)
    assert caller.mw.stats.saturated == 0


def test_unavailable_warning_is_rate_limited(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outage logs one line per interval, saying how many it left out."""
    clock = FakeClock()
    caller = make_caller(breaker_threshold=1000, clock=clock)
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    caplog.set_level(logging.WARNING, logger="lwa_middleware")

    def warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "lwa_middleware" and r.levelno == logging.WARNING
        ]

    for _ in range(10):
        assert_unavailable(caller.get(token=lwa_emulator.issue_token()))
        clock.advance(0.5)
    assert caller.mw.stats.upstream_errors == 10
    assert len(warnings()) == 1, warnings()
    assert "unavailable" in warnings()[0]
    assert "since the last warning" not in warnings()[0]

    clock.advance(3600)
    assert_unavailable(caller.get(token=lwa_emulator.issue_token()))
    assert len(warnings()) == 2, warnings()
    assert warnings()[1].endswith("(9 more since the last warning)"), warnings()[1]


def test_garbage_not_shaped_like_lwa_takes_at_most_half_the_slots(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """Random strings fill their half of the slots; a customer's token still gets one."""
    caller = make_caller(max_concurrent_lookups=4, timeout=3.0)
    lwa_emulator.set_latency(1.0)
    garbage = [secrets.token_urlsafe(24) for _ in range(40)]
    customer = lwa_emulator.issue_token()
    replies, reply = _burst_then_one(
        caller, garbage, lambda: lwa_emulator.calls["tokeninfo"] >= 2, customer
    )
    assert reply.status == 200, reply.body
    assert reply.user_id == lwa_emulator.customer_for(customer).user_id
    assert set(Counter(r.status for r in replies)) <= {401, 503}
    _assert_breaker_untouched(caller)
    _assert_saturated([*replies, reply], caller)


def test_garbage_flood_at_a_slow_healthy_lwa_does_not_open_the_breaker(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """A small in-test version of ``benchmarks/bench_flood.py``.

    LWA is healthy but slow (100 ms) and rejects every garbage token. Lookups
    queue for the 4 slots; some are shed. None of it is an LWA failure, so
    the breaker never opens and customers are served during and after.
    """
    caller = make_caller(max_concurrent_lookups=4, timeout=1.0, breaker_threshold=3)
    lwa_emulator.set_latency(0.1)
    garbage = _garbage(120)
    during = [lwa_emulator.issue_token() for _ in range(10)]
    burst = garbage[:60] + during + garbage[60:]
    if isinstance(caller, AsgiCaller):
        replies = caller.many(burst)
    else:
        replies = caller.many(burst, workers=64)

    by_token = dict(zip(burst, replies, strict=True))
    assert {by_token[t].status for t in garbage} <= {401, 503}
    assert {by_token[t].status for t in during} <= {200, 503}
    _assert_breaker_untouched(caller)
    _assert_saturated(replies, caller)
    assert caller.mw.stats.rejected >= 1

    after = [lwa_emulator.issue_token() for _ in range(10)]
    assert [r.status for r in caller.many(after)] == [200] * len(after)
    _assert_breaker_untouched(caller)
