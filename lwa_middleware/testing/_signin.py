"""The token endpoint (``POST /auth/o2/token``): codes and refresh tokens.

``POST /auth/o2/token`` exchanges a code (from the authorize page in
:mod:`._authorize`) or a refresh token for an access token.  Codes are
single-use and live five minutes; the endpoint checks the client secret
(body or HTTP Basic), the PKCE verifier (S256 or plain) and the
redirect_uri, hands out a refresh token only to a client that sent its
secret, and refreshes only for that client and only with the secret.

Amazon documents no CORS on this endpoint: browsers reach it through its
JavaScript SDK (:mod:`._sdk`).  CORS headers for a registered app's origins
are sent only when the emulator was built with ``token_cors=True``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.message import Message
from typing import Final
from urllib.parse import parse_qsl

from lwa_middleware.testing._authorize import _PKCE_VALUE
from lwa_middleware.testing._authorize import _authorize as _authorize
from lwa_middleware.testing._authorize import _is_valid_redirect_uri as _is_valid_redirect_uri
from lwa_middleware.testing._faults import (
    _BROKEN_BODY,
    Fault,
    _broken_answer,
    _expires_in_as_string,
)
from lwa_middleware.testing._grants import (
    Customer,
    _Grant,
    _new_secret,
    _RefreshGrant,
)
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _NO_STORE,
    _basic_credentials,
    _error,
    _first,
    _json,
    _missing,
    _Response,
    _whole_seconds,
)

# -- /auth/o2/token ------------------------------------------------------------

_INVALID_GRANT: Final = "The authorization code is invalid, expired, used or not yours."


def _token(
    state: _State, method: str, headers: Message[str, str], body: bytes, kind: Fault | None
) -> _Response:
    # Without the opt-in, the Origin header is ignored: no CORS, as documented.
    origin = headers.get("Origin") if state.token_cors else None
    if method == "OPTIONS":
        return _preflight(state, origin)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if kind in _BROKEN_BODY:
        response = _broken_answer("token", kind, None, state.client_id, state.now())
    else:
        response = _token_answer(state, headers, form)
        if kind is Fault.EXPIRES_IN_STRING:
            response = _expires_in_as_string(response)
    if origin:
        with state.lock:
            client = state.clients.get(_first(form, "client_id") or "")
            allowed = client is not None and client.allows_origin(origin)
        if allowed:
            response.headers.extend(_cors_headers(origin))
    return response


def _cors_headers(origin: str) -> list[tuple[str, str]]:
    # No Allow-Credentials: the token endpoint never needs cookies.
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def _preflight(state: _State, origin: str | None) -> _Response:
    """A CORS preflight: allowed for the Allowed Origins of any registered app."""
    response = _Response(204, b"", None, [("Allow", "POST, OPTIONS")])
    with state.lock:
        clients = list(state.clients.values())
    if origin and any(c.allows_origin(origin) for c in clients):
        response.headers += [
            *_cors_headers(origin),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
    return response


def _token_answer(
    state: _State, headers: Message[str, str], form: list[tuple[str, str]]
) -> _Response:
    grant_type = _first(form, "grant_type")
    if not grant_type:
        return _missing("grant_type")
    if grant_type not in ("authorization_code", "refresh_token"):
        return _error(
            400, "unsupported_grant_type", "The authorization grant type is not supported."
        )
    authenticated = _authenticate(state, headers, form)
    if isinstance(authenticated, _Response):
        return authenticated
    client_id, with_secret = authenticated
    if grant_type == "authorization_code":
        redeemed = _redeem_code(state, form, client_id, with_secret)
    else:
        redeemed = _redeem_refresh_token(state, form, client_id, with_secret)
    if isinstance(redeemed, _Response):
        return redeemed
    customer, scopes, refresh = redeemed
    now = state.now()
    # Whole seconds: Amazon's expires_in is an integer, and the token lives
    # exactly as long as it says.
    lifetime = max(1, _whole_seconds(state.access_token_lifetime))
    grant = _Grant(customer, scopes, client_id, now, now + lifetime)
    payload: dict[str, object] = {"access_token": state.add_token(grant)}
    if refresh is not None:
        payload["refresh_token"] = refresh
    payload.update(token_type="bearer", expires_in=lifetime)
    return _json(200, payload, *_NO_STORE)


def _invalid_client(basic: bool) -> _Response:
    # RFC 6749 section 5.2: a client that tried Basic gets the challenge back.
    challenge = [("WWW-Authenticate", 'Basic realm="token"')] if basic else []
    return _error(401, "invalid_client", "Client authentication failed.", *challenge)


def _authenticate(
    state: _State, headers: Message[str, str], form: list[tuple[str, str]]
) -> tuple[str, bool] | _Response:
    """Who is asking, and whether it proved it with the client secret.

    The secret comes in the body (``client_secret``) or as HTTP Basic, not
    both.  A client that sends no secret is a public (PKCE) client: it is
    identified, not authenticated, and gets no refresh token.
    """
    basic = _basic_credentials(headers.get("Authorization"))
    secret: str | None
    form_id = _first(form, "client_id")
    form_secret = _first(form, "client_secret")
    if basic == "malformed":
        return _invalid_client(True)
    if isinstance(basic, tuple):
        if form_secret is not None:
            return _error(
                400, "invalid_request", "Use one client authentication method, not two."
            )
        if form_id and form_id != basic[0]:
            return _invalid_client(True)
        client_id, secret = basic
    else:
        if not form_id:
            return _missing("client_id")
        client_id, secret = form_id, form_secret
    with state.lock:
        client = state.clients.get(client_id)
    if client is None:
        return _invalid_client(basic is not None)
    if secret is not None and not hmac.compare_digest(
        secret.encode("utf-8", "surrogateescape"), client.client_secret.encode()
    ):
        return _invalid_client(basic is not None)
    return client_id, secret is not None


def _verifier_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 section 4.6."""
    if not _PKCE_VALUE.fullmatch(verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        derived = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        derived = verifier
    return hmac.compare_digest(derived, challenge)


# What a redeemed code or refresh token grants: customer, scopes, refresh token.
_Redeemed = tuple[Customer, tuple[str, ...], str | None]


def _redeem_code(
    state: _State, form: list[tuple[str, str]], client_id: str, with_secret: bool
) -> _Redeemed | _Response:
    code = _first(form, "code")
    if not code:
        return _missing("code")
    redirect_uri = _first(form, "redirect_uri")
    if not redirect_uri:
        return _missing("redirect_uri")
    verifier = _first(form, "code_verifier")
    if not with_secret and verifier is None:
        return _error(
            400, "invalid_request", "The request must carry client_secret or code_verifier."
        )
    # Popped whatever comes next: a code is tried once, right or wrong.
    with state.lock:
        pending = state.codes.pop(code, None)
    if (
        pending is None
        or pending.expires_at <= state.now()
        or pending.client_id != client_id
        or pending.redirect_uri != redirect_uri
    ):
        return _error(400, "invalid_grant", _INVALID_GRANT)
    if pending.code_challenge:
        if verifier is None or not _verifier_matches(
            verifier, pending.code_challenge, pending.code_challenge_method
        ):
            return _error(400, "invalid_grant", "The code verifier does not match the challenge.")
    elif verifier is not None:
        return _error(
            400, "invalid_grant", "A code_verifier was sent for a code issued without a challenge."
        )
    refresh: str | None = None
    if with_secret:
        refresh = _new_secret("Atzr|")
        with state.lock:
            state.refresh_tokens[refresh] = _RefreshGrant(
                pending.customer, pending.scopes, client_id
            )
    return pending.customer, pending.scopes, refresh


def _redeem_refresh_token(
    state: _State, form: list[tuple[str, str]], client_id: str, with_secret: bool
) -> _Redeemed | _Response:
    if not with_secret:
        return _missing("client_secret")
    refresh = _first(form, "refresh_token") or ""
    if not refresh:
        return _missing("refresh_token")
    with state.lock:
        held = state.refresh_tokens.get(refresh)
    if held is None or held.client_id != client_id:
        return _error(400, "invalid_grant", "The refresh token is invalid.")
    if not state.rotate_refresh_tokens:
        # The refresh token stays valid and is handed back as it came.
        return held.customer, held.scopes, refresh
    # Rotation ("Login with Amazon Access Tokens": a refresh gives a new
    # refresh token): the old one is void, taken under the lock so two
    # concurrent refreshes cannot both rotate it.
    rotated = _new_secret("Atzr|")
    with state.lock:
        if state.refresh_tokens.pop(refresh, None) is None:
            return _error(400, "invalid_grant", "The refresh token is invalid.")
        state.refresh_tokens[rotated] = held
    return held.customer, held.scopes, rotated
