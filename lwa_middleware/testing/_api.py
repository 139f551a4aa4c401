"""The endpoints a resource server calls, and the emulator's mint endpoint.

``GET /auth/o2/tokeninfo`` and ``GET /user/profile`` answer as
``api.amazon.com`` does, bent by the request's fault if it has one;
``POST /_emulator/tokens`` mints a token from a JSON body, for tests that
are not written in Python.  Each function turns one request into one
:class:`~lwa_middleware.testing._wire._Response`; the server sends it.
"""

from __future__ import annotations

import dataclasses
import json
from email.message import Message

from lwa_middleware.testing._faults import _BROKEN_BODY, Fault, _broken_answer
from lwa_middleware.testing._grants import _grant_from_spec, _new_user_id
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _INSUFFICIENT_SCOPE,
    _INVALID_TOKEN,
    _MISSING_TOKEN,
    _NO_STORE,
    _PROFILE_SCOPES,
    _bearer,
    _error,
    _first,
    _json,
    _legacy_profile_payload,
    _profile_error,
    _profile_payload,
    _Response,
    _tokeninfo_payload,
    _whole_seconds,
)

# The format faults (EXP_STRING, LEGACY_PROFILE, USER_ID_MISMATCH) describe
# a healthy server answering in another format, so they are applied only
# after the token checks: an invalid token is still rejected.


def _tokeninfo(
    state: _State, headers: Message[str, str], query: list[tuple[str, str]], kind: Fault | None
) -> _Response:
    token = headers.get("x-amz-access-token") or _first(query, "access_token")
    grant = state.grant_for(token)
    if kind in _BROKEN_BODY:
        return _broken_answer("tokeninfo", kind, grant, state.client_id, state.now())
    if not token:
        return _json(400, _MISSING_TOKEN)
    if grant is None:
        return _json(400, _INVALID_TOKEN)
    info = _tokeninfo_payload(grant, state.now())
    if kind is Fault.EXP_STRING:
        info["exp"] = str(info["exp"])
        info["iat"] = str(info["iat"])
    return _json(200, info)


def _profile(
    state: _State, headers: Message[str, str], query: list[tuple[str, str]], kind: Fault | None
) -> _Response:
    token = (
        _bearer(headers.get("Authorization"))
        or headers.get("x-amz-access-token")
        or _first(query, "access_token")
    )
    grant = state.grant_for(token)
    if kind in _BROKEN_BODY:
        return _broken_answer("profile", kind, grant, state.client_id, state.now())
    # "Obtain Customer Profile Information": 400 invalid_request (missing
    # token), 400 invalid_token (expired, revoked, malformed, invalid),
    # 401 insufficient_scope.
    if not token:
        return _profile_error(400, _MISSING_TOKEN)
    if grant is None:
        return _profile_error(400, _INVALID_TOKEN)
    if not set(grant.scopes) & set(_PROFILE_SCOPES):
        challenge = ("WWW-Authenticate", 'Bearer error="insufficient_scope"')
        return _profile_error(401, _INSUFFICIENT_SCOPE, challenge)
    customer = grant.customer
    if kind is Fault.USER_ID_MISMATCH:
        customer = dataclasses.replace(customer, user_id=_new_user_id())
    if kind is Fault.LEGACY_PROFILE:
        return _json(200, {"Profile": _legacy_profile_payload(customer, grant.scopes)})
    return _json(200, _profile_payload(customer, grant.scopes))


def _mint(state: _State, body: bytes) -> _Response:
    try:
        spec = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "invalid_request", "The body is not valid JSON.")
    if not isinstance(spec, dict):
        return _error(400, "invalid_request", "The body must be a JSON object.")
    try:
        grant = _grant_from_spec(spec, state.client_id, state.now())
    except ValueError as exc:
        return _error(400, "invalid_request", str(exc))
    token = state.add_token(grant)
    lifetime = grant.expires_at - grant.issued_at
    return _json(
        200,
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": _whole_seconds(lifetime),
            "scope": " ".join(grant.scopes),
        },
        *_NO_STORE,
    )
