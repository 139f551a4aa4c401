"""The error tree and how each error renders (status, RFC 6750 challenge, JSON body)."""

from __future__ import annotations

import json
import re

import pytest

from lwa_middleware import (
    AuthError,
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    MissingToken,
    UpstreamUnavailable,
)

# RFC 7235: auth-scheme 1*SP auth-param *( OWS "," OWS auth-param ), with
# auth-param = token BWS "=" BWS ( token / quoted-string ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = rf"({_TOKEN})=({_TOKEN}|{_QUOTED})"
_CHALLENGE = re.compile(rf"Bearer {_PARAM}(?:, {_PARAM})*")


def challenge_params(value: str) -> dict[str, str]:
    """Parse one Bearer challenge strictly; unquote its values."""
    assert _CHALLENGE.fullmatch(value), value
    params = {}
    for name, raw in re.findall(_PARAM, value):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
    return params


def render(error: AuthError, realm: str = "lwa") -> tuple[int, dict[str, str], dict[str, str]]:
    status, headers, body = error.response(realm)
    names = [name for name, _ in headers]
    assert all(name == name.lower() for name in names)
    assert len(names) == len(set(names)), "a header is repeated"
    decoded = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
    assert int(decoded["content-length"]) == len(body)
    return status, decoded, json.loads(body)


def test_the_tree() -> None:
    for cls in (MissingToken, InvalidRequest, InvalidToken, InsufficientScope, UpstreamUnavailable):
        assert issubclass(cls, AuthError)
    assert issubclass(AuthError, LWAError)
    assert issubclass(ConfigurationError, LWAError)
    assert issubclass(ConfigurationError, ValueError)
    assert not issubclass(AuthError, ConfigurationError)


def test_saturated_is_a_503_with_retry_after_but_not_the_breaker() -> None:
    from support.private import BreakerOpen, Saturated

    assert issubclass(Saturated, UpstreamUnavailable)
    assert not issubclass(Saturated, BreakerOpen)
    status, headers, body = render(Saturated("Too many LWA lookups are in flight.", 7))
    assert status == 503
    assert headers["retry-after"] == "7"
    assert "www-authenticate" not in headers
    assert body["error"] == "temporarily_unavailable"


def test_missing_token() -> None:
    status, headers, body = render(MissingToken())
    assert status == 401
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error", "error_description"}
    assert body["error"]
    assert body["error_description"]
    assert headers["www-authenticate"] == 'Bearer realm="lwa"'
    assert "error=" not in headers["www-authenticate"]
    assert "retry-after" not in headers


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            InvalidRequest("The request carries two different access tokens."),
            400,
            "invalid_request",
        ),
        (InvalidToken("The access token is invalid, expired or revoked."), 401, "invalid_token"),
        (InsufficientScope(["postal_code"]), 403, "insufficient_scope"),
    ],
)
def test_errors_with_an_error_attribute(error: AuthError, status: int, code: str) -> None:
    got_status, headers, body = render(error, realm="my app")
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert body == {"error": code, "error_description": error.description}
    params = challenge_params(headers["www-authenticate"])
    assert params["realm"] == "my app"
    assert params["error"] == code
    assert headers["www-authenticate"].startswith(f'Bearer realm="my app", error="{code}"')
    assert "retry-after" not in headers


def test_insufficient_scope_names_the_scopes() -> None:
    status, headers, body = render(InsufficientScope({"profile", "postal_code"}))
    assert status == 403
    params = challenge_params(headers["www-authenticate"])
    assert params["scope"] == "postal_code profile"
    assert params["error"] == "insufficient_scope"
    assert "postal_code" in body["error_description"]


def test_upstream_unavailable() -> None:
    status, headers, body = render(UpstreamUnavailable("LWA is down.", retry_after=7))
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert body == {"error": "temporarily_unavailable", "error_description": "LWA is down."}
    assert headers["retry-after"] == "7"
    assert "www-authenticate" not in headers


def test_upstream_unavailable_always_has_a_positive_retry_after() -> None:
    _, headers, _ = render(UpstreamUnavailable("LWA is down."))
    assert headers["retry-after"].isdigit()
    assert int(headers["retry-after"]) >= 1


def test_responses_are_not_cacheable() -> None:
    for error in (MissingToken(), InvalidToken("x"), UpstreamUnavailable("x", 1)):
        _, headers, _ = render(error)
        assert "no-store" in headers.get("cache-control", "")


@pytest.mark.parametrize(
    "description",
    ['say "hi"', "back\\slash", "line\r\nInjected: header", "caf\u00e9 \u2603", "\x00"],
)
def test_descriptions_cannot_break_the_header(description: str) -> None:
    _status, headers, body = render(InvalidToken(description))
    value = headers["www-authenticate"]
    assert "\r" not in value
    assert "\n" not in value
    assert "\x00" not in value
    params = challenge_params(value)
    assert params["error"] == "invalid_token"
    # The JSON body keeps the description intact.
    assert body["error_description"] == description


def test_invalid_token_remember_flag() -> None:
    assert InvalidToken("x").remember is True
    assert InvalidToken("x", remember=False).remember is False


def test_repr_and_str() -> None:
    error = InvalidToken("The access token is invalid, expired or revoked.")
    assert str(error) == "The access token is invalid, expired or revoked."
    assert "InvalidToken" in repr(error)
