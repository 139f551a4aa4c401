# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 9, "trust at the seams": every value in Redis carries a MAC bound to
its key, so whoever can write Redis without the secret can neither plant nor
edit an identity, a rejection or a revocation, nor move one to another key.
Against a real ``redis-server`` and the LWA emulator.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
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
    user_id,
)
from support.private import Settings, shared_cache

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

SECRETS = [pytest.param(None, id="generated-secret"), pytest.param(b"s" * 32, id="configured")]


def _json_part(value: bytes) -> bytes:
    """The JSON document inside a stored value, whatever is around it."""
    return value[value.index(b"{") :]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("how", ["edited", "planted"])
def test_a_forged_identity_is_a_miss(
    make: Any,
    secret: bytes | None,
    how: str,
    lwa_emulator: LWAEmulator,
    redis_srv: Any,
    rclient: Any,
    http: httpx2.Client,
) -> None:
    options = dict(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=secret)
    first, serve = make(**options)
    token = lwa_emulator.issue_token()
    real = lwa_emulator.customer_for(token).user_id
    with serve(first) as base:
        assert call(http, base, "/me", token).status_code == 200
    [key] = keys_of(rclient, "id")
    value = rclient.get(key)
    if secret is None:
        forged_json = _json_part(value).replace(real.encode(), b"amzn1.account.ATTACKER")
        assert forged_json != _json_part(value)
        forged = value.replace(_json_part(value), forged_json) if how == "edited" else forged_json
    else:
        # Issue 14: encrypted (AES-GCM), nothing readable; an edited byte
        # fails to open, and so does a value planted in the old MAC format
        # even with the real secret (no downgrade: a forgery needs the token).
        assert real.encode() not in value
        assert b"{" not in value[:2]
        if how == "edited":
            forged = value[:-1] + bytes([value[-1] ^ 1])
        else:
            from support.private import Codec

            body = (
                b'{"v":2,"user_id":"amzn1.account.ATTACKER","email":null,"name":null,'
                b'"postal_code":null,"scopes":["profile"],"client_id":"'
                + lwa_emulator.client_id.encode()
                + b'","expires_at":9999999999,"has_profile":true}'
            )
            mac = Codec(lwa_emulator.base_url, frozenset({lwa_emulator.client_id}), 300)
            forged = mac.seal(secret, key.decode(), body)
    rclient.set(key, forged, px=60_000)
    fresh, serve = make(**options)
    before = lwa_emulator.calls["tokeninfo"]
    with serve(fresh) as base:
        response = call(http, base, "/me", token)
    assert response.status_code == 200, response.text
    assert user_id(response) == real
    assert fresh.stats.shared_hits == 0
    assert lwa_emulator.calls["tokeninfo"] == before + 1


@pytest.mark.parametrize("secret", SECRETS)
def test_a_value_moved_to_another_tokens_key_is_a_miss(
    make: Any,
    secret: bytes | None,
    lwa_emulator: LWAEmulator,
    redis_srv: Any,
    rclient: Any,
    http: httpx2.Client,
) -> None:
    options = dict(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=secret)
    first, serve = make(**options)
    victim, attacker = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with serve(first) as base:
        assert call(http, base, "/me", victim).status_code == 200
        [victim_key] = keys_of(rclient, "id")
        assert call(http, base, "/me", attacker).status_code == 200
    [attacker_key] = [k for k in keys_of(rclient, "id") if k != victim_key]
    # Whoever holds the attacker's token tries to be taken for the victim.
    rclient.set(attacker_key, rclient.get(victim_key), px=60_000)
    fresh, serve = make(**options)
    with serve(fresh) as base:
        response = call(http, base, "/me", attacker)
    assert response.status_code == 200, response.text
    assert user_id(response) == lwa_emulator.customer_for(attacker).user_id
    assert fresh.stats.shared_hits == 0


@pytest.mark.parametrize("kind", ["rej", "rev"])
def test_a_rejection_or_revocation_moved_to_another_key_is_a_miss(
    make: Any,
    kind: str,
    lwa_emulator: LWAEmulator,
    redis_srv: Any,
    rclient: Any,
    http: httpx2.Client,
) -> None:
    options = dict(redis_url=redis_srv.url, redis_timeout=SLACK)
    first, serve = make(**options)
    good, bad = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with serve(first) as base:
        assert call(http, base, "/me", good).status_code == 200
    [good_key] = keys_of(rclient, "id")
    if kind == "rej":
        lwa_emulator.revoke(bad)
        with serve(first) as base:
            assert call(http, base, "/me", bad).status_code == 401
    else:
        first.resolver.revoke(bad)
    [bad_key] = keys_of(rclient, kind)
    target = bad_key.replace(bad_key.split(b":")[-1], good_key.split(b":")[-1])
    rclient.set(target, rclient.get(bad_key), px=60_000)
    rclient.delete(good_key)
    fresh, serve = make(**options)
    with serve(fresh) as base:
        response = call(http, base, "/me", good)
    assert response.status_code == 200, response.text


def test_a_missing_cache_key_secret_is_warned_about_once(
    lwa_emulator: LWAEmulator,
    redis_srv: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="lwa_middleware.shared_cache")
    monkeypatch.setattr(shared_cache._secret, "_warned_no_secret", False)
    common: dict[str, Any] = dict(
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        redis_url=redis_srv.url,
    )
    configured = Settings.from_options(cache_key_secret=b"k" * 32, **common)
    generated = Settings.from_options(**common)
    shared_cache.SyncSharedCache(configured).close()
    assert not [r for r in caplog.records if "cache_key_secret" in r.getMessage()]
    for _ in range(3):
        shared_cache.SyncSharedCache(generated).close()
    warnings = [r for r in caplog.records if "cache_key_secret" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert redis_srv.url not in warnings[0].getMessage()
