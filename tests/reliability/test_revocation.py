"""The revocation window, as ``SECURITY.md`` states it, for both middlewares.

* A token revoked at Amazon keeps working for at most ``cache_ttl``; a
  ``revalidate()`` route notices at once.
* ``revoke(token)`` (logout) refuses the token from then on, even while LWA
  still vouches for it, and even if a lookup of that token was in flight.
* ``invalidate(token)`` forgets it: the next request asks LWA again.
* ``stale_if_error`` trades the window for availability: during an outage a
  token revoked at Amazon is served until it expires.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from support.clock import FakeClock

from lwa_middleware import revalidate
from lwa_middleware.testing import Fault, LWAEmulator

from .conftest import AsgiCaller, Caller, assert_invalid_token


def test_revocation_at_amazon_is_noticed_within_cache_ttl(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    clock = FakeClock()
    caller = make_caller(cache_ttl=60, routes={"/pay": revalidate()}, clock=clock)
    token = lwa_emulator.issue_token()
    assert caller.get(token=token).status == 200
    assert caller.get("/pay", token=token).status == 200
    lwa_emulator.revoke(token)
    # Within the window the cache still answers; a revalidate() route asks LWA.
    clock.advance(59)
    assert caller.get(token=token).status == 200
    assert_invalid_token(caller.get("/pay", token=token))
    clock.advance(1.1)
    assert_invalid_token(caller.get(token=token))


def test_revoke_refuses_a_token_lwa_still_vouches_for(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    caller = make_caller(negative_cache_maxsize=10)
    token = lwa_emulator.issue_token()
    assert caller.get(token=token).status == 200
    caller.revoke(token)
    calls = lwa_emulator.calls["tokeninfo"]
    assert_invalid_token(caller.get(token=token))
    # A flood of garbage filling the negative cache does not evict the revocation.
    for index in range(30):
        assert caller.get(token=f"garbage-{index}").status == 401
    assert_invalid_token(caller.get(token=token))
    assert lwa_emulator.calls["tokeninfo"] == calls + 30
    # Other tokens of the same customer are unaffected.
    other = lwa_emulator.issue_token(customer=lwa_emulator.customer_for(token))
    assert caller.get(token=other).status == 200


def test_revoke_wins_over_a_lookup_in_flight(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """Logout while another request's lookup of the same token is still running.

    The lookup that finishes after ``revoke()`` must not put the token back in
    the cache, or the logout is undone for ``cache_ttl``.
    """
    caller = make_caller()
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3)
    replies: list[int] = []
    if isinstance(caller, AsgiCaller):

        async def scenario() -> None:
            import asyncio

            first = asyncio.ensure_future(caller.aget(token=token))
            # Until the lookup has reached LWA (held there by the latency).
            reached = await asyncio.to_thread(lwa_emulator.wait_for_calls, "tokeninfo", 1, 30)
            assert reached
            await caller.mw.revoke(token)
            replies.append((await first).status)

        caller.runner.run(scenario())
    else:
        thread = threading.Thread(target=lambda: replies.append(caller.get(token=token).status))
        thread.start()
        assert lwa_emulator.wait_for_calls("tokeninfo", 1, timeout=5)
        caller.revoke(token)
        thread.join(timeout=10)
    lwa_emulator.set_latency(0)
    assert len(replies) == 1
    assert replies[0] in (200, 401)
    assert_invalid_token(caller.get(token=token))


def test_invalidate_makes_the_next_request_ask_lwa(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    caller = make_caller()
    token = lwa_emulator.issue_token()
    assert caller.get(token=token).status == 200
    assert caller.get(token=token).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 1
    lwa_emulator.revoke(token)
    caller.invalidate(token)
    assert_invalid_token(caller.get(token=token))
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_stale_if_error_serves_a_token_revoked_during_an_outage(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    """The documented trade-off, and its limit: not past the token's expiry."""
    clock = FakeClock()
    caller = make_caller(cache_ttl=60, stale_if_error=True, clock=clock)
    token = lwa_emulator.issue_token()
    short = lwa_emulator.issue_token(expires_in=100)
    assert caller.get(token=token).status == 200
    assert caller.get(token=short).status == 200
    lwa_emulator.revoke(token)
    lwa_emulator.inject(Fault.DOWN)
    clock.advance(61)
    assert caller.get(token=token).status == 200  # stale, and LWA cannot say otherwise
    assert caller.get(token=short).status == 200  # stale too, still live
    clock.advance(40)
    reply = caller.get(token=short)  # expired: never served, outage or not
    assert reply.status == 503, reply.body
    lwa_emulator.clear_faults()
    assert_invalid_token(caller.get(token=token))
