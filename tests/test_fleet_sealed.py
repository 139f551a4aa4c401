# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 4: encrypted, bound entries with ``cache_key_secret``.

Values are AES-GCM under a key derived (HKDF) from the secret *and the
token*, with the schema, key id and key name as associated data: Redis holds
nothing readable, a forgery needs both the secret and the token, a value
moved to another key fails to open. The secret rotates: a list, the first
writes, all read. The codec without Redis; rotation against a real server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import uvicorn_server
from support.clock import FakeClock
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
from support.plans import CLIENT, TOKEN, calls, drive, resolved
from support.plans import make as make_plans
from support.private import (
    REVOKED,
    Codec,
    Resolved,
    Settings,
    encode_identity,
    entry_keys,
    key_id,
    plan_codec,
    plan_failure,
    plan_get,
    plan_hex,
    plan_put,
    plan_revoke,
    plan_secret,
    rejection_body,
    token_key,
)

from lwa_middleware import ConfigurationError, Identity, InvalidToken, LWAMiddleware
from lwa_middleware.testing import LWAEmulator

S1, S2 = b"1" * 32, b"2" * 32
KEY = token_key("id", "ab" * 32)


def codec(aead: bool = True) -> Codec:
    return Codec("https://api.amazon.com", frozenset({CLIENT}), 300, aead=aead)


EXPIRES_AT = time.time() + 3600


def body() -> bytes:
    identity = Identity(user_id="amzn1.account.SECRETUSER", email="who@example.com",
                        client_id=CLIENT, expires_at=EXPIRES_AT)
    return encode_identity(Resolved(identity, 0.0, has_profile=True))


def test_a_sealed_value_is_unreadable_and_opens_only_with_secret_and_token() -> None:
    sealed = codec().seal(S1, KEY, body(), TOKEN)
    assert b"SECRETUSER" not in sealed
    assert b"example.com" not in sealed
    assert b"{" not in sealed[:12]
    assert sealed.startswith(b"3." + key_id(S1) + b".")
    assert codec().unseal(S1, KEY, sealed, TOKEN) == body()
    for secret, key, token in (
        (S2, KEY, TOKEN),  # the secret alone is not enough...
        (S1, KEY, TOKEN + "x"),  # ...nor is it with another token
        (S1, token_key("id", "cd" * 32), TOKEN),  # moved to another key
    ):
        with pytest.raises(ValueError):
            codec().unseal(secret, key, sealed, token)
    for i in (0, 3, 12, len(sealed) - 1):  # any byte edited
        edited = sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1 :]
        with pytest.raises(ValueError):
            codec().unseal(S1, KEY, edited, TOKEN)


def test_no_downgrade_to_the_mac_format() -> None:
    planted = codec(aead=False).seal(S1, KEY, body())  # MAC-sealed with the real secret
    with pytest.raises(ValueError):
        codec().unseal(S1, KEY, planted, TOKEN)
    with pytest.raises(ValueError):
        codec().seal(S1, KEY, body())  # an AEAD value is always bound to a token


def test_two_seals_of_one_value_differ() -> None:
    assert codec().seal(S1, KEY, body(), TOKEN) != codec().seal(S1, KEY, body(), TOKEN)


