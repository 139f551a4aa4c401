"""The fault model: :class:`Fault`, where faults apply, and what they answer.

:meth:`LWAEmulator.inject <lwa_middleware.testing.LWAEmulator.inject>` puts
faults on a per-endpoint schedule kept here; the server takes one fault per
request from it.  Faults that replace the answer (errors, HTML, broken or
oversized JSON) are built here too.  Faults that act on the connection
(``RESET``, ``HANG``, ``SLOW_DRIP``) are carried out by the server, and
``DOWN`` by the emulator, which closes its listening socket.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Final

from lwa_middleware.testing._grants import BUILTIN_CUSTOMERS, _Grant, _new_secret
from lwa_middleware.testing._wire import (
    _FAULTABLE,
    ENDPOINTS,
    _error,
    _json,
    _json_body,
    _profile_error,
    _profile_payload,
    _Response,
    _tokeninfo_payload,
)

__all__ = ["Fault"]

_DRIP_INTERVAL: Final = 0.2
_OVERSIZED_BYTES: Final = 4 * 1024 * 1024


class Fault(enum.StrEnum):
    """Ways the emulator can misbehave, for :meth:`LWAEmulator.inject`.

    ``SERVER_ERROR``
        ``500`` with ``{"error": "ServerError", ...}``.
    ``UNAVAILABLE``
        ``503`` with a ``Retry-After`` header.
    ``THROTTLED``
        ``429`` with ``{"error": "TooManyRequests", ...}`` and ``Retry-After``.
    ``BAD_JSON``
        ``200`` labelled JSON whose body does not parse.
    ``HTML``
        ``200`` with an HTML error page, as a captive portal or a
        misconfigured proxy answers.
    ``WRONG_TYPES``
        ``200`` JSON whose fields have the wrong types (``"aud": 123``,
        ``"exp": [1]``, ``"user_id": null``; profile ``"user_id": 5``).
    ``OVERSIZED``
        ``200`` valid JSON of about 4 MiB (padded with a long string).
    ``SLOW_DRIP``
        Headers at once, then the normal body one byte every 0.2 s.
    ``RESET``
        The connection is reset (``RST``) without any response.
    ``HANG``
        The request is read and never answered, until :meth:`~LWAEmulator.stop`,
        :meth:`~LWAEmulator.reset` or :meth:`~LWAEmulator.clear_faults`.
    ``LEGACY_PROFILE``
        Profile only: the old ``{"Profile": {"CustomerId": ...}}`` shape.
    ``EXP_STRING``
        Tokeninfo only: ``exp`` and ``iat`` as strings (``"exp": "3599"``).
    ``USER_ID_MISMATCH``
        Profile only: a ``user_id`` other than the one tokeninfo reports.
    ``EXPIRES_IN_STRING``
        Token endpoint only: a successful answer's ``expires_in`` as a
        string (``"expires_in": "3600"``), the shape Amazon's Alexa
        account-linking page shows; errors are unchanged.
    ``DOWN``
        Nothing listens: connections are refused until
        :meth:`~LWAEmulator.clear_faults` or :meth:`~LWAEmulator.reset`
        reopens the same port.
    """

    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    BAD_JSON = "bad_json"
    HTML = "html"
    WRONG_TYPES = "wrong_types"
    OVERSIZED = "oversized"
    SLOW_DRIP = "slow_drip"
    RESET = "reset"
    HANG = "hang"
    LEGACY_PROFILE = "legacy_profile"
    EXP_STRING = "exp_string"
    USER_ID_MISMATCH = "user_id_mismatch"
    EXPIRES_IN_STRING = "expires_in_string"
    DOWN = "down"


# Faults that only make sense for one endpoint.  Injecting them "everywhere"
# targets that endpoint alone, so a ``times`` budget is not eaten by the other.
_FAULT_ENDPOINTS: Final[Mapping[Fault, tuple[str, ...]]] = {
    Fault.LEGACY_PROFILE: ("profile",),
    Fault.USER_ID_MISMATCH: ("profile",),
    Fault.EXP_STRING: ("tokeninfo",),
    Fault.EXPIRES_IN_STRING: ("token",),
}


# Faults that break the body whatever the token, valid or not.
_BROKEN_BODY: Final = (Fault.BAD_JSON, Fault.WRONG_TYPES, Fault.OVERSIZED)


# -- scheduling ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Injection:
    kind: Fault
    retry_after: int


class _FaultSchedule:
    """Faults pending at one endpoint.

    Counted faults (``times=N``) are served first, in injection order; the
    standing fault (``times=None``) applies whenever none is pending.
    """

    __slots__ = ("queued", "standing")

    def __init__(self) -> None:
        self.standing: _Injection | None = None
        self.queued: collections.deque[tuple[_Injection, int]] = collections.deque()

    def add(self, injection: _Injection, times: int | None) -> None:
        # A new standing fault replaces the old one; counted ones queue up.
        if times is None:
            self.standing = injection
        else:
            self.queued.append((injection, times))

    def take(self) -> _Injection | None:
        if not self.queued:
            return self.standing
        injection, left = self.queued[0]
        if left <= 1:
            self.queued.popleft()
        else:
            self.queued[0] = (injection, left - 1)
        return injection


def _fresh_schedules() -> dict[str, _FaultSchedule]:
    return {e: _FaultSchedule() for e in _FAULTABLE}


def _check_endpoint(endpoint: str | None) -> tuple[str, ...]:
    """The endpoints named by ``endpoint``: ``None`` is the resource server's two."""
    if endpoint is None:
        return ENDPOINTS
    if endpoint not in _FAULTABLE:
        raise ValueError(f"endpoint must be one of {_FAULTABLE} or None, not {endpoint!r}")
    return (endpoint,)


