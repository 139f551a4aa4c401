"""Tokeninfo, profile and the mint endpoint (:mod:`lwa_middleware.testing._api`).

Through real HTTP over loopback, like every test of the emulator.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx2
import pytest
from support.clock import FakeClock

from lwa_middleware.testing import LWAEmulator

from .emulator_support import (
    APP_ID,
    EPOCH,
    INVALID_TOKEN,
    JSON_TYPE,
    MISSING_TOKEN,
    TOKEN,
    USER_ID,
    profile,
    profile_error,
    tokeninfo,
)

# -- tokeninfo -----------------------------------------------------------------


def test_tokeninfo_shape_and_types(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    before = time.time()
    response = tokeninfo(client, lwa_emulator, token)

    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    assert int(response.headers["content-length"]) == len(response.content)
    assert uuid.UUID(response.headers["x-amzn-requestid"]).version == 4
    info = response.json()
    assert list(info) == ["iss", "user_id", "aud", "app_id", "exp", "iat"]
    assert info["iss"] == "https://www.amazon.com"
    assert info["aud"] == lwa_emulator.client_id
    assert USER_ID.fullmatch(info["user_id"])
    assert info["user_id"] == lwa_emulator.customer_for(token).user_id
    assert APP_ID.fullmatch(info["app_id"])
    assert type(info["exp"]) is int
    assert info["exp"] in (3599, 3600)
    assert type(info["iat"]) is int
    assert before - 2 <= info["iat"] <= time.time()



def test_tokeninfo_accepts_the_token_in_the_query_and_counts_it(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    token = lwa_emulator.issue_token()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    assert lwa_emulator.token_in_url == 0

    response = client.get(lwa_emulator.tokeninfo_url, params={"access_token": token})
    assert response.status_code == 200
    assert response.json()["user_id"] == lwa_emulator.customer_for(token).user_id
    response = client.get(lwa_emulator.profile_url, params={"access_token": token})
    assert response.status_code == 200
    assert lwa_emulator.token_in_url == 2
    # The log keeps the parameter name, never the value.
    assert lwa_emulator.requests[-1].target == "/user/profile?access_token=<redacted>"
    encoded = f"{lwa_emulator.tokeninfo_url}?a=1&access%5Ftoken={token}"
    assert client.get(encoded).status_code == 200
    assert lwa_emulator.requests[-1].target == "/auth/o2/tokeninfo?a=1&access%5Ftoken=<redacted>"
    assert lwa_emulator.token_in_url == 3
    assert token not in repr(lwa_emulator.requests)



def test_missing_token_is_invalid_request(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    response = client.get(lwa_emulator.tokeninfo_url)
    assert response.status_code == 400
    assert response.json() == MISSING_TOKEN
    assert response.headers["content-type"] == JSON_TYPE
    # "Obtain Customer Profile Information": 400 invalid_request, with request_id.
    response = client.get(lwa_emulator.profile_url)
    assert response.status_code == 400
    assert profile_error(response) == MISSING_TOKEN
    assert response.headers["content-type"] == JSON_TYPE



def test_unknown_token_is_invalid_token(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    fake = "Atza|" + "A" * 400
    response = tokeninfo(client, lwa_emulator, fake)
    assert response.status_code == 400
    assert response.json() == INVALID_TOKEN

    # "Obtain Customer Profile Information": 400 invalid_token, not 401.
    response = profile(client, lwa_emulator, fake)
    assert response.status_code == 400
    assert profile_error(response) == INVALID_TOKEN



def test_exp_counts_down_and_the_token_expires(client: httpx2.Client) -> None:
    # The emulator's clock is injected: the second passes without sleeping.
    clock = FakeClock(EPOCH)
    with LWAEmulator(clock=clock) as lwa:
        short = lwa.issue_token(expires_in=1)
        long = lwa.issue_token(expires_in=10)
        assert tokeninfo(client, lwa, short).json()["exp"] == 1
        assert tokeninfo(client, lwa, long).json()["exp"] == 10
        clock.advance(1)
        assert tokeninfo(client, lwa, long).json()["exp"] == 9
        response = tokeninfo(client, lwa, short)
        assert response.status_code == 400
        assert response.json() == INVALID_TOKEN
        assert profile(client, lwa, short).status_code == 400


def test_already_expired_token(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token(expires_in=0)
    assert tokeninfo(client, lwa_emulator, token).json() == INVALID_TOKEN



def test_aud_override(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.other")
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == "amzn1.application-oa2-client.other"
    default = tokeninfo(client, lwa_emulator, lwa_emulator.issue_token()).json()
    assert default["app_id"] != info["app_id"]


# -- profile -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "fields"),
    [
        (["profile"], {"user_id", "name", "email"}),
        (["profile:user_id"], {"user_id"}),
        (["postal_code"], {"user_id", "postal_code"}),
        (["profile", "postal_code"], {"user_id", "name", "email", "postal_code"}),
        (["profile:user_id", "postal_code", "other::scope"], {"user_id", "postal_code"}),
    ],
)
def test_scopes_decide_profile_fields(
    lwa_emulator: LWAEmulator, client: httpx2.Client, scopes: list[str], fields: set[str]
) -> None:
    token = lwa_emulator.issue_token(scopes=scopes)
    customer = lwa_emulator.customer_for(token)
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert set(body) == fields
    for field in fields:
        assert body[field] == getattr(customer, field)



def test_profile_token_sources(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token(name="Zoë Ñandú")
    for headers in (
        {"Authorization": f"bearer {token}"},
        {"x-amz-access-token": token},
    ):
        response = client.get(lwa_emulator.profile_url, headers=headers)
        assert response.status_code == 200
        assert response.json()["name"] == "Zoë Ñandú"
    basic = client.get(lwa_emulator.profile_url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert profile_error(basic) == MISSING_TOKEN



def test_insufficient_scope(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token(scopes=["alexa::ask_skills:readwrite"])
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 401
    assert profile_error(response) == {
        "error": "insufficient_scope",
        "error_description": (
            "The access token provided does not have access to the requested resource."
        ),
    }
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


# -- mint endpoint -------------------------------------------------------------


def test_mint_endpoint(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    response = client.post(
        lwa_emulator.base_url + "/_emulator/tokens",
        json={
            "scopes": ["profile", "postal_code"],
            "aud": "amzn1.application-oa2-client.js",
            "expires_in": 120,
            "name": "Grace",
            "postal_code": "10027",
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 120
    assert body["scope"] == "profile postal_code"
    token = body["access_token"]
    assert TOKEN.fullmatch(token)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == "amzn1.application-oa2-client.js"
    assert info["exp"] in (119, 120)
    person = profile(client, lwa_emulator, token).json()
    assert person["name"] == "Grace"
    assert person["postal_code"] == "10027"
    assert lwa_emulator.calls == Counter(tokeninfo=1, profile=1)

    default = client.post(lwa_emulator.base_url + "/_emulator/tokens").json()
    assert default["scope"] == "profile"
    assert default["expires_in"] == 3600
    assert tokeninfo(client, lwa_emulator, default["access_token"]).json()["aud"] == (
        lwa_emulator.client_id
    )



@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1]", b'{"scopes": "a b", "expires_in": "x"}', b'{"aud": 5}'],
)
def test_mint_endpoint_rejects_bad_bodies(
    lwa_emulator: LWAEmulator, client: httpx2.Client, body: bytes
) -> None:
    response = client.post(lwa_emulator.base_url + "/_emulator/tokens", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
