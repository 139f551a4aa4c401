"""Property: the ASGI middleware's inlined fast path, and ``Gate.hit``, are the
cache rule, ``entry.serves(policy, now) and policy.scopes <= entry.granted``.

For random cached entries (scopes, profile fetched or not, freshness) and
route policies (scopes, optional, ``revalidate()``), a request is answered
from the cache by the inlined path (the slow path is never entered, LWA is
not called, ``stats.hits`` goes up by one) exactly when the rule says so; and
the other outcomes are the rule's too: a fresh entry without the scopes is a
403 without LWA, anything else asks LWA.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from hashlib import sha256
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.callers import asgi_call, asgi_scope
from support.clock import FakeClock
from support.private import (
    PROVABLE_SCOPES,
    Entry,
    Gate,
    Policy,
    Resolver,
    Settings,
    asgi_judge,
    gate_resolver,
    gate_stats,
    set_asgi_judge,
)

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware, revalidate
from lwa_middleware.testing import LWAEmulator

SCOPES = sorted(PROVABLE_SCOPES)
_serial = itertools.count()

scope_sets = st.frozensets(st.sampled_from(SCOPES))
freshness = st.sampled_from([-60.0, -0.001, 0.0, 0.001, 60.0])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    scopes = draw(scope_sets)
    if draw(st.booleans()):
        return revalidate(sorted(scopes) if scopes else "required")
    if not scopes and draw(st.booleans()):
        return Policy.parse("optional")
    return Policy.parse(sorted(scopes) if scopes else "required")


def _entry(now: float, scopes: frozenset[str], has_profile: bool, fresh_in: float) -> Entry:
    identity = Identity(
        user_id="amzn1.account.PROPERTY", scopes=scopes, client_id="c",
        expires_at=time.time() + 3600,
    )
    return Entry(
        identity,
        expires_mono=now + 3600,
        fresh_until=now + fresh_in,
        has_profile=has_profile,
    )


def _rule(entry: Entry, policy: Policy, now: float) -> bool:
    return entry.serves(policy, now) and policy.scopes <= entry.granted


def _options(lwa: LWAEmulator, policy: Policy, clock: FakeClock) -> dict[str, Any]:
    return {
        "client_id": lwa.client_id,
        "api_base_url": lwa.base_url,
        "routes": {"/p": policy},
        "clock": clock,
    }


def _cached(
    resolver: Resolver, scopes: frozenset[str], has_profile: bool, fresh_in: float
) -> tuple[str, Entry]:
    """A token unknown to LWA, and the entry cached for it."""
    token = f"Atza|property-{next(_serial):08d}-" + "p" * 40
    entry = _entry(resolver.clock(), scopes, has_profile, fresh_in)
    resolver.cache.put(sha256(token.encode()).digest(), entry)
    return token, entry


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
#: A cached entry, a route policy and the header the token comes in.
CASES = given(
    scopes=scope_sets,
    has_profile=st.booleans(),
    fresh_in=freshness,
    policy=policies(),
    amz_header=st.booleans(),
)


@PROPERTY
@CASES
def test_the_asgi_fast_path_is_the_cache_rule(
    lwa_emulator: LWAEmulator,
    scopes: frozenset[str],
    has_profile: bool,
    fresh_in: float,
    policy: Policy,
    amz_header: bool,
) -> None:
    clock = FakeClock()
    mw = LWAMiddleware(_app, **_options(lwa_emulator, policy, clock))
    token, entry = _cached(mw.resolver, scopes, has_profile, fresh_in)
    expected = _rule(entry, policy, clock())

    judged: list[bool] = []
    slow = asgi_judge(mw)

    async def judge(*args: Any) -> Any:
        judged.append(True)
        return await slow(*args)

    set_asgi_judge(mw, judge)
    headers = {"x-amz-access-token": token} if amz_header else {"Authorization": f"Bearer {token}"}
    calls = lwa_emulator.calls["tokeninfo"]

    async def run() -> int:
        try:
            sent = await asgi_call(mw, asgi_scope("/p", headers))
        finally:
            await mw.aclose()
        return int(sent[0]["status"])

    status = asyncio.run(run())
    asked = lwa_emulator.calls["tokeninfo"] - calls
    fast = not judged
    assert fast == expected, (entry, policy)
    if expected:
        assert (status, asked, mw.stats.hits) == (200, 0, 1)
    elif entry.serves(policy, clock()):
        assert (status, asked) == (403, 0)  # cached, but without the scopes
    else:
        assert asked == 1  # not served by this entry: LWA is asked
        assert status == 401  # and does not know the token


@PROPERTY
@given(scopes=scope_sets, has_profile=st.booleans(), fresh_in=freshness, policy=policies())
def test_gate_hit_is_the_cache_rule(
    scopes: frozenset[str], has_profile: bool, fresh_in: float, policy: Policy
) -> None:
    clock = FakeClock()
    options = Settings.from_options(
        client_id="c", api_base_url="http://127.0.0.1:9", clock=clock
    )
    gate = Gate(options, Resolver(options))
    raw = b"Atza|gate-property"
    entry = _entry(clock(), scopes, has_profile, fresh_in)
    gate_resolver(gate).cache.put(sha256(raw).digest(), entry)
    hit = gate.hit(raw, policy)
    expected = _rule(entry, policy, clock())
    assert (hit is entry) == expected
    assert hit is None or hit is entry
    assert gate_stats(gate).hits == int(expected)


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@PROPERTY
@CASES
def test_the_wsgi_fast_path_is_the_cache_rule(
    lwa_emulator: LWAEmulator,
    scopes: frozenset[str],
    has_profile: bool,
    fresh_in: float,
    policy: Policy,
    amz_header: bool,
) -> None:
    # judge_environ inlines Gate.hit too: the same rule, the same outcomes.
    clock = FakeClock()
    mw = LWAWSGIMiddleware(_wsgi_app, **_options(lwa_emulator, policy, clock))
    token, entry = _cached(mw.resolver, scopes, has_profile, fresh_in)
    expected = _rule(entry, policy, clock())
    header = ("HTTP_X_AMZ_ACCESS_TOKEN", token) if amz_header else (
        "HTTP_AUTHORIZATION", f"Bearer {token}"
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/p", "QUERY_STRING": "", header[0]: header[1]}
    statuses: list[str] = []
    calls = lwa_emulator.calls["tokeninfo"]
    try:
        mw(environ, lambda status, headers, exc=None: statuses.append(status))
    finally:
        mw.close()
    asked = lwa_emulator.calls["tokeninfo"] - calls
    status = int(statuses[0].split()[0])
    if expected:
        assert (status, asked, mw.stats.hits) == (200, 0, 1)
        assert environ["lwa.identity"] is entry.identity
    elif entry.serves(policy, clock()):
        assert (status, asked) == (403, 0)  # cached, but without the scopes
    else:
        assert (asked, mw.stats.hits) == (1, 0)  # not served by this entry: LWA is asked
        assert status == 401  # and does not know the token