def _fault_targets(fault: Fault, endpoint: str | None) -> tuple[str, ...]:
    """The endpoints ``fault`` goes to when injected at ``endpoint``."""
    targets = _check_endpoint(endpoint)
    allowed = _FAULT_ENDPOINTS.get(fault)
    if allowed is None:
        return targets
    if endpoint is None:
        return allowed
    if endpoint not in allowed:
        raise ValueError(f"{fault.name} only applies to {allowed[0]}")
    return targets


def _coerce_fault(kind: Fault | str) -> Fault:
    if isinstance(kind, Fault):
        return kind
    try:
        return Fault(kind)
    except ValueError:
        pass
    try:
        return Fault[kind.upper()]
    except KeyError:
        raise ValueError(f"unknown fault: {kind!r}") from None


# -- faulty answers ------------------------------------------------------------

_HTML_ERROR_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center>\n"
    b"<hr><center>proxy</center></body></html>\n"
)


def _transport_fault(fault: _Injection, endpoint: str = "") -> _Response | None:
    """The answer of a fault that replaces any answer, or ``None``.

    At the profile endpoint, JSON errors carry ``request_id`` like its
    other errors (see :func:`._wire._profile_error`).
    """
    error = _profile_error_of if endpoint == "profile" else _error
    retry = ("Retry-After", str(fault.retry_after))
    match fault.kind:
        case Fault.SERVER_ERROR:
            return error(500, "ServerError", "Internal Server Error")
        case Fault.UNAVAILABLE:
            return error(503, "ServiceUnavailable", "Service Unavailable", retry)
        case Fault.THROTTLED:
            return error(429, "TooManyRequests", "The request was throttled, slow down.", retry)
        case Fault.HTML:
            return _Response(200, _HTML_ERROR_PAGE, "text/html; charset=utf-8")
        case _:
            return None


def _profile_error_of(
    status: int, error: str, description: str, *headers: tuple[str, str]
) -> _Response:
    payload = {"error": error, "error_description": description}
    return _profile_error(status, payload, *headers)


def _expires_in_as_string(response: _Response) -> _Response:
    """``Fault.EXPIRES_IN_STRING``: a successful token answer with ``"expires_in": "3600"``."""
    if response.status != 200:
        return response
    payload = json.loads(response.body)
    payload["expires_in"] = str(payload["expires_in"])
    return _Response(200, _json_body(payload), response.content_type, response.headers)


def _broken_answer(
    endpoint: str, kind: Fault | None, grant: _Grant | None, client_id: str, now: float
) -> _Response:
    """A ``200`` whose body is unusable, whatever token (or code) was sent.

    At the token endpoint the request is not processed: its code is not
    used up, and the tokens in the answer are worthless.
    """
    if grant is None:
        grant = _Grant(BUILTIN_CUSTOMERS[0], ("profile",), client_id, now, now + 3600)
    payload: dict[str, object]
    if endpoint == "tokeninfo":
        payload = _tokeninfo_payload(grant, now)
    elif endpoint == "token":
        payload = {
            "access_token": _new_secret("Atza|"),
            "refresh_token": _new_secret("Atzr|"),
            "token_type": "bearer",
            "expires_in": 3600,
        }
    else:
        payload = _profile_payload(grant.customer, grant.scopes)
    if kind is Fault.BAD_JSON:
        # Cut mid-document: labelled JSON, valid UTF-8, yet unparseable.
        whole = _json_body(payload)
        return _Response(200, whole[: len(whole) // 2])
    if kind is Fault.WRONG_TYPES:
        if endpoint == "tokeninfo":
            payload.update(user_id=None, aud=123, app_id=["app"], exp=[1], iat="yesterday")
        elif endpoint == "token":
            payload.update(access_token=123, refresh_token=None, token_type=["bearer"])
            payload["expires_in"] = "3600"
        else:
            payload.update(user_id=5, name=["Ada"], email=False, postal_code=98109)
        return _json(200, payload)
    payload["padding"] = "x" * _OVERSIZED_BYTES
    return _json(200, payload)