def test_rejections_and_revocations_are_sealed_to_the_token_too(clock: Any) -> None:
    plans = make_plans(clock)
    steps, _ = drive(plan_failure(plans)(TOKEN, InvalidToken("bad")), [0], clock)
    (write,) = calls(steps)
    value = write.args[0]
    assert isinstance(value, bytes)
    assert b"bad" not in value
    codec, secret = plan_codec(plans), plan_secret(plans)
    assert codec.unseal(secret, write.keys[0], value, TOKEN) == rejection_body("bad")
    with pytest.raises(ValueError):
        codec.unseal(secret, write.keys[0], value, TOKEN + "x")
    steps, _ = drive(plan_revoke(plans)(TOKEN, 60.0), [0], clock)
    (revocation,) = calls(steps)
    opened = codec.unseal(secret, revocation.keys[0], revocation.args[0], TOKEN)
    assert opened == rejection_body(REVOKED)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_rotation_writes_with_the_first_and_reads_all(clock: Any) -> None:
    plans = make_plans(clock, cache_key_secret=[S2, S1])
    old = plan_hex(plans)(S1, TOKEN)
    steps, found = drive(plan_get(plans)(TOKEN, False), lambda c: [0, 0], clock)
    # The old secret's keys are in another bucket (another slot, on a
    # Cluster): read first, on their own, revocation then identity ("2").
    old_read, read = calls(steps)
    assert old_read.keys == entry_keys(old)
    assert old_read.args[1:3] == (0, "2")
    assert read.keys == entry_keys(plan_hex(plans)(S2, TOKEN))
    # An identity found under the old secret's key opens with the old secret,
    # and the main read then takes no lease.
    sealed = plan_codec(plans).seal(S1, token_key("id", old), body(), TOKEN)
    steps, found = drive(plan_get(plans)(TOKEN, False), [[0, 1, sealed, 60_000], [0, 0]], clock)
    assert calls(steps)[1].args[1] == 0
    assert found is not None
    assert found.resolved.identity.user_id == "amzn1.account.SECRETUSER"
    steps, _ = drive(plan_put(plans)(TOKEN, resolved(clock, 60)), [0], clock)
    (write,) = calls(steps)
    assert write.keys[0] == token_key("id", plan_hex(plans)(S2, TOKEN))  # the first one writes
    assert write.args[0].startswith(b"3." + key_id(S2))


def test_cache_key_secret_takes_a_list() -> None:
    settings = Settings.from_options(client_id=CLIENT, cache_key_secret=["new", b"old"])
    assert settings.cache_key_secret == b"new"
    assert settings.cache_key_secrets == (b"new", b"old")
    for bad in ([], ["a", "a"], [""], [1]):
        with pytest.raises(ConfigurationError):
            Settings.from_options(client_id=CLIENT, cache_key_secret=bad)


# -- against a real server --------------------------------------------------------


def test_redis_holds_nothing_readable_with_a_configured_secret(
    make_asgi: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    mw = make_asgi(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=S1)
    good, revoked = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    rejected = lwa_emulator.issue_token()
    lwa_emulator.revoke(rejected)
    with uvicorn_server(mw) as base:
        assert call(http, base, "/me", good).status_code == 200
        assert call(http, base, "/me", revoked).status_code == 200
        assert call(http, base, "/me", rejected).status_code == 401
        asyncio.run(mw.revoke(revoked))
    customer = lwa_emulator.customer_for(good)
    for kind in ("id", "rej", "rev"):
        assert keys_of(rclient, kind)
        for key in keys_of(rclient, kind):
            value = rclient.get(key)
            assert value is not None
            assert value.startswith(b"3." + key_id(S1) + b".")
            for plain in (customer.user_id, customer.email, b"revoked", b"invalid_token",
                          b'"v"'):
                plain_bytes = plain.encode() if isinstance(plain, str) else plain
                assert plain_bytes not in value


def test_a_rotated_fleet_shares_entries_and_honours_old_revocations(
    make: Any, lwa_emulator: LWAEmulator, redis_srv: Any, rclient: redis.Redis,
    http: httpx2.Client,
) -> None:
    old, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=S1)
    token, logged_out = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with serve(old) as base:
        assert call(http, base, "/me", token).status_code == 200
        assert call(http, base, "/me", logged_out).status_code == 200
    if isinstance(old, LWAMiddleware):
        asyncio.run(old.revoke(logged_out))
    else:
        old.revoke(logged_out)
    new, serve = make(redis_url=redis_srv.url, redis_timeout=SLACK, cache_key_secret=[S2, S1])
    calls_before = lwa_emulator.calls["tokeninfo"]
    with serve(new) as base:
        assert call(http, base, "/me", token).status_code == 200  # read under S1
        response = call(http, base, "/me", logged_out)
        assert response.status_code == 401  # revoked under S1 only: still refused
        assert "revoked" in response.json()["error_description"]
    assert lwa_emulator.calls["tokeninfo"] == calls_before
    assert new.stats.shared_hits == 1
