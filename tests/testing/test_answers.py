"""The emulator answers in Amazon's documented shapes, one test per fact.

Sources (Amazon's pages):

- S1 "Obtain Customer Profile Information",
  developer.amazon.com/docs/login-with-amazon/obtain-customer-profile.html
- S3 "Login with Amazon Access Tokens",
  developer.amazon.com/docs/login-with-amazon/access-token.html
- S5 "Customer Profile", developer.amazon.com/docs/login-with-amazon/customer-profile.html
- S8 "Step 5: Make an Access Token Request from Your App" (Alexa account linking),
  developer.amazon.com/en-US/docs/alexa/account-linking/your-app-to-alexa-step5.html
"""

from __future__ import annotations

import uuid

import httpx2
import pytest
from support.clock import FakeClock

from lwa_middleware.testing import BUILTIN_CUSTOMERS, Fault, LWAEmulator

from .emulator_support import (
    EPOCH,
    INVALID_TOKEN,
    MISSING_TOKEN,
    REDIRECT,
    USER_ID,
    error_of,
    exchange,
    get_code,
    profile,
    profile_error,
    refresh,
    tokeninfo,
)

OTHER = "amzn1.application-oa2-client.other-company"
SISTER = "amzn1.application-oa2-client.same-company"

# -- profile errors (S1) -------------------------------------------------------


def test_profile_answers_400_invalid_token_for_bad_expired_and_revoked_tokens(
    client: httpx2.Client,
) -> None:
    # S1: "400 invalid_token: the token is expired, revoked, malformed or invalid".
    clock = FakeClock(EPOCH)
    with LWAEmulator(clock=clock) as lwa:
        expiring = lwa.issue_token(expires_in=60)
        revoked = lwa.issue_token()
        lwa.revoke(revoked)
        removed = lwa.issue_token(customer=BUILTIN_CUSTOMERS[1])
        lwa.remove_app(BUILTIN_CUSTOMERS[1])
        clock.advance(60)
        for token in (expiring, revoked, removed, "Atza|" + "A" * 400, "garbage"):
            response = profile(client, lwa, token)
            assert response.status_code == 400
            assert profile_error(response) == INVALID_TOKEN
            assert "www-authenticate" not in response.headers


