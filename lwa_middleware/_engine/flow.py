"""The tokeninfo → ``aud`` check → profile flow, written once and sans-IO.

Like httpx's auth flows, :func:`resolution_flow` is a generator that *yields*
batches of :class:`UpstreamRequest` and is *sent* back, for each batch, one
:class:`UpstreamResponse` or :class:`UpstreamFailure` per request, in order.
It returns a :class:`Resolved`, or raises an :class:`~.errors.AuthError`. It
never touches a socket, so the sync (``httpx2.Client``) and async
(``httpx2.AsyncClient``) drivers in :mod:`.upstream` are a few lines each, and
the whole decision logic is tested without any I/O.

A batch of two requests means "send these concurrently". When a token has
the shape of a real LWA token, tokeninfo and profile go out together, so a
cold token costs one round trip; the profile answer is thrown away unless
tokeninfo says the token is live *and* its ``aud`` is ours. A token of any
other shape asks tokeninfo alone first, so garbage costs LWA one call.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import AuthError, InvalidToken, UpstreamUnavailable
from .identity import PROFILE_USER_ID, Identity, infer_scopes

__all__ = [
    "FAILURE_CODES",
    "Flow",
    "Lookup",
    "Resolved",
    "UpstreamFailure",
    "UpstreamRequest",
    "UpstreamResponse",
    "resolution_flow",
    "seconds_field",
]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to LWA: a GET, or (the sign-in's token endpoint) a POST of
    ``body``. Tokens and secrets travel in ``headers`` or ``body`` only, never
    in ``url``, and are never shown."""

    endpoint: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    method: str = "GET"
    body: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """One HTTP answer of LWA. ``request_id`` is its ``x-amzn-RequestId``, which
    Amazon's support asks for about a failed call ("Obtain Customer Profile
    Information"); it is logged and traced, never sent to the client."""

    status: int
    body: bytes = field(repr=False)
    retry_after: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """No HTTP answer: refused, reset, timed out, oversized. ``reason`` is safe to
    log; ``code`` is one fixed word of :data:`FAILURE_CODES`, for metrics labels."""

    reason: str
    code: str = "transport"


#: Why a lookup failed, as metric labels and log/span fields: no HTTP answer
#: (``timeout``, ``connection``, ``certificate``, ``too_large``, ``transport``),
#: an answer that is an error (``status``), one that is nonsense
#: (``unusable``), LWA calling our request malformed (``invalid_request``).
FAILURE_CODES = (
    "timeout",
    "connection",
    "certificate",
    "too_large",
    "transport",
    "status",
    "unusable",
    "invalid_request",
)


Outcome = UpstreamResponse | UpstreamFailure


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a successful flow proves.

    :param identity: the customer.
    :param expires_mono: ``time.monotonic()`` deadline of the token, measured
        from *before* tokeninfo was asked, so it errs on the early side.
    :param has_profile: whether the profile was fetched (else ``identity``
        carries only what tokeninfo proves).
    :param request_id: LWA's id of the answer that decided (not compared).
    """

    identity: Identity
    expires_mono: float
    has_profile: bool
    #: ``x-amzn-RequestId`` of the last LWA answer read (the profile's, when asked).
    request_id: str | None = field(default=None, compare=False)


Flow = Generator[list[UpstreamRequest], list[Outcome], Resolved]


@dataclass(frozen=True, slots=True)
class Lookup:
    """A flow plus what a driver must know to schedule it before it starts.

    :param lwa_shaped: whether the token has the shape of an LWA token. Other
        tokens may hold only part of the in-flight slots, so a flood of
        garbage cannot take every slot from real customers.
    """

    flow: Flow
    lwa_shaped: bool = True

_REJECTED = "The access token is invalid, expired or revoked."
_OTHER_CLIENT = "The access token was issued to another client."


class _Nonsense(ValueError):
    """LWA answered something that is not a valid answer."""


def _json_object(response: UpstreamResponse) -> dict[str, Any]:
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        raise _Nonsense("not JSON") from None
    if not isinstance(data, dict):
        raise _Nonsense("not a JSON object")
    return data


def _retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    # isascii(): str.isdigit() also accepts "²" and other digits int() refuses.
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return max(1, min(int(value), 3600))
    return None


_E = TypeVar("_E", bound=AuthError)


def _about(error: _E, endpoint: str, outcome: Outcome, code: str | None = None) -> _E:
    """``error``, annotated with the LWA call that decided it (for logs,
    events and spans only: :meth:`~.errors.AuthError.response` never shows these)."""
    error.lwa_endpoint = endpoint
    if isinstance(outcome, UpstreamFailure):
        error.lwa_reason = outcome.code
    else:
        error.lwa_status = outcome.status
        error.lwa_request_id = outcome.request_id
        error.lwa_reason = code
    return error


def _unavailable(endpoint: str, outcome: Outcome, detail: str = "") -> UpstreamUnavailable:
    if isinstance(outcome, UpstreamFailure):
        why = outcome.reason
        retry = None
    else:
        why = detail or f"HTTP {outcome.status}"
        retry = _retry_after(outcome.retry_after)
    error = UpstreamUnavailable(f"LWA {endpoint} is unavailable ({why}).", retry_after=retry)
    return _about(error, endpoint, outcome, "unusable" if detail else "status")


def _is_rejection(response: UpstreamResponse) -> bool:
    """LWA's definitive "no": 400/401 with an OAuth error body."""
    if response.status not in (400, 401):
        return False
    try:
        error = _json_object(response).get("error")
    except _Nonsense:
        return False
    return error in ("invalid_token", "invalid_request", "expired_token", "unauthorized")


