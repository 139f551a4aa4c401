"""The shared cache's plans, driven without Redis: a worker's plans and a driver.

A plan is a generator that yields Redis round trips (``_Call``) and pauses
(``_Sleep``) and is sent the replies. :func:`drive` plays Redis from a script
of replies and plays time on a :class:`~support.clock.FakeClock`. Used by
``test_shared_cache_plans`` and the fleet modules that check a plan's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lwa_middleware import Identity
from support.clock import FakeClock
from support.private import (
    Resolved,
    Settings,
    _Call,
    _Listen,
    _Plan,
    _Plans,
    _Sleep,
    _Subscribe,
    bucket,
    encode_identity,
    entry_keys,
    plan_codec,
    plan_epochs,
    plan_hex,
    rejection_body,
    set_plan_epoch,
    set_plan_wall,
)

CLIENT = "amzn1.application-oa2-client.plans"
SECRET = b"s" * 32
TOKEN = "Atza|plan-test-token-0123456789"
WALL = 1_700_000_000.0  # the epoch "now" of every test
EPOCH = b"epoch-1"

Reply = Any  # what Redis answers, or an Exception to throw into the plan


def make(clock: FakeClock, **options: Any) -> _Plans:
    """A worker's plans, configured secret, having already met this Redis."""
    options = {"cache_key_secret": SECRET, "timeout": 5.0, **options}
    settings = Settings.from_options(
        client_id=CLIENT,
        # Never connected to: plans do no IO.
        redis_url="redis://127.0.0.1:1/0",
        cache_ttl=300.0,
        negative_cache_ttl=30.0,
        clock=clock,
        **options,
    )
    plans = _Plans(settings)
    set_plan_wall(plans, lambda: WALL)
    set_plan_epoch(plans, EPOCH)  # the data set's marker, as last seen
    for secret in settings.cache_key_secrets:
        # The marker of the token's bucket, as last seen.
        plan_epochs(plans)[bucket(plan_hex(plans)(secret, TOKEN))] = EPOCH
    return plans


def drive(
    plan: _Plan[Any],
    replies: list[Reply] | Callable[[_Call], Reply],
    clock: FakeClock,
    steps: list[_Call | _Sleep] | None = None,
) -> tuple[list[_Call | _Sleep], Any]:
    """Run ``plan`` to its end: each ``_Call`` gets the next reply (an
    exception is thrown in instead), each ``_Sleep`` advances ``clock``.
    Returns the steps (also appended to ``steps``) and the plan's result;
    every reply of a list must be used."""
    steps = [] if steps is None else steps
    queue = list(replies) if isinstance(replies, list) else None
    try:
        step = next(plan)
        while True:
            steps.append(step)
            assert TOKEN not in repr(step)  # no token in keys or values
            if isinstance(step, _Sleep):
                clock.advance(step.seconds)
                step = plan.send(None)
                continue
            if isinstance(step, _Subscribe):
                step = plan.send(None)
                continue
            if isinstance(step, _Listen):
                # From a list: whether the holder published (True), or the wait
                # ran out (False, the clock moves on by its seconds). From a
                # function: always run out.
                came = bool(queue.pop(0)) if queue is not None else False
                if not came:
                    clock.advance(step.seconds)
                step = plan.send(came)
                continue
            reply = queue.pop(0) if queue is not None else replies(step)  # type: ignore[operator]
            step = plan.throw(reply) if isinstance(reply, Exception) else plan.send(reply)
    except StopIteration as stop:
        assert not queue, f"unused replies: {queue}"
        return steps, stop.value


def calls(steps: list[_Call | _Sleep]) -> list[_Call]:
    return [step for step in steps if isinstance(step, _Call)]


def digest(plans: _Plans, secret: bytes = SECRET) -> str:
    return plan_hex(plans)(secret, TOKEN)


def identity_value(
    plans: _Plans, expires_at: float = WALL + 600, secret: bytes = SECRET, key: str | None = None
) -> bytes:
    """A sealed identity, as a worker would have stored it under ``key``."""
    identity = Identity(user_id="amzn1.account.A", client_id=CLIENT, expires_at=expires_at)
    body = encode_identity(Resolved(identity, 0.0, has_profile=False))
    return plan_codec(plans).seal(secret, key or entry_keys(digest(plans, secret))[0], body, TOKEN)


def rejection_value(plans: _Plans, key: str, description: str) -> bytes:
    return plan_codec(plans).seal(SECRET, key, rejection_body(description), TOKEN)


def opened(plans: _Plans, key: str, value: object) -> bytes:
    """The body of a value a plan wrote under ``key`` (its MAC must hold)."""
    assert isinstance(value, bytes)
    return plan_codec(plans).unseal(SECRET, key, value, TOKEN)


def resolved(clock: FakeClock, seconds: float) -> Resolved:
    identity = Identity(user_id="amzn1.account.A", client_id=CLIENT, expires_at=WALL + seconds)
    return Resolved(identity, clock() + seconds, has_profile=True)
