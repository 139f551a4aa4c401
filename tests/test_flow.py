"""The sans-IO resolution flow, driven by hand: no sockets, fixed clocks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.private import (
    Flow,
    Resolved,
    UpstreamFailure,
    UpstreamRequest,
    UpstreamResponse,
    infer_scopes,
    looks_like_lwa_token,
    resolution_flow,
    seconds_field,
)

from lwa_middleware import InvalidToken, UpstreamUnavailable

CLIENT = "amzn1.application-oa2-client.ours"
OTHER = "amzn1.application-oa2-client.theirs"
USER = "amzn1.account.AFUSER000000000000000000001"
LWA_TOKEN = "Atza|" + "T" * 400
SHORT_TOKEN = "not-an-lwa-shaped-token"
TOKENINFO_URL = "https://lwa.test/auth/o2/tokeninfo"
PROFILE_URL = "https://lwa.test/user/profile"
MONO, WALL = 1000.0, 1_700_000_000.0


def make_flow(
    token: str = LWA_TOKEN,
    *,
    client_ids: frozenset[str] = frozenset({CLIENT}),
    want_profile: bool = True,
    parallel: bool | None = None,
) -> Flow:
    return resolution_flow(
        token,
        tokeninfo_url=TOKENINFO_URL,
        profile_url=PROFILE_URL,
        client_ids=client_ids,
        want_profile=want_profile,
        parallel=looks_like_lwa_token(token) if parallel is None else parallel,
        monotonic=lambda: MONO,
        wall=lambda: WALL,
    )


def ok(payload: Any, status: int = 200, retry_after: str | None = None) -> UpstreamResponse:
    return UpstreamResponse(status, json.dumps(payload).encode(), retry_after)


def info(aud: str = CLIENT, exp: Any = 3600, user_id: Any = USER, **extra: Any) -> UpstreamResponse:
    return ok(
        {"iss": "https://www.amazon.com", "user_id": user_id, "aud": aud, "exp": exp, **extra}
    )


def profile(**fields: Any) -> UpstreamResponse:
    return ok({"user_id": USER, **fields})


REJECTED = ok({"error": "invalid_token", "error_description": "bad"}, status=400)
NO_SCOPE = ok({"error": "insufficient_scope", "error_description": "no"}, status=401)


def drive(flow: Flow, *batches: list[Any]) -> Resolved:
    """Answer each yielded batch with the next list of outcomes; return the result."""
    requests = next(flow)
    for outcomes in batches:
        assert len(outcomes) == len(requests)
        try:
            requests = flow.send(outcomes)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
    raise AssertionError(f"the flow wants more: {[r.endpoint for r in requests]}")


# -- batching ------------------------------------------------------------------


def test_lwa_shaped_token_asks_tokeninfo_and_profile_in_one_batch() -> None:
    flow = make_flow(LWA_TOKEN)
    batch = next(flow)
    assert [r.endpoint for r in batch] == ["tokeninfo", "profile"]
    tokeninfo, prof = batch
    assert tokeninfo.url == TOKENINFO_URL
    assert prof.url == PROFILE_URL
    # The token travels in headers, never in a URL.
    assert tokeninfo.headers["x-amz-access-token"] == LWA_TOKEN
    assert prof.headers["authorization"] == "Bearer " + LWA_TOKEN
    for request in batch:
        assert LWA_TOKEN not in request.url
        assert LWA_TOKEN not in repr(request)
    with pytest.raises(StopIteration) as stop:
        flow.send([info(), profile(name="Ada", email="ada@example.com")])
    resolved = stop.value.value
    assert resolved.identity.name == "Ada"


def test_other_shapes_ask_tokeninfo_alone_first() -> None:
    flow = make_flow(SHORT_TOKEN)
    batch = next(flow)
    assert [r.endpoint for r in batch] == ["tokeninfo"]
    second = flow.send([info()])
    assert [r.endpoint for r in second] == ["profile"]
    assert second[0].headers["authorization"] == "Bearer " + SHORT_TOKEN
    with pytest.raises(StopIteration) as stop:
        flow.send([profile(name="Ada")])
    assert stop.value.value.identity.user_id == USER


def test_sequential_rejection_never_asks_the_profile() -> None:
    flow = make_flow(SHORT_TOKEN)
    next(flow)
    with pytest.raises(InvalidToken) as excinfo:
        flow.send([REJECTED])
    assert excinfo.value.remember is True


def test_want_profile_false_uses_tokeninfo_alone() -> None:
    flow = make_flow(LWA_TOKEN, want_profile=False)
    batch = next(flow)
    assert [r.endpoint for r in batch] == ["tokeninfo"]
    resolved = drive(make_flow(LWA_TOKEN, want_profile=False), [info(exp=100)])
    assert resolved.has_profile is False
    assert resolved.identity.user_id == USER
    assert resolved.identity.scopes == frozenset({"profile:user_id"})
    assert resolved.identity.name is None
    assert resolved.identity.email is None
    assert resolved.identity.client_id == CLIENT
    assert resolved.expires_mono == MONO + 100
    assert resolved.identity.expires_at == WALL + 100


# -- aud -----------------------------------------------------------------------


@pytest.mark.parametrize("token", [LWA_TOKEN, SHORT_TOKEN])
def test_aud_mismatch_is_invalid_token_and_profile_is_ignored(token: str) -> None:
    flow = make_flow(token)
    batch = next(flow)
    outcomes: list[Any] = [info(aud=OTHER)]
    if len(batch) == 2:
        outcomes.append(profile(name="Mallory", email="m@example.com"))
    with pytest.raises(InvalidToken) as excinfo:
        flow.send(outcomes)
    assert "Mallory" not in str(excinfo.value)


def test_several_client_ids() -> None:
    ids = frozenset({CLIENT, OTHER})
    for aud in (CLIENT, OTHER):
        resolved = drive(make_flow(client_ids=ids), [info(aud=aud), profile(name="Ada")])
        assert resolved.identity.client_id == aud
    with pytest.raises(InvalidToken):
        drive(make_flow(client_ids=ids), [info(aud="amzn1.application-oa2-client.x"), profile()])


# -- tokeninfo answers ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("error", ["invalid_token", "invalid_request", "expired_token"])
def test_tokeninfo_rejection_is_invalid_token(status: int, error: str) -> None:
    rejection = ok({"error": error, "error_description": "x"}, status=status)
    with pytest.raises(InvalidToken):
        drive(make_flow(), [rejection, profile()])


@pytest.mark.parametrize(
    "outcome",
    [
        ok({"error": "ServerError"}, status=500),
        ok({"error": "ServiceUnavailable"}, status=503),
        ok({"error": "TooManyRequests"}, status=429),
        ok({"error": "x"}, status=403),
        ok({"error": "x"}, status=404),
        UpstreamResponse(302, b""),
        UpstreamResponse(200, b"<html>502 Bad Gateway</html>"),
        UpstreamResponse(200, b'{"aud": "amzn1'),
        UpstreamResponse(200, b"\xff\xfe"),
        UpstreamResponse(200, b"[1, 2]"),
        UpstreamResponse(400, b"<html>bad request</html>"),
        ok({"error": "something_else"}, status=400),
        info(aud=123),
        info(aud=None),
        info(user_id=None),
        info(user_id=""),
        info(user_id=5),
        info(exp=[1]),
        info(exp=None),
        info(exp=True),
        info(exp="soon"),
        ok({"user_id": USER, "aud": CLIENT}),
        UpstreamFailure("timed out"),
        UpstreamFailure("connection failed"),
        UpstreamFailure("response too large"),
    ],
)
def test_tokeninfo_failures_are_upstream_unavailable(outcome: Any) -> None:
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(), [outcome, profile(name="Ada")])
    assert LWA_TOKEN not in str(excinfo.value)


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), "NaN", "Infinity", "inf"])
def test_non_finite_exp_is_nonsense(exp: Any) -> None:
    # json.loads accepts NaN and Infinity; a token that "never expires" or has
    # no comparable expiry is an unusable answer, not a valid token.
    body = json.dumps({"user_id": USER, "aud": CLIENT, "exp": exp}).encode()
    with pytest.raises((UpstreamUnavailable, InvalidToken)):
        drive(make_flow(), [UpstreamResponse(200, body), profile(name="Ada")])


def test_retry_after_is_propagated() -> None:
    throttled = ok({"error": "TooManyRequests"}, status=429, retry_after="7")
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(), [throttled, profile()])
    assert excinfo.value.retry_after == 7
    unavailable = ok({"error": "ServiceUnavailable"}, status=503, retry_after=" 12 ")
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(), [unavailable, profile()])
    assert excinfo.value.retry_after == 12


@pytest.mark.parametrize("value", [None, "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "-3"])
def test_unusable_retry_after_leaves_the_default(value: str | None) -> None:
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(), [ok({}, status=503, retry_after=value), profile()])
    assert excinfo.value.retry_after is None


def test_exp_as_string_works() -> None:
    resolved = drive(make_flow(), [info(exp="3599"), profile(name="Ada")])
    assert resolved.expires_mono == MONO + 3599
    assert resolved.identity.expires_at == WALL + 3599


def test_expiry_is_measured_from_before_tokeninfo() -> None:
    clock = iter([MONO, MONO + 50.0])  # a later reading must not be used
    flow = resolution_flow(
        LWA_TOKEN,
        tokeninfo_url=TOKENINFO_URL,
        profile_url=PROFILE_URL,
        client_ids=frozenset({CLIENT}),
        monotonic=lambda: next(clock),
        wall=lambda: WALL,
    )
    resolved = drive(flow, [info(exp=60), profile()])
    assert resolved.expires_mono == MONO + 60


def test_absurd_lifetimes_are_clamped() -> None:
    # A broken upstream must not pin an identity in a cache for ever.
    resolved = drive(make_flow(), [info(exp=10**12), profile()])
    assert resolved.expires_mono <= MONO + 86_400
    assert resolved.identity.expires_at <= WALL + 86_400


@pytest.mark.parametrize("exp", [0, -1, "0", -3600, 0.0])
def test_exp_not_positive_is_invalid_token(exp: Any) -> None:
    with pytest.raises(InvalidToken):
        drive(make_flow(), [info(exp=exp), profile()])


# -- profile answers -----------------------------------------------------------


def test_legacy_profile_shape() -> None:
    legacy = ok(
        {
            "Profile": {
                "CustomerId": USER,
                "Name": "Ada",
                "PrimaryEmail": "ada@example.com",
                "PostalCode": "SW1A 1AA",
            }
        }
    )
    resolved = drive(make_flow(), [info(), legacy])
    identity = resolved.identity
    assert (identity.user_id, identity.name, identity.email, identity.postal_code) == (
        USER,
        "Ada",
        "ada@example.com",
        "SW1A 1AA",
    )
    assert identity.scopes == frozenset({"profile", "postal_code"})


def test_legacy_profile_with_user_id_only() -> None:
    resolved = drive(make_flow(), [info(), ok({"Profile": {"CustomerId": USER}})])
    assert resolved.identity.scopes == frozenset({"profile:user_id"})


def test_profile_user_id_mismatch_is_not_remembered() -> None:
    other = ok({"user_id": "amzn1.account.SOMEBODYELSE00000000000000", "name": "Eve"})
    with pytest.raises(InvalidToken) as excinfo:
        drive(make_flow(), [info(), other])
    assert excinfo.value.remember is False
    with pytest.raises(InvalidToken) as excinfo:
        drive(make_flow(), [info(), ok({"name": "Eve"})])
    assert excinfo.value.remember is False


def test_profile_insufficient_scope_gives_an_identity_without_scopes() -> None:
    resolved = drive(make_flow(), [info(), NO_SCOPE])
    assert resolved.has_profile is True
    assert resolved.identity.user_id == USER
    assert resolved.identity.scopes == frozenset()
    assert resolved.identity.name is None


@pytest.mark.parametrize("status", [400, 401])
def test_profile_says_invalid_token_after_tokeninfo_said_yes(status: int) -> None:
    # "Obtain Customer Profile Information": 400 invalid_token; 401 is the
    # RFC 6750 shape, read the same.
    revoked = ok({"error": "invalid_token", "request_id": "r-1"}, status=status)
    with pytest.raises(InvalidToken) as excinfo:
        drive(make_flow(), [info(), revoked])
    assert excinfo.value.remember is True


def test_profile_invalid_request_is_upstream_unavailable() -> None:
    # Our request was malformed: not the token's fault, never remembered.
    malformed = ok({"error": "invalid_request", "request_id": "r-2"}, status=400)
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(), [info(), malformed])
    assert "invalid_request" in excinfo.value.description


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(3600, 3600.0), ("3600", 3600.0), (" 3599 ", 3599.0), ("12.5", 12.5), (10**9, 86_400.0)],
)
def test_seconds_field_takes_numbers_and_numeric_strings(value: Any, seconds: float) -> None:
    assert seconds_field(value, "expires_in") == seconds


@pytest.mark.parametrize(
    "value", ["", "soon", "1_000", "1e3", "nan", "inf", "0x10", None, True, [3600], {"s": 1}]
)
def test_seconds_field_refuses_everything_else(value: Any) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        seconds_field(value, "expires_in")


@pytest.mark.parametrize(
    "outcome",
    [
        ok({"error": "ServerError"}, status=500),
        ok({"error": "TooManyRequests"}, status=429),
        UpstreamResponse(200, b"not json"),
        UpstreamResponse(200, b'"a string"'),
        ok({"user_id": 5}),
        ok({"user_id": USER, "name": ["Ada"]}),
        ok({"user_id": USER, "email": False}),
        ok({"user_id": USER, "postal_code": 98109}),
        UpstreamResponse(401, b"<html/>"),
        ok({"error": "other"}, status=403),
        UpstreamFailure("transport error: ReadError"),
    ],
)
def test_profile_failures_are_upstream_unavailable(outcome: Any) -> None:
    with pytest.raises(UpstreamUnavailable):
        drive(make_flow(), [info(), outcome])


def test_profile_throttle_retry_after_is_propagated() -> None:
    throttled = ok({"error": "TooManyRequests"}, status=429, retry_after="9")
    with pytest.raises(UpstreamUnavailable) as excinfo:
        drive(make_flow(SHORT_TOKEN), [info()], [throttled])
    assert excinfo.value.retry_after == 9


def test_profile_failure_does_not_matter_when_aud_is_wrong() -> None:
    # The aud check comes first: a foreign token is a 401, not a 503.
    with pytest.raises(InvalidToken):
        drive(make_flow(), [info(aud=OTHER), UpstreamFailure("timed out")])


# -- scope inference -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"profile:user_id"}),
        ({"name": "Ada"}, {"profile"}),
        ({"email": "a@example.com"}, {"profile"}),
        ({"name": "Ada", "email": "a@example.com"}, {"profile"}),
        ({"postal_code": "12345"}, {"profile:user_id", "postal_code"}),
        ({"name": "Ada", "email": "a@e.com", "postal_code": "1"}, {"profile", "postal_code"}),
    ],
)
def test_scope_inference_through_the_flow(fields: dict[str, str], expected: set[str]) -> None:
    resolved = drive(make_flow(), [info(), profile(**fields)])
    assert resolved.identity.scopes == frozenset(expected)
    assert resolved.identity.name == fields.get("name")
    assert resolved.identity.email == fields.get("email")
    assert resolved.identity.postal_code == fields.get("postal_code")


def test_infer_scopes_directly() -> None:
    assert infer_scopes(user_id="u", name=None, email=None, postal_code=None) == {"profile:user_id"}
    assert infer_scopes(user_id="u", name="n", email=None, postal_code="p") == {
        "profile",
        "postal_code",
    }
    assert infer_scopes(user_id=None, name=None, email=None, postal_code=None) == frozenset()


def test_upstream_request_repr_hides_headers() -> None:
    request = UpstreamRequest("tokeninfo", TOKENINFO_URL, {"x-amz-access-token": LWA_TOKEN})
    assert LWA_TOKEN not in repr(request)
    assert "T" * 40 not in str(request)


def _flow_with(info_body: bytes, *, status: int = 200, retry_after: str | None = None) -> None:
    flow = resolution_flow(
        "Atza|x",
        tokeninfo_url="t",
        profile_url="p",
        client_ids=frozenset({"c"}),
        parallel=False,
    )
    next(flow)
    flow.send([UpstreamResponse(status, info_body, retry_after)])


def test_absurd_numbers_from_lwa_are_a_503_not_a_crash() -> None:
    body = b'{"aud": "c", "user_id": "u", "exp": 1' + b"0" * 400 + b"}"
    with pytest.raises(UpstreamUnavailable):
        _flow_with(body)
    for header in ("\u00b2", "9" * 5000):
        with pytest.raises(UpstreamUnavailable) as caught:
            _flow_with(b"{}", status=503, retry_after=header)
        assert caught.value.retry_after is None