#: The profile errors of "Obtain Customer Profile Information": ``400
#: invalid_request`` and ``invalid_token``, ``401 insufficient_scope``, ``500
#: ServerError``. 401 (and 403) ``invalid_token`` are read as well: older
#: emulators and RFC 6750 servers answer that way, and it means the same.
_PROFILE_REFUSALS: dict[str, frozenset[int]] = {
    "invalid_token": frozenset({400, 401, 403}),
    "insufficient_scope": frozenset({401, 403}),
    "invalid_request": frozenset({400}),
}

#: Profile's ``400 invalid_request`` after tokeninfo vouched for the token:
#: our request was malformed, which no retry by the client fixes and which is
#: not the token's fault, so it is neither a rejection nor remembered. It is
#: an upstream error (503): it counts towards the breaker, like any answer
#: that makes every lookup fail.
_OUR_REQUEST = "LWA profile refused the request as malformed (invalid_request)."


def _profile_refusal(outcome: Outcome) -> str | None:
    """The documented profile error ``outcome`` is, by status and ``error``, if any."""
    if isinstance(outcome, UpstreamFailure):
        return None
    try:
        error = _json_object(outcome).get("error")
    except _Nonsense:
        return None
    if isinstance(error, str) and outcome.status in _PROFILE_REFUSALS.get(error, ()):
        return error
    return None


#: The longest remaining life (``exp``) believed from tokeninfo. LWA access
#: tokens live an hour (see ``resolver.ACCESS_TOKEN_LIFETIME``); an answer
#: claiming more than a day is clamped, so a broken upstream cannot pin an
#: identity in a cache for ever.
MAX_CLAIMED_LIFETIME = 86_400.0


#: A number sent as a JSON string: digits, an optional sign and fraction.
#: Stricter than ``float()``, which also takes ``"1_000"``, ``"nan"`` or ``"1e9"``.
_NUMERIC = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,9})?")


def seconds_field(value: Any, name: str = "exp") -> float:
    """A duration LWA sent as a JSON number or a numeric string, capped at
    :data:`MAX_CLAIMED_LIFETIME`.

    Amazon's pages show ``expires_in`` both ways (a number on "Login with
    Amazon Access Tokens", the string ``"3600"`` on the Alexa account-linking
    "Step 5" page), so both are read; anything else is a :class:`ValueError`
    (the caller answers 503, never 500).
    """
    if isinstance(value, bool):
        raise _Nonsense(f"{name} is a boolean")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # a JSON integer of 400 digits
            raise _Nonsense(f"{name} is out of range") from None
    elif isinstance(value, str):
        if not _NUMERIC.fullmatch(value.strip()):
            raise _Nonsense(f"{name} is not numeric")
        seconds = float(value.strip())
    else:
        raise _Nonsense(f"{name} is missing or of the wrong type")
    if not math.isfinite(seconds):
        raise _Nonsense(f"{name} is not a finite number")
    return min(seconds, MAX_CLAIMED_LIFETIME)


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Nonsense(f"{key} is not a string")


def _profile_fields(data: dict[str, Any]) -> dict[str, str | None]:
    legacy = data.get("Profile")
    if isinstance(legacy, dict) and "user_id" not in data:
        return {
            "user_id": _optional_str(legacy, "CustomerId"),
            "name": _optional_str(legacy, "Name"),
            "email": _optional_str(legacy, "PrimaryEmail"),
            "postal_code": _optional_str(legacy, "PostalCode"),
        }
    return {key: _optional_str(data, key) for key in ("user_id", "name", "email", "postal_code")}


