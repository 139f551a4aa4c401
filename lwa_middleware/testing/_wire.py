"""LWA's wire format: paths, JSON answers, error bodies and request fields.

Everything a client can see of the emulator's answers is decided here: the
routes and the methods they accept, the exact JSON of tokeninfo and profile
(and of LWA's older profile shape), the error bodies Amazon sends, and how
a token is read from headers or the query string.  The handlers only pick
which of these to send.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import unquote_plus

from lwa_middleware.testing._grants import Customer, _Grant

__all__ = ["ENDPOINTS"]

TOKENINFO_PATH: Final = "/auth/o2/tokeninfo"
PROFILE_PATH: Final = "/user/profile"
MINT_PATH: Final = "/_emulator/tokens"
AUTHORIZE_PATH: Final = "/ap/oa"
TOKEN_PATH: Final = "/auth/o2/token"
# The JavaScript SDK stand-in (Amazon serves login1.js from another host) and
# the frame through which it calls the token and profile endpoints.
SDK_PATH: Final = "/sdk/login1.js"
SDK_RELAY_PATH: Final = "/sdk/relay"
SDK_POPUP_PATH: Final = "/sdk/popup"

#: The resource server's endpoints: where faults and latency go when no
#: endpoint is named.
ENDPOINTS: Final = ("tokeninfo", "profile")

# Endpoints counted in ``calls`` and open to faults and latency: the resource
# server's two and the token endpoint, which is named explicitly.
_FAULTABLE: Final = (*ENDPOINTS, "token")

# Route name and the methods the route answers.  Paths are matched
# case-insensitively because Amazon's are (``/auth/O2/tokeninfo`` works).
_ROUTES: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    TOKENINFO_PATH: ("tokeninfo", frozenset({"GET"})),
    PROFILE_PATH: ("profile", frozenset({"GET"})),
    MINT_PATH: ("mint", frozenset({"POST"})),
    AUTHORIZE_PATH: ("authorize", frozenset({"GET", "POST"})),
    # OPTIONS: a browser's CORS preflight, answered with CORS headers only
    # when LWAEmulator(token_cors=True): Amazon documents no CORS here.
    TOKEN_PATH: ("token", frozenset({"POST", "OPTIONS"})),
    SDK_PATH: ("sdk", frozenset({"GET"})),
    SDK_RELAY_PATH: ("sdk_relay", frozenset({"GET"})),
    SDK_POPUP_PATH: ("sdk_popup", frozenset({"GET"})),
}

_JSON_TYPE: Final = "application/json;charset=UTF-8"
_HTML_TYPE: Final = "text/html;charset=UTF-8"
_ISSUER: Final = "https://www.amazon.com"
_PROFILE_SCOPES: Final = ("profile", "profile:user_id", "postal_code")

_INVALID_TOKEN: Final = {
    "error": "invalid_token",
    "error_description": "The request has an invalid parameter : access_token",
}
_MISSING_TOKEN: Final = {
    "error": "invalid_request",
    "error_description": "The request is missing a required parameter : access_token",
}
_INSUFFICIENT_SCOPE: Final = {
    "error": "insufficient_scope",
    "error_description": (
        "The access token provided does not have access to the requested resource."
    ),
}

_NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


# -- responses -----------------------------------------------------------------


def _new_request_id() -> str:
    return str(uuid.uuid4())


@dataclasses.dataclass(slots=True)
class _Response:
    """One answer. ``request_id`` goes out as ``x-amzn-RequestId`` (every
    answer, "Obtain Customer Profile Information"), and also in the body of
    profile errors (:func:`_profile_error`), the same id."""

    status: int
    body: bytes = b""
    content_type: str | None = _JSON_TYPE
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    request_id: str = dataclasses.field(default_factory=_new_request_id)


def _json_body(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _json(status: int, payload: object, *headers: tuple[str, str]) -> _Response:
    return _Response(status, _json_body(payload), _JSON_TYPE, list(headers))


def _error(status: int, error: str, description: str, *headers: tuple[str, str]) -> _Response:
    return _json(status, {"error": error, "error_description": description}, *headers)


def _profile_error(status: int, payload: Mapping[str, str], *headers: tuple[str, str]) -> _Response:
    """A profile error whose body carries ``request_id``, as the example of
    "Obtain Customer Profile Information" shows (the page says it *may*:
    always sending it is an assumption). Tokeninfo's and the token
    endpoint's documented errors show no ``request_id``, so they get none."""
    request_id = _new_request_id()
    response = _json(status, {**payload, "request_id": request_id}, *headers)
    response.request_id = request_id
    return response


