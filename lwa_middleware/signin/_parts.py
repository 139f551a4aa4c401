"""The sign-in flow's values: replies, sessions, grants, PKCE and pages.

Kept apart from :mod:`.core` (the steps), so each stays short.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._engine._observe import fields
from .._engine.breaker import Throttle
from .._engine.config import _is_loopback
from .._engine.errors import ConfigurationError, UpstreamUnavailable
from .._engine.flow import UpstreamFailure, UpstreamResponse, seconds_field
from ._origins import canonical_origin

__all__ = ["Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a sign-in step answers; the glue makes it a framework response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass(frozen=True, slots=True)
class _Session:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds (the SignIn clock) the access token expires
    ends_at: float  # epoch seconds the session ends, whatever happens
    user_id: str
    user: Any

    def __repr__(self) -> str:  # never a token
        return f"_Session(user_id={self.user_id!r}, expires_at={self.expires_at!r})"

    def dump(self) -> bytes:
        return json.dumps(
            {
                "at": self.access_token,
                "rt": self.refresh_token,
                "exp": self.expires_at,
                "end": self.ends_at,
                "uid": self.user_id,
                "user": self.user,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> _Session | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["at"]),
                str(data["rt"]),
                float(data["exp"]),
                float(data["end"]),
                str(data["uid"]),
                data.get("user"),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class _Grant:
    access_token: str
    refresh_token: str | None
    expires_in: float

    def __repr__(self) -> str:
        return f"_Grant(expires_in={self.expires_in!r})"


class Refusals:
    """Warnings about one anonymous request each (a forged ``state``, an
    ``error=`` or a made-up code at the callback; a ``/login`` while the
    store or LWA is down): at most one per :attr:`INTERVAL` seconds per
    event and reason, saying how many it stands for, as the middleware's own
    warnings. Anyone can send such requests as fast as they like; one line
    each would let them drown the log."""

    #: As the middleware's (``resolver.WARNING_INTERVAL``).
    INTERVAL = 10.0

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._throttles: dict[str, Throttle] = {}

    def warn(
        self,
        message: str,
        reason: str | None,
        request_id: str | None = None,
        *,
        event: str = "signin_failed",
        status: int | None = None,
    ) -> None:
        """Log ``message`` unless one of the same ``event`` and ``reason`` was
        logged less than :attr:`INTERVAL` ago (then count it)."""
        key = f"{event}:{reason}"
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = self._throttles.setdefault(key, Throttle(self.INTERVAL))
        held = throttle.allow()
        if held is None:
            return
        more = f" ({held} more since the last warning)" if held else ""
        self._logger.warning(
            "%s%s",
            message,
            more,
            extra=fields(event, reason=reason, status=status, request_id=request_id),
        )


class _Refused(Exception):
    """LWA's token endpoint answered 4xx; ``error`` is its OAuth error code,
    ``request_id`` its ``x-amzn-RequestId`` (for the log an operator sends Amazon)."""

    def __init__(self, error: str, request_id: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.request_id = request_id


def grant_of(response: UpstreamResponse, retry_after: int) -> _Grant:
    """The token endpoint's answer read: the grant; :class:`_Refused` on a 4xx
    (but 429), a 503 on anything else odd."""
    data = _json_dict(response)
    if 400 <= response.status < 500 and response.status != 429:
        error = data.get("error")
        raise _Refused(error if isinstance(error, str) else "invalid_request", response.request_id)
    at, rt = data.get("access_token"), data.get("refresh_token")
    expires = 0.0  # missing or unusable: refused below
    # A number or a numeric string: Amazon's pages show both.
    with contextlib.suppress(ValueError):
        expires = seconds_field(data.get("expires_in"), "expires_in")
    if (
        response.status != 200
        or not isinstance(at, str)
        or not at
        or (rt is not None and not isinstance(rt, str))
        or expires <= 0
    ):
        raise token_answer_unusable(response, retry_after)
    return _Grant(at, rt or None, expires)


def _json_dict(response: UpstreamResponse) -> dict[str, Any]:
    """The answer's JSON object; empty if it is none."""
    try:
        data = json.loads(response.body)
    except ValueError:  # UnicodeDecodeError included
        return {}
    return data if isinstance(data, dict) else {}


def token_unreachable(failure: UpstreamFailure, retry_after: int) -> UpstreamUnavailable:
    """No answer from the token endpoint: a 503, why (``certificate``, ``timeout``…) on it."""
    return _token_unavailable(failure.reason, retry_after, failure.code)


def token_answer_unusable(response: UpstreamResponse, retry_after: int) -> UpstreamUnavailable:
    """An answer of the token endpoint that is an error or nonsense: a 503,
    with LWA's status and request id on it for the log."""
    status = response.status
    why, reason = ("an unusable answer", "unusable") if status == 200 else ("an error", "status")
    return _token_unavailable(
        f"HTTP {status}, {why}", retry_after, reason, status, response.request_id
    )


def _token_unavailable(
    why: str,
    retry_after: int,
    reason: str,
    status: int | None = None,
    request_id: str | None = None,
) -> UpstreamUnavailable:
    # ``why`` is fixed words; the rest is for logs and never shown to the client.
    error = UpstreamUnavailable(f"LWA's token endpoint is unavailable ({why}).", retry_after)
    error.lwa_endpoint, error.lwa_reason = "token", reason
    error.lwa_status, error.lwa_request_id = status, request_id
    return error


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _origin_of(url: str, what: str) -> tuple[str, bool]:
    """``(origin, is_https)`` of ``url``; plain http only on loopback.

    The origin is canonical (lower-cased host, no default port), as the
    ``Origin`` headers it is compared with are (:mod:`._origins`)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ConfigurationError(f"{what} {url!r} is not a URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.fragment:
        raise ConfigurationError(f"{what} {url!r} must be an https:// URL without a fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(f"{what} {url!r}: plain http is only allowed on loopback")
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials")
    origin = canonical_origin(url)
    if origin is None:
        raise ConfigurationError(f"{what} {url!r} has no origin")
    return origin, parts.scheme == "https"


def _page(status: int, title: str, message: str, *extra: tuple[str, str]) -> Reply:
    body = (
        "<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><p>{1}</p>".format(
            html.escape(title), message
        )
    ).encode()
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
        *extra,
    )
    return Reply(status, headers, body)
