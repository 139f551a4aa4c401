"""The one error tree of lwa-middleware, and how each error becomes an HTTP answer.

::

    LWAError                        base of everything this package raises
    ├── ConfigurationError          bad arguments at construction (never per request)
    ├── UnsupportedScope            an ASGI scope type this middleware cannot judge
    ├── SharedCacheError            revoke()/invalidate() could not reach Redis in time
    └── AuthError                   a request is refused; carries status, RFC 6750 code
        ├── MissingToken            401, challenge without ``error=`` (RFC 6750 §3.1)
        ├── InvalidRequest          400 invalid_request (two tokens, malformed header)
        ├── InvalidToken            401 invalid_token (unknown, expired, revoked, wrong aud)
        ├── InsufficientScope       403 insufficient_scope, with ``scope=``
        └── UpstreamUnavailable     503 temporarily_unavailable + ``Retry-After``
            ├── BreakerOpen         503 while the circuit breaker fails fast
            └── Saturated           503 when every in-flight lookup slot stays busy

Messages never contain a token: they are built from fixed text and from what LWA
said about the token, never from the token itself. Every :class:`AuthError`
knows how to render itself (:meth:`AuthError.response`) so the ASGI and WSGI
adapters share the exact same status, headers and JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Self

__all__ = [
    "AuthError",
    "BreakerOpen",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "LWAError",
    "MissingToken",
    "Saturated",
    "SharedCacheError",
    "UnsupportedScope",
    "UpstreamUnavailable",
]


#: The ``realm`` of challenges unless configured (the ``realm`` option).
DEFAULT_REALM = "lwa"


class LWAError(Exception):
    """Base class of every exception raised by lwa-middleware."""


class ConfigurationError(LWAError, ValueError):
    """An argument given to a middleware (or found in the environment) is wrong."""


class UnsupportedScope(LWAError, RuntimeError):
    """The ASGI server sent a scope type that is neither ``http``, ``websocket``
    nor ``lifespan``. It is refused (fail closed), never passed through."""

    def __init__(self, kind: object) -> None:
        super().__init__(
            f"LWAMiddleware refuses ASGI scope type {str(kind)[:40]!r}: it judges 'http' "
            "and 'websocket' requests and passes 'lifespan' through; nothing else"
        )


class SharedCacheError(LWAError):
    """``revoke(token)`` or ``invalidate(token)`` could not be written to the
    shared cache (Redis), even with its own longer deadline and retries.

    It is raised only after the change took effect in this process; other
    workers may not see it. A revocation is still remembered by this process
    and published again as soon as Redis answers. Never a request failure:
    requests treat Redis trouble as a cache miss.
    """


def _quote(value: str) -> str:
    # RFC 7230 quoted-string: escape backslash and double quote; drop what a
    # header cannot carry so a description can never break the header.
    cleaned = "".join(c for c in value if " " <= c <= "~")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AuthError(LWAError):
    """A request is refused. Subclasses fix :attr:`status` and :attr:`error`."""

    status: int = 401
    error: str = "invalid_token"
    #: Whether the RFC 6750 challenge carries ``error=`` (not for a missing token).
    challenge_error: bool = True
    #: The LWA call that decided this error, for logs, events and spans (issue
    #: 21); never part of :meth:`response`: the client sees none of them.
    #: ``lwa_reason`` is a word of ``flow.FAILURE_CODES`` for upstream errors.
    lwa_endpoint: str | None = None
    lwa_status: int | None = None
    lwa_request_id: str | None = None
    lwa_reason: str | None = None

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    def copy(self) -> Self:
        """The same verdict as a new exception, with no traceback.

        Raising one stored exception again and again would chain every
        raiser's frames (and their locals) onto it: a remembered or shared
        verdict is raised as a copy.
        """
        clone = type(self).__new__(type(self))
        clone.args = self.args
        clone.__dict__.update(self.__dict__)
        return clone

    def challenge(self, realm: str) -> str:
        """The ``WWW-Authenticate`` value for this error."""
        parts = [f"Bearer realm={_quote(realm)}"]
        if self.challenge_error:
            parts.append(f"error={_quote(self.error)}")
            parts.append(f"error_description={_quote(self.description)}")
        return ", ".join(parts)

    def response(self, realm: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``(status, headers, body)`` ready to send; headers are lowercase bytes."""
        body = json.dumps({"error": self.error, "error_description": self.description}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        headers.extend(self.extra_headers(realm))
        return self.status, headers, body

    def extra_headers(self, realm: str) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", self.challenge(realm).encode("latin-1"))]

    def text_headers(self, realm: str) -> list[tuple[str, str]]:
        """:meth:`response`'s headers as text, for frameworks' response classes
        (the one rendering every integration uses)."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.response(realm)[1]]


class MissingToken(AuthError):
    """No LWA token on a route that needs one."""

    status = 401
    error = "missing_token"
    challenge_error = False

    def __init__(self, description: str = "An LWA access token is required.") -> None:
        super().__init__(description)


class InvalidRequest(AuthError):
    """The request carries credentials in a malformed way."""

    status = 400
    error = "invalid_request"


class InvalidToken(AuthError):
    """LWA does not vouch for the token, or it belongs to another client."""

    status = 401
    error = "invalid_token"

    def __init__(self, description: str, *, remember: bool = True) -> None:
        super().__init__(description)
        #: Whether the negative cache may keep this verdict.
        self.remember = remember


class InsufficientScope(AuthError):
    """The token is valid but lacks scopes the route requires."""

    status = 403
    error = "insufficient_scope"

    def __init__(
        self,
        required: Iterable[str],
        description: str | None = None,
        *,
        missing: Iterable[str] | None = None,
    ) -> None:
        #: Every scope the resource needs: the challenge's ``scope=`` names them
        #: all (RFC 6750 §3.1), so a client asks for a token that will do.
        self.required = tuple(sorted(required))
        #: The ones the token lacks, for the human-readable description.
        self.missing = tuple(sorted(missing)) if missing is not None else self.required
        super().__init__(
            description
            or "The access token lacks the scope(s) this resource needs: "
            + " ".join(self.missing)
            + "."
        )

    def challenge(self, realm: str) -> str:
        return super().challenge(realm) + f", scope={_quote(' '.join(self.required))}"


class UpstreamUnavailable(AuthError):
    """LWA could not give a usable answer: fail closed, ask the client to retry."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def extra_headers(self, realm: str) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after or 1).encode())]


class BreakerOpen(UpstreamUnavailable):
    """LWA failed repeatedly; the circuit breaker refuses lookups for a moment.

    Not itself an upstream failure: it neither counts towards the breaker
    nor is logged, and a stale identity may still be served.
    """


class Saturated(UpstreamUnavailable):
    """Every in-flight lookup slot stayed busy for as long as a request may wait.

    This process is overloaded, not LWA: a flood of new (often garbage) tokens
    against a healthy but slow LWA must not open the breaker and turn real
    customers away for a cooldown. So, like :class:`BreakerOpen`, it neither
    counts towards the breaker nor as an upstream error (``stats.saturated``
    instead), and a stale identity may still be served.
    """