def _tokeninfo_verdict(
    info: Outcome, client_ids: frozenset[str]
) -> tuple[str, str, float, str | None]:
    """``(user_id, client id, seconds left, request id)`` of a live token of
    ours, from tokeninfo's answer ``info``; else raise what that answer means."""
    if isinstance(info, UpstreamFailure) or info.status != 200:
        if isinstance(info, UpstreamResponse) and _is_rejection(info):
            raise _about(InvalidToken(_REJECTED), "tokeninfo", info)
        raise _unavailable("tokeninfo", info)
    try:
        data = _json_object(info)
        aud = data.get("aud")
        user_id = data.get("user_id")
        remaining = seconds_field(data.get("exp"))
        if not isinstance(aud, str) or not isinstance(user_id, str) or not user_id:
            raise _Nonsense("aud or user_id is missing or not a string")
    except _Nonsense as exc:
        raise _unavailable("tokeninfo", info, f"unusable answer: {exc}") from None
    if aud not in client_ids:
        raise _about(InvalidToken(_OTHER_CLIENT), "tokeninfo", info)
    if remaining <= 0:
        raise _about(InvalidToken(_REJECTED), "tokeninfo", info)
    # The configured string, not this answer's copy: a hundred thousand cached
    # identities then share one client id instead of holding one each.
    return user_id, next(cid for cid in client_ids if cid == aud), remaining, info.request_id


def _without_profile(prof: Outcome, identity: Identity) -> Identity:
    """``identity`` (with no profile) when the profile call ``prof`` failed
    for want of the scope; else raise what its failure means."""
    verdict = _profile_refusal(prof)
    if verdict == "insufficient_scope":
        # A live token with no profile scope (say, only Alexa scopes):
        # tokeninfo still proves who it is.
        return identity
    if verdict == "invalid_token":
        # Expired, revoked or app removed between the two calls.
        raise _about(InvalidToken(_REJECTED), "profile", prof)
    if verdict == "invalid_request":
        raise _about(UpstreamUnavailable(_OUR_REQUEST), "profile", prof, "invalid_request")
    raise _unavailable("profile", prof)


def resolution_flow(
    token: str,
    *,
    tokeninfo_url: str,
    profile_url: str,
    client_ids: frozenset[str],
    want_profile: bool = True,
    parallel: bool = True,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Flow:
    """Resolve ``token`` to an identity; see the module docstring.

    :param want_profile: fetch the profile (name, email, postal code). When
        false, tokeninfo alone proves ``user_id`` (scope ``profile:user_id``).
    :param parallel: send tokeninfo and profile in one batch.
    :raises InvalidToken: LWA rejected the token, or it belongs to another client.
    :raises UpstreamUnavailable: LWA failed or answered nonsense.
    """
    tokeninfo = UpstreamRequest("tokeninfo", tokeninfo_url, {"x-amz-access-token": token})
    profile = UpstreamRequest(
        "profile",
        profile_url,
        {"authorization": "Bearer " + token, "accept": "application/json"},
    )
    started_mono, started_wall = monotonic(), wall()
    batch = [tokeninfo, profile] if want_profile and parallel else [tokeninfo]
    outcomes = yield batch
    info = outcomes[0]
    user_id, aud, remaining, request_id = _tokeninfo_verdict(info, client_ids)
    expires_mono = started_mono + remaining
    expires_at = started_wall + remaining

    if not want_profile:
        identity = Identity(
            user_id=user_id,
            scopes=frozenset({PROFILE_USER_ID}),
            client_id=aud,
            expires_at=expires_at,
        )
        return Resolved(identity, expires_mono, has_profile=False, request_id=request_id)

    prof = outcomes[1] if len(outcomes) > 1 else (yield [profile])[0]
    if isinstance(prof, UpstreamFailure) or prof.status != 200:
        # Raises, but for a token with no profile scope.
        identity = _without_profile(
            prof, Identity(user_id=user_id, client_id=aud, expires_at=expires_at)
        )
        request_id = prof.request_id if isinstance(prof, UpstreamResponse) else None
        return Resolved(identity, expires_mono, has_profile=True, request_id=request_id)
    try:
        fields = _profile_fields(_json_object(prof))
    except _Nonsense as exc:
        raise _unavailable("profile", prof, f"unusable answer: {exc}") from None
    if fields["user_id"] != user_id:
        # Two LWA answers disagree about who this is: trust neither, and do
        # not remember the verdict, since it is not the token's fault.
        mismatch = InvalidToken("LWA gave inconsistent answers for this token.", remember=False)
        raise _about(mismatch, "profile", prof)
    identity = Identity(
        user_id=user_id,
        name=fields["name"],
        email=fields["email"],
        postal_code=fields["postal_code"],
        scopes=infer_scopes(**fields),
        client_id=aud,
        expires_at=expires_at,
    )
    return Resolved(identity, expires_mono, has_profile=True, request_id=prof.request_id)
