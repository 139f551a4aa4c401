"""The token endpoint (``POST /auth/o2/token``) and its rules, as LWA enforces them.

Client secret (body or HTTP Basic), PKCE (S256 and plain), single-use codes
that expire, the redirect_uri check, refresh tokens only for a client that
sent its secret, refresh only for the client that got it, removal of the
app, CORS for browsers, faults, and no secret in the emulator's log.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import Iterator

import httpx2
import pytest
from support.clock import FakeClock

from lwa_middleware.testing import BUILTIN_CUSTOMERS, Fault, LWAEmulator

from .emulator_support import (
    EPOCH,
    INVALID_TOKEN,
    REDIRECT,
    TOKEN,
    error_of,
    exchange,
    get_code,
    make_client,
    pkce_pair,
    profile,
    refresh,
    tokeninfo,
)

OTHER_CLIENT = "amzn1.application-oa2-client.other"
ADA, GRACE = BUILTIN_CUSTOMERS[0], BUILTIN_CUSTOMERS[1]


def sign_in_with_secret(c: httpx2.Client, lwa: LWAEmulator, **code_fields: str) -> dict[str, str]:
    body = exchange(c, lwa, get_code(c, lwa, **code_fields), client_secret=lwa.client_secret)
    assert body.status_code == 200, body.text
    result: dict[str, str] = body.json()
    return result


@pytest.fixture
def clocked() -> Iterator[tuple[LWAEmulator, FakeClock]]:
    clock = FakeClock(EPOCH)
    with LWAEmulator(redirect_uris=[REDIRECT], clock=clock) as lwa:
        yield lwa, clock


# -- the code grant ----------------------------------------------------------------


def test_code_grant_with_the_secret_in_the_body(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin, customer="1", scope="profile postal_code")
    response = exchange(client, signin, code, client_secret=signin.client_secret)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert list(body) == ["access_token", "refresh_token", "token_type", "expires_in"]
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert TOKEN.fullmatch(body["access_token"])
    assert len(body["access_token"]) >= 350
    assert body["refresh_token"].startswith("Atzr|")
    assert len(body["refresh_token"].encode()) <= 2048
    info = tokeninfo(client, signin, body["access_token"]).json()
    assert info["aud"] == signin.client_id
    assert info["user_id"] == GRACE.user_id
    assert profile(client, signin, body["access_token"]).json()["postal_code"] == (
        GRACE.postal_code
    )
    assert signin.calls == Counter(token=1, tokeninfo=1, profile=1)


def test_code_grant_with_http_basic(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin)
    # The client id may be left out of the body when Basic names it.
    response = exchange(
        client, signin, code, client_id=None, auth=(signin.client_id, signin.client_secret)
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"].startswith("Atzr|")

    code = get_code(client, signin)
    wrong = exchange(client, signin, code, auth=(signin.client_id, "not-the-secret"))
    assert wrong.status_code == 401
    assert error_of(wrong) == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    # Authentication failed before the code was looked at: it still works.
    assert exchange(client, signin, code, client_secret=signin.client_secret).status_code == 200

    code = get_code(client, signin)
    both = exchange(
        client,
        signin,
        code,
        client_secret=signin.client_secret,
        auth=(signin.client_id, signin.client_secret),
    )
    assert both.status_code == 400
    assert error_of(both) == "invalid_request"
    other = exchange(client, signin, code, client_id=OTHER_CLIENT, auth=(signin.client_id, "x"))
    assert other.status_code == 401
    garbled = client.post(
        signin.token_url,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers={"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    )
    assert garbled.status_code == 401
    assert error_of(garbled) == "invalid_client"


@pytest.mark.parametrize("secret", ["not-the-secret", ""])
def test_wrong_secret_is_invalid_client(
    signin: LWAEmulator, client: httpx2.Client, secret: str
) -> None:
    code = get_code(client, signin)
    response = exchange(client, signin, code, client_secret=secret)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert "www-authenticate" not in response.headers
    assert secret not in response.text or not secret


def test_unknown_client_is_invalid_client(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin)
    response = exchange(client, signin, code, client_id=OTHER_CLIENT, client_secret="x")
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    missing = exchange(client, signin, code, client_id=None, client_secret=signin.client_secret)
    assert missing.status_code == 400
    assert error_of(missing) == "invalid_request"


def test_missing_secret_gives_no_refresh_token(signin: LWAEmulator, client: httpx2.Client) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(client, signin, code, code_verifier=verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in"]
    assert tokeninfo(client, signin, body["access_token"]).status_code == 200


def test_neither_secret_nor_verifier_is_refused(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin)
    response = exchange(client, signin, code)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


# -- PKCE ------------------------------------------------------------------------------


def test_pkce_rfc7636_example(signin: LWAEmulator, client: httpx2.Client) -> None:
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_pair(verifier)[1] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    code = get_code(
        client,
        signin,
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method="S256",
    )
    assert exchange(client, signin, code, code_verifier=verifier).status_code == 200


@pytest.mark.parametrize("method", ["plain", None], ids=["plain", "method-absent-means-plain"])
def test_pkce_plain(signin: LWAEmulator, client: httpx2.Client, method: str | None) -> None:
    verifier = "p" * 43
    fields = {"code_challenge": verifier}
    if method:
        fields["code_challenge_method"] = method
    code = get_code(client, signin, **fields)
    assert exchange(client, signin, code, code_verifier=verifier).status_code == 200
    # The S256 challenge of the verifier is not the plain one.
    code = get_code(client, signin, **fields)
    hashed = exchange(client, signin, code, code_verifier=pkce_pair(verifier)[1])
    assert error_of(hashed) == "invalid_grant"


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(pkce_pair()[0], id="another-verifier"),
        pytest.param("x" * 42, id="too-short"),
        pytest.param("", id="empty"),
    ],
)
def test_wrong_verifier_is_invalid_grant_and_burns_the_code(
    signin: LWAEmulator, client: httpx2.Client, verifier: str
) -> None:
    right, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(client, signin, code, code_verifier=verifier)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert error_of(exchange(client, signin, code, code_verifier=right)) == "invalid_grant"


def test_challenge_needs_the_verifier_even_with_the_secret(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(client, signin, code, client_secret=signin.client_secret)
    assert error_of(response) == "invalid_grant"
    # With both, a confidential client with PKCE gets a refresh token.
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    both = exchange(
        client, signin, code, client_secret=signin.client_secret, code_verifier=verifier
    )
    assert both.status_code == 200
    assert "refresh_token" in both.json()


def test_verifier_without_a_challenge_is_invalid_grant(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    code = get_code(client, signin)
    response = exchange(client, signin, code, code_verifier=pkce_pair()[0])
    assert error_of(response) == "invalid_grant"


# -- codes: single use, short lived, bound to client and redirect_uri -----------------


def test_reused_code_is_invalid_grant(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin)
    first = exchange(client, signin, code, client_secret=signin.client_secret)
    assert first.status_code == 200
    again = exchange(client, signin, code, client_secret=signin.client_secret)
    assert again.status_code == 400
    assert error_of(again) == "invalid_grant"
    assert code not in again.text


def test_code_expires_after_five_minutes(
    clocked: tuple[LWAEmulator, FakeClock], client: httpx2.Client
) -> None:
    lwa, clock = clocked
    fresh = get_code(client, lwa)
    stale = get_code(client, lwa)
    clock.advance(299)
    assert exchange(client, lwa, fresh, client_secret=lwa.client_secret).status_code == 200
    clock.advance(1)
    expired = exchange(client, lwa, stale, client_secret=lwa.client_secret)
    assert expired.status_code == 400
    assert error_of(expired) == "invalid_grant"


def test_access_token_lives_an_hour(
    clocked: tuple[LWAEmulator, FakeClock], client: httpx2.Client
) -> None:
    lwa, clock = clocked
    body = sign_in_with_secret(client, lwa)
    clock.advance(3599)
    assert tokeninfo(client, lwa, body["access_token"]).json()["exp"] == 1
    clock.advance(1)
    assert tokeninfo(client, lwa, body["access_token"]).json() == INVALID_TOKEN
    # The refresh token outlives it.
    renewed = refresh(client, lwa, body["refresh_token"])
    assert tokeninfo(client, lwa, renewed.json()["access_token"]).json()["exp"] == 3600


def test_access_token_lifetime_shortens_code_and_refresh_tokens(client: httpx2.Client) -> None:
    clock = FakeClock(EPOCH)
    with LWAEmulator(redirect_uris=[REDIRECT], clock=clock, access_token_lifetime=90) as lwa:
        body = sign_in_with_secret(client, lwa)
        assert body["expires_in"] == 90
        assert tokeninfo(client, lwa, body["access_token"]).json()["exp"] == 90
        clock.advance(90)
        assert tokeninfo(client, lwa, body["access_token"]).json() == INVALID_TOKEN
        renewed = refresh(client, lwa, body["refresh_token"]).json()
        assert renewed["expires_in"] == 90
        assert tokeninfo(client, lwa, renewed["access_token"]).json()["exp"] == 90
        # Minted tokens keep their own expires_in.
        assert tokeninfo(client, lwa, lwa.issue_token()).json()["exp"] == 3600


@pytest.mark.parametrize("lifetime", [0, -1, float("nan"), float("inf"), True, "60"])
def test_access_token_lifetime_must_be_positive(lifetime: object) -> None:
    with pytest.raises(ValueError, match="access_token_lifetime"):
        LWAEmulator(access_token_lifetime=lifetime)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:9/other", REDIRECT + "/", "http://localhost:9/callback"],
)
def test_wrong_redirect_uri_is_invalid_grant(
    signin: LWAEmulator, client: httpx2.Client, redirect_uri: str
) -> None:
    code = get_code(client, signin)
    response = exchange(
        client, signin, code, redirect_uri=redirect_uri, client_secret=signin.client_secret
    )
    assert error_of(response) == "invalid_grant"
    # A failed exchange burns the code, as a one-time code should.
    assert error_of(exchange(client, signin, code, client_secret=signin.client_secret)) == (
        "invalid_grant"
    )
    code = get_code(client, signin)
    missing = exchange(client, signin, code, redirect_uri=None, client_secret=signin.client_secret)
    assert error_of(missing) == "invalid_request"


def test_code_of_another_client_is_invalid_grant(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    secret = signin.add_client(OTHER_CLIENT, redirect_uris=[REDIRECT])
    code = get_code(client, signin)
    response = exchange(client, signin, code, client_id=OTHER_CLIENT, client_secret=secret)
    assert response.status_code == 400  # S8: code-exchange errors are HTTP 400
    assert error_of(response) == "invalid_grant"


def test_unknown_or_missing_grant(signin: LWAEmulator, client: httpx2.Client) -> None:
    for grant_type in ("password", "client_credentials", "implicit"):
        response = client.post(
            signin.token_url, data={"grant_type": grant_type, "client_id": signin.client_id}
        )
        assert response.status_code == 400
        assert error_of(response) == "unsupported_grant_type"
    response = client.post(signin.token_url, data={"client_id": signin.client_id})
    assert error_of(response) == "invalid_request"
    assert error_of(exchange(client, signin, "", client_secret=signin.client_secret)) == (
        "invalid_request"
    )
    assert error_of(exchange(client, signin, "made-up", client_secret=signin.client_secret)) == (
        "invalid_grant"
    )


# -- refresh tokens ----------------------------------------------------------------


def test_refresh_token_grant(signin: LWAEmulator, client: httpx2.Client) -> None:
    body = sign_in_with_secret(client, signin, customer="2", scope="profile:user_id")
    renewed = refresh(client, signin, body["refresh_token"])
    assert renewed.status_code == 200
    assert renewed.headers["cache-control"] == "no-store"
    assert renewed.headers["pragma"] == "no-cache"
    new = renewed.json()
    assert list(new) == ["access_token", "refresh_token", "token_type", "expires_in"]
    assert new["refresh_token"] == body["refresh_token"]
    assert new["access_token"] != body["access_token"]
    turing = BUILTIN_CUSTOMERS[2]
    assert profile(client, signin, new["access_token"]).json() == {"user_id": turing.user_id}
    assert tokeninfo(client, signin, body["access_token"]).status_code == 200

    basic = client.post(
        signin.token_url,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=(signin.client_id, signin.client_secret),
    )
    assert basic.status_code == 200


def test_refresh_requires_the_secret(signin: LWAEmulator, client: httpx2.Client) -> None:
    token = sign_in_with_secret(client, signin)["refresh_token"]
    missing = refresh(client, signin, token, client_secret=None)
    assert missing.status_code == 400
    assert error_of(missing) == "invalid_request"
    wrong = refresh(client, signin, token, client_secret="not-the-secret")
    assert wrong.status_code == 401
    assert error_of(wrong) == "invalid_client"
    assert error_of(refresh(client, signin, "Atzr|made-up")) == "invalid_grant"
    assert error_of(refresh(client, signin, "")) == "invalid_request"


def test_refresh_token_of_another_client_is_invalid_grant(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    token = sign_in_with_secret(client, signin)["refresh_token"]
    secret = signin.add_client(OTHER_CLIENT)
    response = refresh(client, signin, token, client_id=OTHER_CLIENT, client_secret=secret)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


# -- the customer removes the app -------------------------------------------------


def test_removed_app_refuses_its_tokens(signin: LWAEmulator, client: httpx2.Client) -> None:
    ada = sign_in_with_secret(client, signin, customer="0")
    renewed = refresh(client, signin, ada["refresh_token"]).json()["access_token"]
    minted = signin.issue_token(customer=ADA)
    pending = get_code(client, signin, customer="0")
    grace = sign_in_with_secret(client, signin, customer="1")
    secret = signin.add_client(OTHER_CLIENT, redirect_uris=[REDIRECT])
    elsewhere = exchange(
        client,
        signin,
        get_code(client, signin, customer="0", client_id=OTHER_CLIENT),
        client_id=OTHER_CLIENT,
        client_secret=secret,
    ).json()

    # Ada's access tokens (two from sign-in, one minted) and her refresh token.
    assert signin.remove_app(ADA) == 4

    for token in (ada["access_token"], renewed, minted):
        assert tokeninfo(client, signin, token).json() == INVALID_TOKEN
        assert profile(client, signin, token).status_code == 400
    assert error_of(refresh(client, signin, ada["refresh_token"])) == "invalid_grant"
    assert error_of(exchange(client, signin, pending, client_secret=signin.client_secret)) == (
        "invalid_grant"
    )
    # Grace's tokens, and Ada's for another app, still work.
    assert tokeninfo(client, signin, grace["access_token"]).status_code == 200
    assert refresh(client, signin, grace["refresh_token"]).status_code == 200
    assert tokeninfo(client, signin, elsewhere["access_token"]).status_code == 200
    assert (
        refresh(
            client, signin, elsewhere["refresh_token"], client_id=OTHER_CLIENT, client_secret=secret
        ).status_code
        == 200
    )
    # Signing in again gets new tokens that work.
    again = sign_in_with_secret(client, signin, customer="0")
    assert tokeninfo(client, signin, again["access_token"]).status_code == 200
    # By user id, and for the other app: two access tokens, one refresh token.
    assert signin.remove_app(ADA.user_id, client_id=OTHER_CLIENT) == 3
    assert tokeninfo(client, signin, elsewhere["access_token"]).json() == INVALID_TOKEN
    assert signin.remove_app(ADA.user_id, client_id=OTHER_CLIENT) == 0


# -- browsers: CORS ----------------------------------------------------------------


@pytest.fixture
def cors_signin() -> Iterator[LWAEmulator]:
    """An emulator with the opt-in Amazon does not document: CORS on the token endpoint."""
    with LWAEmulator(redirect_uris=[REDIRECT], token_cors=True) as lwa:
        yield lwa


def test_cors_for_the_origins_of_registered_return_urls_with_the_opt_in(
    cors_signin: LWAEmulator, client: httpx2.Client
) -> None:
    signin = cors_signin
    origin = "http://127.0.0.1:9"
    verifier, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    answer = client.post(
        signin.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": signin.client_id,
            "code_verifier": verifier,
        },
        headers={"Origin": origin},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-credentials" not in answer.headers
    assert "origin" in answer.headers["vary"].lower()
    # Errors are readable by the page too.
    replay = exchange(client, signin, code, code_verifier=verifier)
    assert "access-control-allow-origin" not in replay.headers  # no Origin, no CORS
    replay = client.post(
        signin.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": signin.client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers={"Origin": origin},
    )
    assert error_of(replay) == "invalid_grant"
    assert replay.headers["access-control-allow-origin"] == origin

    preflight = client.options(
        signin.token_url,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

    for stranger in ("http://127.0.0.1:10", "https://evil.example", "null"):
        refused = client.options(
            signin.token_url,
            headers={"Origin": stranger, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in refused.headers
        posted = exchange(client, signin, "x", code_verifier=verifier)
        posted = client.post(
            signin.token_url,
            data={"grant_type": "refresh_token", "client_id": signin.client_id},
            headers={"Origin": stranger},
        )
        assert "access-control-allow-origin" not in posted.headers


# -- faults ------------------------------------------------------------------------


def test_faults_at_the_token_endpoint(signin: LWAEmulator, client: httpx2.Client) -> None:
    code = get_code(client, signin)
    signin.inject(Fault.SERVER_ERROR, endpoint="token", times=1)
    failed = exchange(client, signin, code, client_secret=signin.client_secret)
    assert failed.status_code == 500
    assert failed.json()["error"] == "ServerError"
    signin.inject(Fault.UNAVAILABLE, endpoint="token", times=1, retry_after=4)
    busy = exchange(client, signin, code, client_secret=signin.client_secret)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "4"
    for kind in (Fault.BAD_JSON, Fault.WRONG_TYPES):
        signin.inject(kind, endpoint="token", times=1)
        broken = exchange(client, signin, code, client_secret=signin.client_secret)
        assert broken.status_code == 200
        if kind is Fault.WRONG_TYPES:
            assert not isinstance(broken.json()["access_token"], str)
        else:
            with pytest.raises(ValueError):
                broken.json()
    # A faulted request was not processed: the code is still good.
    assert exchange(client, signin, code, client_secret=signin.client_secret).status_code == 200
    assert signin.calls["token"] == 5

    # Faults without an endpoint stay on tokeninfo and profile.
    signin.inject(Fault.SERVER_ERROR)
    assert sign_in_with_secret(client, signin)["token_type"] == "bearer"
    signin.clear_faults()

    signin.inject(Fault.RESET, endpoint="token", times=1)
    with pytest.raises(httpx2.TransportError):
        exchange(client, signin, get_code(client, signin), client_secret=signin.client_secret)
    signin.inject(Fault.HANG, endpoint="token")
    with make_client(timeout=0.5) as impatient, pytest.raises(httpx2.ReadTimeout):
        exchange(impatient, signin, get_code(client, signin), client_secret=signin.client_secret)
    signin.clear_faults()
    assert sign_in_with_secret(client, signin)["token_type"] == "bearer"


# -- nothing secret in the emulator's log ---------------------------------------------


def test_no_code_verifier_secret_or_token_is_logged(
    signin: LWAEmulator,
    client: httpx2.Client,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen = [signin.client_secret]
    verifier, challenge = pkce_pair()
    code = get_code(client, signin, code_challenge=challenge, code_challenge_method="S256")
    body = exchange(
        client, signin, code, code_verifier=verifier, client_secret=signin.client_secret
    ).json()
    secrets_seen += [code, verifier, body["access_token"], body["refresh_token"]]
    renewed = refresh(client, signin, body["refresh_token"]).json()
    secrets_seen.append(renewed["access_token"])
    # Basic, failures and a replay; and a careless client that puts it all in the URL.
    basic_code = get_code(client, signin)
    secrets_seen.append(basic_code)
    exchange(client, signin, basic_code, auth=(signin.client_id, signin.client_secret))
    exchange(client, signin, basic_code, auth=(signin.client_id, signin.client_secret))
    exchange(client, signin, code, code_verifier=verifier, client_secret="wrong-" + verifier)
    careless = client.post(
        signin.token_url,
        params={
            "code": code,
            "code_verifier": verifier,
            "client_secret": signin.client_secret,
            "refresh_token": body["refresh_token"],
            "access_token": body["access_token"],
        },
    )
    assert careless.status_code == 400
    signin.inject(Fault.HTML, endpoint="token", times=1)
    exchange(client, signin, code, client_secret=signin.client_secret)

    out, err = capfd.readouterr()
    # The emulator's loggers only: httpx, the test's client, logs its own URLs.
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith("lwa_middleware")
    )
    records = [r.target for r in signin.requests]
    assert any("code_verifier=<redacted>" in t for t in records)
    assert any("client_secret=<redacted>" in t for t in records)
    for secret in secrets_seen:
        for where in (logged, out, err, repr(signin), repr(signin.requests)):
            assert secret not in where
