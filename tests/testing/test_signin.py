"""The sign-in flow (:mod:`lwa_middleware.testing._signin`).

The authorize page, the implicit and code grants, and the token endpoint.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

from .emulator_support import (
    REDIRECT,
    make_client,
    profile,
    tokeninfo,
)

# -- authorize page ------------------------------------------------------------


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "client_id": "amzn1.application-oa2-client.demo",
        "scope": "profile postal_code",
        "response_type": "token",
        "redirect_uri": REDIRECT,
        "state": "xyz",
    }
    params.update(overrides)
    return params



def test_authorize_page(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    response = client.get(
        lwa_emulator.base_url + "/ap/oa",
        params=authorize_params(state='"><script>alert(1)</script>', scope="profile:user_id"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html;charset=UTF-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<title>Login with Amazon (emulator)</title>" in page
    assert 'id="lwa-signin"' in page
    for customer in ("Ada Lovelace", "Grace Hopper", "Alan Turing"):
        assert customer in page
    assert page.count('type="radio" name="customer"') == 3
    assert re.search(r'value="profile:user_id" checked', page)
    assert re.search(r'value="profile">', page)  # offered, not pre-checked
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in re.sub(r'value="http://127\.0\.0\.1:9/callback"', "", page)



@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost@evil.example/cb",
        "http://evil.example/cb?http://127.0.0.1/",
        "javascript:alert(1)//127.0.0.1",
        "http://127.0.0.1:9/cb#fragment",
        "//127.0.0.1/cb",
        "",
    ],
)
def test_non_loopback_redirect_uri_is_rejected(
    lwa_emulator: LWAEmulator, client: httpx.Client, redirect_uri: str
) -> None:
    params = authorize_params(redirect_uri=redirect_uri)
    page = client.get(lwa_emulator.base_url + "/ap/oa", params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "loopback" in page.text
    submit = client.post(lwa_emulator.base_url + "/ap/oa", data={**params, "customer": "0"})
    assert submit.status_code == 400
    assert "location" not in submit.headers



@pytest.mark.parametrize("redirect_uri", ["http://localhost/cb", "http://[::1]:8000/cb"])
def test_loopback_redirect_uris_are_accepted(
    lwa_emulator: LWAEmulator, client: httpx.Client, redirect_uri: str
) -> None:
    params = authorize_params(redirect_uri=redirect_uri)
    assert client.get(lwa_emulator.base_url + "/ap/oa", params=params).status_code == 200



def test_authorize_rejects_unknown_scopes(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    params = authorize_params(scope="profile openid")
    assert client.get(lwa_emulator.base_url + "/ap/oa", params=params).status_code == 400


# -- implicit grant ------------------------------------------------------------


def test_implicit_grant(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    # As a browser submits it: one ``scope`` field per ticked box.
    form: dict[str, str | list[str]] = {
        **authorize_params(customer="1", action="allow"),
        "scope": ["profile", "postal_code"],
    }
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=form)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert location.query == ""
    fragment = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert fragment.keys() == {"access_token", "token_type", "expires_in", "scope", "state"}
    assert fragment["token_type"] == "bearer"
    assert fragment["expires_in"] == "3600"
    assert fragment["scope"] == "profile postal_code"
    assert fragment["state"] == "xyz"
    token = fragment["access_token"]
    assert tokeninfo(client, lwa_emulator, token).json()["aud"] == (
        "amzn1.application-oa2-client.demo"
    )
    grace = BUILTIN_CUSTOMERS[1]
    assert profile(client, lwa_emulator, token).json() == {
        "user_id": grace.user_id,
        "name": grace.name,
        "email": grace.email,
        "postal_code": grace.postal_code,
    }



def test_cancel_redirects_with_access_denied(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    data = authorize_params(response_type="code", action="deny", scope="profile")
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["xyz"]



@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(state=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_state_round_trips_through_the_implicit_grant(
    lwa_emulator_server: LWAEmulator, state: str
) -> None:
    with make_client() as c:
        page = c.get(lwa_emulator_server.base_url + "/ap/oa", params=authorize_params(state=state))
        assert page.status_code == 200
        assert f'name="state" value="{html.escape(state)}"' in page.text
        data = authorize_params(state=state)
        response = c.post(lwa_emulator_server.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    fragment = parse_qs(urlsplit(response.headers["location"]).fragment, keep_blank_values=True)
    assert fragment["state"] == [state]


# -- code grant and token endpoint ---------------------------------------------


def test_authorization_code_flow(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    data = authorize_params(response_type="code", customer="2", state="s1")
    data["scope"] = "profile:user_id"
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.fragment == ""
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query.keys() == {"code", "scope", "state"}
    assert query["scope"] == "profile:user_id"
    assert query["state"] == "s1"

    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": REDIRECT,
        "client_id": "amzn1.application-oa2-client.demo",
        "client_secret": "ignored",
    }
    wrong = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={**exchange, "redirect_uri": "http://127.0.0.1:9/other"},
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"

    # A failed exchange burns the code, as a one-time code should.
    data["state"] = "s2"
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    exchange["code"] = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    tokens = client.post(lwa_emulator.base_url + "/auth/o2/token", data=exchange)
    assert tokens.status_code == 200
    body = tokens.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"].startswith("Atzr|")
    turing = BUILTIN_CUSTOMERS[2]
    assert profile(client, lwa_emulator, body["access_token"]).json() == {"user_id": turing.user_id}

    again = client.post(lwa_emulator.base_url + "/auth/o2/token", data=exchange)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"

    refreshed = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "amzn1.application-oa2-client.demo",
        },
    )
    assert refreshed.status_code == 200
    new_token = refreshed.json()["access_token"]
    assert new_token != body["access_token"]
    assert tokeninfo(client, lwa_emulator, new_token).json()["user_id"] == turing.user_id

    unsupported = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={"grant_type": "password", "client_id": "x"},
    )
    assert unsupported.json()["error"] == "unsupported_grant_type"
    assert lwa_emulator.calls == Counter(profile=1, tokeninfo=1)



def test_code_redirect_keeps_an_existing_query(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    data = authorize_params(response_type="code", redirect_uri="http://localhost:8080/cb?x=1")
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    location = response.headers["location"]
    assert location.startswith("http://localhost:8080/cb?x=1&code=")
