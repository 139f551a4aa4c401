"""The sans-IO request decision: ``Gate.decide`` verdicts and the ``Gate.hit`` fast path."""

from __future__ import annotations

import time
from hashlib import sha256
from typing import Any

import pytest
from support.clock import FakeClock
from support.private import (
    ANONYMOUS,
    PASS,
    Gate,
    Policy,
    Resolve,
    Resolver,
    Settings,
    gate_resolver,
    gate_stats,
)

from lwa_middleware import Identity, InvalidRequest, InvalidToken, MissingToken

CLIENT = "amzn1.application-oa2-client.gate"
TOKEN = "Atza|" + "g" * 60
PREFLIGHT = [(b"origin", b"https://a.example"), (b"access-control-request-method", b"GET")]


def gate(clock: FakeClock | None = None, **options: Any) -> Gate:
    options.setdefault("client_id", CLIENT)
    options.setdefault("api_base_url", "http://127.0.0.1:9")
    settings = Settings.from_options(clock=clock or FakeClock(), **options)
    return Gate(settings, Resolver(settings))


REQUIRED = Policy.parse("required")
OPTIONAL = Policy.parse("optional")
ZIP = Policy.parse(["postal_code"])


def test_policy_below_a_root_path() -> None:
    g = gate(routes={"/admin": "required", "/open": "public"}, default="public")
    assert g.policy("/admin") == REQUIRED
    assert g.policy("/svc/admin", "/svc") == REQUIRED
    assert g.policy("/svc/open", "/svc").access == Policy.parse("public").access


def test_opted_in_preflight_passes_without_reading_a_credential() -> None:
    g = gate(allow_preflight=True)
    headers = [*PREFLIGHT, (b"authorization", b"Bearer a b c")]  # malformed: never read
    assert g.decide(REQUIRED, "OPTIONS", headers, b"") is PASS


def test_preflight_not_opted_in_or_incomplete_is_judged_like_any_request() -> None:
    with pytest.raises(MissingToken):
        gate().decide(REQUIRED, "OPTIONS", PREFLIGHT, b"")
    with pytest.raises(MissingToken):  # only one of the two preflight headers
        gate(allow_preflight=True).decide(REQUIRED, "OPTIONS", PREFLIGHT[:1], b"")
    with pytest.raises(MissingToken):  # not OPTIONS
        gate(allow_preflight=True).decide(REQUIRED, "GET", PREFLIGHT, b"")


def test_no_token_is_anonymous_on_optional_and_missing_elsewhere() -> None:
    g = gate()
    assert g.decide(OPTIONAL, "GET", [], b"") is ANONYMOUS
    for policy in (REQUIRED, ZIP):
        with pytest.raises(MissingToken):
            g.decide(policy, "GET", [], b"")


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ([(b"authorization", b"Bearer " + TOKEN.encode())], b""),
        ([(b"x-amz-access-token", TOKEN.encode())], b""),
        ([], b"a=1&access_token=" + TOKEN.replace("|", "%7C").encode()),
    ],
    ids=["bearer", "amz", "query"],
)
def test_a_token_is_resolved_and_its_repr_hides_it(headers: Any, query: bytes) -> None:
    verdict = gate().decide(ZIP, "GET", headers, query)
    assert isinstance(verdict, Resolve)
    assert verdict.token == TOKEN
    assert verdict.policy == ZIP
    assert TOKEN not in repr(verdict)
    assert "g" * 20 not in repr(verdict)


def test_two_tokens_and_malformed_and_oversized_are_refused() -> None:
    g = gate()
    with pytest.raises(InvalidRequest):
        g.decide(REQUIRED, "GET", [(b"authorization", b"Bearer a"), (b"x-amz-access-token", b"b")],
                 b"")
    with pytest.raises(InvalidRequest):
        g.decide(REQUIRED, "GET", [(b"authorization", b"Bearer a b")], b"")
    with pytest.raises(InvalidToken):
        g.decide(REQUIRED, "GET", [(b"authorization", b"Bearer " + b"x" * 3000)], b"")


def test_token_sources_refuse_a_source_that_is_off() -> None:
    header_only = gate(token_sources=("header",))
    assert header_only.headers_allowed
    with pytest.raises(InvalidRequest, match="query string"):
        header_only.decide(REQUIRED, "GET", [], b"access_token=" + TOKEN.encode())
    query_only = gate(token_sources=("query",))
    assert not query_only.headers_allowed
    with pytest.raises(InvalidRequest, match="in headers"):
        query_only.decide(REQUIRED, "GET", [(b"x-amz-access-token", TOKEN.encode())], b"")
    verdict = query_only.decide(REQUIRED, "GET", [], b"access_token=" + TOKEN.encode())
    assert isinstance(verdict, Resolve)


def _cached(g: Gate, clock: FakeClock, scopes: set[str], has_profile: bool, ttl: float) -> None:
    identity = Identity(
        user_id="amzn1.account.GATE", scopes=frozenset(scopes), client_id=CLIENT,
        expires_at=time.time() + 3600,
    )
    cache = gate_resolver(g).cache
    entry = cache.make_entry(identity, clock() + 3600, has_profile, fresh_for=ttl)
    cache.put(sha256(TOKEN.encode()).digest(), entry)


def test_hit_serves_a_fresh_entry_that_holds_the_policy_and_counts_it() -> None:
    clock = FakeClock()
    events: list[str] = []
    g = gate(clock, on_event=lambda name, data: events.append(name))
    assert g.hit(TOKEN.encode(), REQUIRED) is None  # nothing cached
    _cached(g, clock, {"profile", "postal_code"}, has_profile=True, ttl=60)
    entry = g.hit(TOKEN.encode(), ZIP)
    assert entry is not None
    assert g.admit(entry, ZIP) is entry
    assert gate_stats(g).hits == 1
    assert events == ["hit"]
    clock.advance(61)  # past cache_ttl: no longer fresh
    assert g.hit(TOKEN.encode(), ZIP) is None
    assert gate_stats(g).hits == 1


def test_hit_misses_without_the_scopes_the_profile_or_on_revalidate() -> None:
    clock = FakeClock()
    g = gate(clock)
    _cached(g, clock, {"profile:user_id"}, has_profile=False, ttl=60)
    raw = TOKEN.encode()
    assert g.hit(raw, Policy.parse(["profile:user_id"])) is not None  # tokeninfo is enough
    assert g.hit(raw, REQUIRED) is None  # needs the profile it did not fetch
    assert g.hit(raw, ZIP) is None  # lacks the scope
    from lwa_middleware import revalidate

    assert g.hit(raw, revalidate(["profile:user_id"])) is None  # always asks LWA


def test_admit_checks_the_scopes_and_marks_have_names() -> None:
    from lwa_middleware import InsufficientScope

    clock = FakeClock()
    g = gate(clock)
    _cached(g, clock, {"profile"}, has_profile=True, ttl=60)
    entry = gate_resolver(g).cache.peek(sha256(TOKEN.encode()).digest())
    assert entry is not None
    assert g.admit(entry, REQUIRED) is entry
    with pytest.raises(InsufficientScope):
        g.admit(entry, ZIP)
    assert (repr(PASS), repr(ANONYMOUS)) == ("PASS", "ANONYMOUS")
