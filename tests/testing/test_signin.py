"""The sign-in page (``/ap/oa`` of :mod:`lwa_middleware.testing._signin`).

Registered redirect URIs only, errors redirected as LWA does (with
``state``), the implicit grant refused, and PKCE parameters carried through
the consent page.  The token endpoint is in ``test_token_endpoint``.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwa_middleware.testing import BUILTIN_CUSTOMERS, DEFAULT_REDIRECT_URIS, LWAEmulator

from .emulator_support import (
    REDIRECT,
    authorize_form,
    consent_form,
    exchange,
    get_code,
    make_client,
    pkce_pair,
    profile,
    redirect_params,
)


def authorize_params(lwa: LWAEmulator, **overrides: str | None) -> dict[str, str]:
    """The query of the authorize URL an app sends the browser to."""
    params: dict[str, str | None] = {
        "client_id": lwa.client_id,
        "scope": "profile postal_code",
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "xyz",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def hidden(page: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    assert found is not None, name
    return html.unescape(found.group(1))


# -- the consent page --------------------------------------------------------------


def test_authorize_page(signin: LWAEmulator, client: httpx2.Client) -> None:
    response = client.get(
        signin.authorize_url,
        params=authorize_params(
            signin, state='"><script>alert(1)</script>', scope="profile:user_id"
        ),
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
    # Only what the app requested is offered (ticked); nothing else.
    assert re.search(r'value="profile:user_id" checked', page)
    assert 'value="profile"' not in page
    assert 'value="postal_code"' not in page
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in re.sub(r'value="http://127\.0\.0\.1:9/callback"', "", page)


def test_pkce_parameters_travel_through_the_consent_page(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    verifier, challenge = pkce_pair()
    query = authorize_params(
        signin, state="s-1", code_challenge=challenge, code_challenge_method="S256"
    )
    page = client.get(signin.authorize_url, params=query).text
    assert hidden(page, "state") == "s-1"
    assert hidden(page, "code_challenge") == challenge
    assert hidden(page, "code_challenge_method") == "S256"
    assert hidden(page, "response_type") == "code"
    assert verifier not in page

    # Submit the form as a browser does: its hidden fields plus the choices.
    form = {
        name: hidden(page, name)
        for name in ("client_id", "response_type", "redirect_uri", "state", "code_challenge")
    }
    form |= {"consent": hidden(page, "consent")}
    form |= {"code_challenge_method": hidden(page, "code_challenge_method")}
    form |= {"customer": "1", "scope": "profile", "action": "allow"}
    answer = redirect_params(client.post(signin.authorize_url, data=form))
    assert answer.keys() == {"code", "scope", "state"}
    assert answer["state"] == "s-1"
    tokens = exchange(client, signin, answer["code"], code_verifier=verifier)
    assert tokens.status_code == 200, tokens.text
    assert profile(client, signin, tokens.json()["access_token"]).json()["name"] == (
        BUILTIN_CUSTOMERS[1].name
    )


# -- redirect_uri: registered, exact match -----------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9/other",
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:9/callback?x=1",
        "http://127.0.0.1:10/callback",
        "http://localhost:9/callback",
        "https://127.0.0.1:9/callback",
        "https://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost@evil.example/cb",
        "javascript:alert(1)//127.0.0.1",
        "http://127.0.0.1:9/callback#fragment",
        "//127.0.0.1:9/callback",
        "",
    ],
)
def test_unregistered_redirect_uri_gets_a_page_never_a_redirect(
    signin: LWAEmulator, client: httpx2.Client, redirect_uri: str
) -> None:
    params = authorize_params(signin, redirect_uri=redirect_uri)
    page = client.get(signin.authorize_url, params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "registered return URLs" in page.text
    for action in ("allow", "deny"):
        form = authorize_form(signin, redirect_uri=redirect_uri, action=action)
        submit = client.post(signin.authorize_url, data=form)
        assert submit.status_code == 400
        assert "location" not in submit.headers
    # Even errors that would otherwise be redirected stay on the page.
    implicit = client.get(signin.authorize_url, params={**params, "response_type": "token"})
    assert implicit.status_code == 400
    assert "location" not in implicit.headers


def test_unknown_or_missing_client_id_gets_a_page(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    for client_id in ("amzn1.application-oa2-client.nobody", ""):
        page = client.get(
            signin.authorize_url, params=authorize_params(signin, client_id=client_id)
        )
        assert page.status_code == 400
        assert "location" not in page.headers
        submit = client.post(signin.authorize_url, data=authorize_form(signin, client_id=client_id))
        assert submit.status_code == 400
        assert "location" not in submit.headers


def test_defaults_and_registered_redirect_uris(client: httpx2.Client) -> None:
    with LWAEmulator() as lwa:
        assert lwa.redirect_uris == DEFAULT_REDIRECT_URIS
        assert lwa.client_secret.startswith("amzn1.oa2-cs.v1.")
        assert lwa.client_secret not in repr(lwa)
        assert LWAEmulator().client_secret != lwa.client_secret
        for uri in DEFAULT_REDIRECT_URIS:
            params = authorize_params(lwa, redirect_uri=uri)
            assert client.get(lwa.authorize_url, params=params).status_code == 200
    uris = ["https://app.example/cb", "http://[::1]:8000/cb", "http://localhost/cb?x=1"]
    with LWAEmulator(redirect_uris=uris, client_secret="s3cret") as lwa:
        assert lwa.redirect_uris == tuple(uris)
        assert lwa.client_secret == "s3cret"
        for uri in uris:
            params = authorize_params(lwa, redirect_uri=uri)
            assert client.get(lwa.authorize_url, params=params).status_code == 200
        params = authorize_params(lwa, redirect_uri="http://localhost/cb?x=1")
        code = client.post(
            lwa.authorize_url, data=consent_form(client, lwa, params)
        ).headers["location"]
        # An existing query is kept; the answer is appended to it.
        assert code.startswith("http://localhost/cb?x=1&code=")


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/cb",  # plain http off loopback
        "https://app.example/cb#top",
        "https://user@app.example/cb",
        "ftp://127.0.0.1/cb",
        "/callback",
        "",
    ],
)
def test_redirect_uris_are_validated(lwa_emulator: LWAEmulator, uri: str) -> None:
    with pytest.raises(ValueError):
        LWAEmulator(redirect_uris=[uri])
    with pytest.raises(ValueError):
        lwa_emulator.add_redirect_uri(uri)
    assert uri not in lwa_emulator.redirect_uris


def test_constructor_and_add_client_validate(lwa_emulator: LWAEmulator) -> None:
    with pytest.raises(TypeError):
        LWAEmulator(redirect_uris="http://127.0.0.1:8000/callback")
    with pytest.raises(ValueError):
        LWAEmulator(client_secret="")
    with pytest.raises(ValueError):
        lwa_emulator.add_client(lwa_emulator.client_id)
    with pytest.raises(ValueError):
        lwa_emulator.add_client("")
    with pytest.raises(KeyError):
        lwa_emulator.add_redirect_uri(REDIRECT, client_id="amzn1.application-oa2-client.nobody")


def test_reset_comes_back_to_the_registered_apps(lwa_emulator: LWAEmulator) -> None:
    before = lwa_emulator.redirect_uris
    lwa_emulator.add_redirect_uri(REDIRECT)
    lwa_emulator.add_redirect_uri(REDIRECT)  # once is enough
    assert lwa_emulator.redirect_uris == (*before, REDIRECT)
    lwa_emulator.add_client("amzn1.application-oa2-client.other")
    lwa_emulator.reset()
    assert lwa_emulator.redirect_uris == before
    # The other app is gone too: its id can be registered again.
    lwa_emulator.add_client("amzn1.application-oa2-client.other")


# -- errors go back to the app, with state ------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"response_type": "id_token"}, "unsupported_response_type", id="id-token"),
        pytest.param({"response_type": None}, "invalid_request", id="no-response-type"),
        pytest.param({"scope": "profile openid"}, "invalid_scope", id="unknown-scope"),
        pytest.param({"scope": None}, "invalid_scope", id="no-scope"),
        pytest.param(
            {"code_challenge": "x" * 43, "code_challenge_method": "S512"},
            "invalid_request",
            id="unknown-method",
        ),
        pytest.param({"code_challenge_method": "S256"}, "invalid_request", id="method-only"),
        pytest.param({"code_challenge": "short"}, "invalid_request", id="short-challenge"),
        pytest.param({"code_challenge": "x" * 129}, "invalid_request", id="long-challenge"),
        pytest.param({"code_challenge": "!" * 43}, "invalid_request", id="bad-characters"),
    ],
)
def test_errors_redirect_to_the_app_with_state(
    signin: LWAEmulator,
    client: httpx2.Client,
    overrides: dict[str, str | None],
    error: str,
) -> None:
    page = client.get(signin.authorize_url, params=authorize_params(signin, **overrides))
    answer = redirect_params(page)
    assert answer.keys() == {"error", "error_description", "state"}
    assert answer["error"] == error
    assert answer["state"] == "xyz"
    assert page.headers["location"].startswith(REDIRECT + "?")
    if "scope" in overrides:
        return  # no consent page, so no form (a form's scopes: test_consent.py)
    submitted = client.post(signin.authorize_url, data=authorize_form(signin, **overrides))
    assert redirect_params(submitted)["error"] == error
    assert signin.requests[-1].endpoint == "authorize"


def test_denied_consent_redirects_with_access_denied_and_state(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    response = client.post(signin.authorize_url, data=authorize_form(signin, action="deny"))
    answer = redirect_params(response)
    assert answer["error"] == "access_denied"
    assert answer["state"] == "xyz"
    assert "code" not in answer
    # No state in the request: none in the answer.
    answer = redirect_params(
        client.post(signin.authorize_url, data=authorize_form(signin, action="deny", state=""))
    )
    assert answer.keys() == {"error", "error_description"}


def test_no_scope_ticked_is_invalid_scope(signin: LWAEmulator, client: httpx2.Client) -> None:
    form = consent_form(client, signin, authorize_params(signin))
    del form["scope"]
    answer = redirect_params(client.post(signin.authorize_url, data=form))
    assert answer["error"] == "invalid_scope"
    assert answer["state"] == "xyz"


def test_one_scope_field_per_ticked_box(signin: LWAEmulator, client: httpx2.Client) -> None:
    form: dict[str, str | list[str]] = {
        **consent_form(client, signin, authorize_params(signin)),
        "customer": "1",
        "scope": ["profile", "postal_code"],
    }
    answer = redirect_params(client.post(signin.authorize_url, data=form))
    assert answer["scope"] == "profile postal_code"


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(state=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_state_round_trips(signin: LWAEmulator, state: str) -> None:
    with make_client() as c:
        page = c.get(signin.authorize_url, params=authorize_params(signin, state=state))
        assert page.status_code == 200
        assert f'name="state" value="{html.escape(state)}"' in page.text
        ticket = hidden(page.text, "consent")
        response = c.post(
            signin.authorize_url, data=authorize_form(signin, state=state, consent=ticket)
        )
        denied = c.post(
            signin.authorize_url, data=authorize_form(signin, state=state, action="deny")
        )
    for answer in (response, denied):
        assert answer.status_code == 302
        query = parse_qsl(urlsplit(answer.headers["location"]).query, keep_blank_values=True)
        assert dict(query)["state"] == state


def test_codes_are_distinct_and_opaque(signin: LWAEmulator, client: httpx2.Client) -> None:
    codes = {get_code(client, signin) for _ in range(10)}
    assert len(codes) == 10
    for code in codes:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", code)
