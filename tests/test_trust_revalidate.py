# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 9, "trust at the seams": a ``revalidate()`` route always asks LWA,
and a token LWA rejected is evicted everywhere, so ``stale_if_error`` can
never serve it. Against a real ``redis-server`` and the LWA emulator.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from conftest import ROUTES
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    _module_redis,
    call,
    http,
    keys_of,
    make,
    rclient,
    redis_bin,
    redis_srv,
)

from lwa_middleware import revalidate
from lwa_middleware.testing import Fault, LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

TRUST_ROUTES: dict[str, Any] = dict(ROUTES, **{"/pay": revalidate()})


# -- 1. revalidate() always asks LWA -------------------------------------------


def test_revalidate_is_never_answered_from_redis(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: Any, http: httpx2.Client
) -> None:
    first, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with serve(first) as base:
        assert call(http, base, "/me", token).status_code == 200
    assert len(keys_of(rclient, "id")) == 1  # the identity is in Redis
    lwa_emulator.revoke(token)  # LWA now rejects it; Redis still holds it
    fresh, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    before = lwa_emulator.calls["tokeninfo"]
    with serve(fresh) as base:
        response = call(http, base, "/pay", token)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert lwa_emulator.calls["tokeninfo"] == before + 1
    assert fresh.stats.shared_hits == 0


def test_revalidate_with_a_cleared_memory_asks_lwa_not_redis(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    mw, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with serve(mw) as base:
        assert call(http, base, "/me", token).status_code == 200
        lwa_emulator.revoke(token)
        mw.resolver.cache.clear()
        assert call(http, base, "/pay", token).status_code == 401
    assert mw.stats.shared_hits == 0


def test_revalidate_still_honours_a_shared_revocation(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, http: httpx2.Client
) -> None:
    """LWA still vouches for the token, but a worker logged it out."""
    first, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    first.resolver.revoke(token)
    other, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    with serve(other) as base:
        response = call(http, base, "/pay", token)
    assert response.status_code == 401, response.text
    assert "revoked" in response.json()["error_description"]


def test_revalidate_writes_the_fresh_answer_back(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: Any, http: httpx2.Client
) -> None:
    mw, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    token = lwa_emulator.issue_token()
    with serve(mw) as base:
        assert call(http, base, "/pay", token).status_code == 200
    assert len(keys_of(rclient, "id")) == 1
    other, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK)
    with serve(other) as base:
        assert call(http, base, "/me", token).status_code == 200
    assert other.stats.shared_hits == 1


# -- 4. a rejection always evicts ----------------------------------------------


def test_a_rejection_evicts_from_memory_so_stale_if_error_cannot_serve_it(
    make: Any, lwa_emulator: LWAEmulator, http: httpx2.Client
) -> None:
    mw, serve = make(stale_if_error=True, negative_cache_ttl=0)
    token = lwa_emulator.issue_token()
    with serve(mw) as base:
        assert call(http, base, "/me", token).status_code == 200
        lwa_emulator.revoke(token)
        assert call(http, base, "/pay", token).status_code == 401
        lwa_emulator.inject(Fault.DOWN)
        response = call(http, base, "/me", token)
        lwa_emulator.clear_faults()
    assert response.status_code in (401, 503), response.text
    assert mw.stats.stale_served == 0


def test_an_unremembered_rejection_evicts_too(
    make: Any, lwa_emulator: LWAEmulator, http: httpx2.Client
) -> None:
    """LWA's inconsistent answers are not remembered, but still drop the identity."""
    mw, serve = make(stale_if_error=True)
    token = lwa_emulator.issue_token()
    with serve(mw) as base:
        assert call(http, base, "/me", token).status_code == 200
        lwa_emulator.inject(Fault.USER_ID_MISMATCH, endpoint="profile", times=1)
        assert call(http, base, "/pay", token).status_code == 401
        lwa_emulator.inject(Fault.DOWN)
        response = call(http, base, "/me", token)
        lwa_emulator.clear_faults()
    assert response.status_code in (401, 503), response.text
    assert mw.stats.stale_served == 0


@pytest.mark.parametrize("rejection", ["revoked", "inconsistent"])
def test_a_rejection_evicts_from_redis(
    make: Any,
    rejection: str,
    lwa_emulator: LWAEmulator,
    redis_srv: Any,
    rclient: Any,
    http: httpx2.Client,
) -> None:
    options = dict(
        redis_url=redis_srv.url, redis_timeout=SLACK, stale_if_error=True, negative_cache_ttl=0
    )
    first, serve = make(**options)
    token = lwa_emulator.issue_token()
    with serve(first) as base:
        assert call(http, base, "/me", token).status_code == 200
        assert len(keys_of(rclient, "id")) == 1
        if rejection == "revoked":
            lwa_emulator.revoke(token)
        else:
            lwa_emulator.inject(Fault.USER_ID_MISMATCH, endpoint="profile", times=1)
        assert call(http, base, "/pay", token).status_code == 401
    assert keys_of(rclient, "id") == []
    # Another worker, while LWA is down: nothing to serve from Redis.
    other, serve = make(**options)
    lwa_emulator.inject(Fault.DOWN)
    try:
        with serve(other) as base:
            response = call(http, base, "/me", token)
    finally:
        lwa_emulator.clear_faults()
    assert response.status_code in (401, 503), response.text
    assert other.stats.shared_hits == 0