def _missing(parameter: str) -> _Response:
    return _error(
        400,
        "invalid_request",
        f"The request is missing a required parameter : {parameter}",
    )


# -- payloads ------------------------------------------------------------------


def _app_id(aud: str) -> str:
    # Stable per client id, like Amazon's application id is.
    return "amzn1.application." + hashlib.sha256(aud.encode()).hexdigest()[:32]


def _tokeninfo_payload(grant: _Grant, now: float) -> dict[str, object]:
    remaining = max(0, math.floor(grant.expires_at - now))
    return {
        "iss": _ISSUER,
        "user_id": grant.customer.user_id,
        "aud": grant.aud,
        "app_id": _app_id(grant.aud),
        "exp": remaining,
        "iat": int(grant.issued_at),
    }


# Profile field names, in the order of Customer's fields: today's and the
# old ``{"Profile": {...}}`` shape's.  The scopes grant the same fields in both.
_PROFILE_FIELDS: Final = ("user_id", "name", "email", "postal_code")
_LEGACY_PROFILE_FIELDS: Final = ("CustomerId", "Name", "PrimaryEmail", "PostalCode")


def _profile_payload(
    customer: Customer, scopes: Sequence[str], names: Sequence[str] = _PROFILE_FIELDS
) -> dict[str, object]:
    user_id, name, email, postal_code = names
    payload: dict[str, object] = {user_id: customer.user_id}
    if "profile" in scopes:
        payload[name] = customer.name
        payload[email] = customer.email
    if "postal_code" in scopes:
        payload[postal_code] = customer.postal_code
    return payload


def _legacy_profile_payload(customer: Customer, scopes: Sequence[str]) -> dict[str, object]:
    return _profile_payload(customer, scopes, _LEGACY_PROFILE_FIELDS)


def _whole_seconds(value: float) -> int:
    """``expires_in`` as Amazon sends it: whole seconds, never a float (a
    fractional lifetime is rounded down, so a client refreshes early)."""
    return max(0, math.floor(value))


# -- reading requests ----------------------------------------------------------


def _first(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    for name, value in pairs:
        if name == key:
            return value
    return None


def _credentials(header: str | None, scheme: str) -> str | None:
    """The credentials of an ``Authorization`` header, if it uses ``scheme``."""
    if not header:
        return None
    given, _, credentials = header.strip().partition(" ")
    if given.lower() != scheme:
        return None
    return credentials.strip()


def _bearer(header: str | None) -> str | None:
    return _credentials(header, "bearer") or None


def _basic_credentials(header: str | None) -> tuple[str, str] | str | None:
    """``(client_id, client_secret)`` of an HTTP Basic header.

    ``None`` without Basic credentials, ``"malformed"`` if they do not decode.
    Both halves are form-decoded, as RFC 6749 section 2.3.1 asks.
    """
    credentials = _credentials(header, "basic")
    if credentials is None:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "malformed"
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        return "malformed"
    return unquote_plus(user), unquote_plus(password)


# Query parameters whose values never reach the request log: the access
# token (which tokeninfo and profile accept there) and everything that a
# careless client might put in the token endpoint's URL instead of its body.
_SECRET_PARAMETERS: Final = frozenset(
    {"access_token", "refresh_token", "code", "code_verifier", "client_secret"}
)


def _redact_target(target: str) -> str:
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        # Decoded, so access%5Ftoken=... (which parse_qsl accepts) is caught too.
        secret = unquote_plus(name) in _SECRET_PARAMETERS and eq
        parts.append(f"{name}=<redacted>" if secret else item)
    return f"{path}?{'&'.join(parts)}"