def test_profile_answers_401_only_for_insufficient_scope(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    # S1: "401 insufficient_scope".
    token = lwa_emulator.issue_token(scopes=["alexa::ask_skills:readwrite"])
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 401
    assert profile_error(response)["error"] == "insufficient_scope"


def test_profile_answers_400_invalid_request_without_a_token(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    # S1: "400 invalid_request" (a required parameter is missing).
    response = client.get(lwa_emulator.profile_url)
    assert response.status_code == 400
    assert profile_error(response) == MISSING_TOKEN


def test_profile_server_error_carries_request_id(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    # S1: "500 ServerError"; its error JSON carries request_id like the others.
    lwa_emulator.inject(Fault.SERVER_ERROR, times=2)
    token = lwa_emulator.issue_token()
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 500
    assert profile_error(response)["error"] == "ServerError"
    # Tokeninfo's errors show no request_id in any capture: none is invented.
    response = tokeninfo(client, lwa_emulator, token)
    assert response.status_code == 500
    assert "request_id" not in response.json()


# -- headers on every answer (S1) ----------------------------------------------


def test_every_answer_has_content_language_and_a_request_id(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    # S1: "Content-Language: en-US" (the only language) and x-amzn-RequestId.
    token = signin.issue_token()
    answers = [
        tokeninfo(client, signin, token),
        profile(client, signin, token),
        tokeninfo(client, signin, "Atza|unknown"),
        profile(client, signin, "Atza|unknown"),
        client.get(signin.authorize_url, params={"client_id": signin.client_id}),
        exchange(client, signin, "not-a-code", client_secret=signin.client_secret),
        client.post(signin.base_url + "/_emulator/tokens", json={}),
        client.get(signin.base_url + "/nowhere"),
    ]
    signin.inject(Fault.THROTTLED, endpoint="tokeninfo", times=1)
    answers.append(tokeninfo(client, signin, token))
    ids = set()
    for response in answers:
        assert response.headers["content-language"] == "en-US", response.request.url
        ids.add(uuid.UUID(response.headers["x-amzn-requestid"]))
    assert len(ids) == len(answers)  # one per answer


# -- expires_in (S3, S8) -------------------------------------------------------


def test_expires_in_is_always_an_integer(client: httpx2.Client) -> None:
    # S3: expires_in is a number of seconds; never a float from the emulator.
    clock = FakeClock(EPOCH)
    with LWAEmulator(redirect_uris=[REDIRECT], clock=clock, access_token_lifetime=90.7) as lwa:
        body = exchange(client, lwa, get_code(client, lwa), client_secret=lwa.client_secret)
        granted = body.json()
        assert type(granted["expires_in"]) is int
        assert granted["expires_in"] == 90
        assert tokeninfo(client, lwa, granted["access_token"]).json()["exp"] == 90
        clock.advance(90)  # it lives exactly as long as it says
        assert tokeninfo(client, lwa, granted["access_token"]).status_code == 400
        minted = client.post(lwa.base_url + "/_emulator/tokens", json={"expires_in": 10.7})
        assert type(minted.json()["expires_in"]) is int
        assert minted.json()["expires_in"] == 10


def test_expires_in_string_fault(signin: LWAEmulator, client: httpx2.Client) -> None:
    # S8 shows "expires_in": "3600" (a string) for the same /auth/o2/token.
    signin.inject("expires_in_string", times=1)  # goes to the token endpoint
    granted = exchange(client, signin, get_code(client, signin), client_secret=signin.client_secret)
    assert granted.json()["expires_in"] == "3600"
    assert tokeninfo(client, signin, granted.json()["access_token"]).status_code == 200
    renewed = refresh(client, signin, granted.json()["refresh_token"]).json()
    assert renewed["expires_in"] == 3600  # times=1: back to a number
    with pytest.raises(ValueError, match="token"):
        signin.inject(Fault.EXPIRES_IN_STRING, endpoint="profile")


# -- refresh token rotation (S3) -----------------------------------------------


def test_refresh_token_rotation_is_an_option(client: httpx2.Client) -> None:
    # S3: a refresh gives a new access token and a new refresh token. Whether
    # Amazon ever hands back the same value is not documented (an assumption
    # either way), so rotation is an option and off by default.
    with LWAEmulator(redirect_uris=[REDIRECT], rotate_refresh_tokens=True) as lwa:
        first = exchange(client, lwa, get_code(client, lwa), client_secret=lwa.client_secret)
        old = first.json()["refresh_token"]
        renewed = refresh(client, lwa, old).json()
        new = renewed["refresh_token"]
        assert new != old
        assert new.startswith("Atzr|")
        assert tokeninfo(client, lwa, renewed["access_token"]).status_code == 200
        assert error_of(refresh(client, lwa, old)) == "invalid_grant"  # voided
        assert refresh(client, lwa, new).status_code == 200


def test_refresh_token_is_kept_without_rotation(signin: LWAEmulator, client: httpx2.Client) -> None:
    first = exchange(client, signin, get_code(client, signin), client_secret=signin.client_secret)
    held = first.json()["refresh_token"]
    assert refresh(client, signin, held).json()["refresh_token"] == held
    assert refresh(client, signin, held).status_code == 200


# -- user_id per company (S5) --------------------------------------------------


def test_user_id_is_the_same_within_a_company_and_differs_between_companies(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    # S5: user_id is the same for a customer across the apps of one company,
    # and different for an app of another company.
    signin.add_client(SISTER)
    signin.add_client(OTHER, company="Another Company")
    ada = BUILTIN_CUSTOMERS[0]
    seen = {}
    for client_id in (signin.client_id, SISTER, OTHER):
        token = signin.issue_token(customer=ada, aud=client_id, scopes=["profile"])
        info = tokeninfo(client, signin, token).json()
        assert info["user_id"] == profile(client, signin, token).json()["user_id"]
        assert info["user_id"] == signin.user_id_for(ada, client_id=client_id)
        seen[client_id] = info["user_id"]
    assert seen[signin.client_id] == seen[SISTER] == ada.user_id
    assert seen[OTHER] != ada.user_id
    assert USER_ID.fullmatch(seen[OTHER])
    # Stable: the other company sees the same id at every sign-in.
    assert signin.user_id_for(ada.user_id, client_id=OTHER) == seen[OTHER]


def test_remove_app_takes_the_user_id_the_app_sees(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    signin.add_client(OTHER, company="Another Company")
    ada = BUILTIN_CUSTOMERS[0]
    token = signin.issue_token(customer=ada, aud=OTHER)
    kept = signin.issue_token(customer=ada)
    assert signin.remove_app(signin.user_id_for(ada, client_id=OTHER), client_id=OTHER) == 1
    assert tokeninfo(client, signin, token).status_code == 400
    assert tokeninfo(client, signin, kept).status_code == 200
