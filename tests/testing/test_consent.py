"""The consent page offers exactly what the app requested; the customer can only narrow it.

Amazon's pages: "Requesting Scopes as Essential/Voluntary"
(developer.amazon.com/docs/login-with-amazon/requesting-scopes-as-essential-voluntary.html):
the customer consents to the scopes the app requested and can decline some;
"Authorization Code Grant"
(developer.amazon.com/docs/login-with-amazon/authorization-code-grant.html):
``scope`` is the request's, and the response carries ``code``, ``scope`` and
``state``, or ``error=access_denied`` when the customer refuses.  That a
tampered form cannot add a scope is the same fact seen from the other side:
the consent is to what was requested.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest
from support.clock import FakeClock

from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

from .emulator_support import (
    EPOCH,
    REDIRECT,
    consent_form,
    exchange,
    profile,
    redirect_params,
)


def params_for(lwa: LWAEmulator, scope: str, **extra: str) -> dict[str, str]:
    return {
        "client_id": lwa.client_id,
        "scope": scope,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "st-1",
        **extra,
    }


def url_for(lwa: LWAEmulator, scope: str, **extra: str) -> str:
    return f"{lwa.authorize_url}?{urlencode(params_for(lwa, scope, **extra))}"


def offered(page: str) -> list[tuple[str, bool]]:
    """The scope checkboxes of a consent page: (value, ticked)."""
    boxes = re.findall(r'<input type="checkbox" name="scope" value="([^"]*)"( checked)?>', page)
    return [(value, bool(checked)) for value, checked in boxes]


def granted_fields(c: httpx2.Client, lwa: LWAEmulator, back: str) -> dict[str, object]:
    """Exchange the code of a redirect back to the app; the profile its token reads."""
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    tokens = exchange(c, lwa, code, client_secret=lwa.client_secret)
    assert tokens.status_code == 200, tokens.text
    body: dict[str, object] = profile(c, lwa, tokens.json()["access_token"]).json()
    return body


@pytest.mark.parametrize(
    "scope",
    ["profile", "postal_code", "profile:user_id", "profile postal_code", "postal_code profile"],
)
def test_consent_page_shows_exactly_the_requested_scopes(
    signin: LWAEmulator, client: httpx2.Client, scope: str
) -> None:
    page = client.get(signin.authorize_url, params=params_for(signin, scope))
    assert page.status_code == 200
    requested = set(scope.split())
    assert {value for value, _ in offered(page.text)} == requested
    assert all(ticked for _, ticked in offered(page.text))
    assert len(offered(page.text)) == len(requested)


def test_the_customer_can_narrow_the_requested_scopes(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    form = consent_form(client, signin, params_for(signin, "profile postal_code"))
    form["scope"] = "profile"  # postal_code unticked
    answer = redirect_params(client.post(signin.authorize_url, data=form))
    assert answer["scope"] == "profile"
    assert answer["state"] == "st-1"
    back = f"{REDIRECT}?{urlencode(answer)}"
    fields = granted_fields(client, signin, back)
    assert fields["name"] == BUILTIN_CUSTOMERS[0].name
    assert "postal_code" not in fields


@pytest.mark.parametrize(
    "submitted",
    [
        pytest.param(["profile", "postal_code"], id="extra-box"),
        pytest.param(["profile postal_code profile:user_id"], id="space-separated"),
        pytest.param(["postal_code", "profile"], id="reordered"),
    ],
)
def test_a_tampered_form_never_grants_an_unrequested_scope(
    signin: LWAEmulator, client: httpx2.Client, submitted: list[str]
) -> None:
    form: dict[str, str | list[str]] = {
        **consent_form(client, signin, params_for(signin, "profile")),
        "scope": submitted,
    }
    answer = redirect_params(client.post(signin.authorize_url, data=form))
    assert answer["scope"] == "profile"
    fields = granted_fields(client, signin, f"{REDIRECT}?{urlencode(answer)}")
    assert "postal_code" not in fields
    # Only an unrequested scope ticked: nothing is granted.
    form["scope"] = "postal_code"
    refused = redirect_params(client.post(signin.authorize_url, data=form))
    assert refused["error"] == "invalid_scope"
    assert "code" not in refused


def _forged(ticket: str, scopes: list[str]) -> str:
    body, _, mac = ticket.partition(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields[2] = scopes
    raw = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{raw}.{mac}"


def test_a_form_without_a_valid_ticket_gets_a_page_never_a_code(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    form = consent_form(client, signin, params_for(signin, "profile"))
    wider_page = consent_form(
        client, signin, params_for(signin, "profile postal_code", redirect_uri=REDIRECT)
    )
    signin.add_redirect_uri("http://127.0.0.1:9/elsewhere")
    elsewhere = consent_form(
        client,
        signin,
        params_for(signin, "profile postal_code", redirect_uri="http://127.0.0.1:9/elsewhere"),
    )
    tickets = {
        "missing": "",
        "garbage": "not-a-ticket",
        "forged-scopes": _forged(form["consent"], ["profile", "postal_code"]),
        "other-redirect-uri": elsewhere["consent"],
    }
    for why, ticket in tickets.items():
        tampered = {**form, "consent": ticket, "scope": "profile postal_code"}
        answer = client.post(signin.authorize_url, data=tampered)
        assert answer.status_code == 400, why
        assert "location" not in answer.headers, why
        assert "consent form" in answer.text, why
    # The wider ticket of the same app and return URL is a real consent to
    # what it names: the page had offered postal_code there.
    wider = {**form, "consent": wider_page["consent"], "scope": "profile postal_code"}
    assert redirect_params(client.post(signin.authorize_url, data=wider))["scope"] == (
        "profile postal_code"
    )
    # Refusing needs no ticket: it grants nothing.
    denied = {**form, "consent": "", "action": "deny"}
    assert redirect_params(client.post(signin.authorize_url, data=denied))["error"] == (
        "access_denied"
    )


def test_a_consent_ticket_expires_after_an_hour(client: httpx2.Client) -> None:
    clock = FakeClock(EPOCH)
    with LWAEmulator(redirect_uris=[REDIRECT], clock=clock) as lwa:
        form = consent_form(client, lwa, params_for(lwa, "profile"))
        clock.advance(3599)
        assert client.post(lwa.authorize_url, data=form).status_code == 302
        clock.advance(2)
        late = client.post(lwa.authorize_url, data=form)
        assert late.status_code == 400
        assert "location" not in late.headers


# -- the consent helper: tests play the customer without HTML ------------------------


def test_consent_helper_grants_what_was_requested_or_less(
    signin: LWAEmulator, client: httpx2.Client
) -> None:
    url = url_for(signin, "profile postal_code")
    back = signin.consent(url)
    assert back.startswith(REDIRECT + "?")
    answer = dict(parse_qsl(urlsplit(back).query))
    assert answer["scope"] == "profile postal_code"
    assert answer["state"] == "st-1"
    everything = granted_fields(client, signin, back)
    assert everything["postal_code"] == BUILTIN_CUSTOMERS[0].postal_code

    grace = BUILTIN_CUSTOMERS[1]
    narrowed = signin.consent(url, grant=["profile"], customer=1)
    assert dict(parse_qsl(urlsplit(narrowed).query))["scope"] == "profile"
    fields = granted_fields(client, signin, narrowed)
    assert fields["name"] == grace.name
    assert "postal_code" not in fields

    # The helper refuses to widen, loudly: the app forgot to request it.
    with pytest.raises(ValueError, match="did not request postal_code"):
        signin.consent(url_for(signin, "profile"), grant=["profile", "postal_code"])
    # A narrowing to nothing is what the page does with nothing ticked.
    nothing = dict(parse_qsl(urlsplit(signin.consent(url, grant=[])).query))
    assert nothing["error"] == "invalid_scope"


def test_deny_helper_and_requests_lwa_answers_with_an_error(signin: LWAEmulator) -> None:
    denied = dict(parse_qsl(urlsplit(signin.deny(url_for(signin, "profile"))).query))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "st-1"
    assert "code" not in denied
    # Errors LWA redirects with come back as the redirect, for the app to handle.
    for scope, error in (("openid", "invalid_scope"), ("", "invalid_scope")):
        back = dict(parse_qsl(urlsplit(signin.consent(url_for(signin, scope))).query))
        assert back["error"] == error
    implicit = signin.consent(url_for(signin, "profile", response_type="token"))
    assert dict(parse_qsl(urlsplit(implicit).query))["error"] == "unsupported_response_type"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda u: u.replace("/ap/oa", "/ap/other"), id="not-ap-oa"),
        pytest.param(lambda u: u.replace("127.0.0.1", "localhost"), id="another-host"),
        pytest.param(lambda u: u.replace("callback", "elsewhere"), id="unregistered-redirect"),
        pytest.param(lambda u: u.replace("client_id=", "client_id=x"), id="unknown-client"),
    ],
)
def test_consent_helper_refuses_what_gets_an_error_page(
    signin: LWAEmulator, mangle: object
) -> None:
    assert callable(mangle)
    url = mangle(url_for(signin, "profile"))
    with pytest.raises(ValueError):
        signin.consent(url)
    with pytest.raises(ValueError):
        signin.deny(url)
    with pytest.raises(ValueError):
        signin.consent(url_for(signin, "profile"), customer=len(BUILTIN_CUSTOMERS))
