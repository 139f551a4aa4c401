"""The ASGI middleware's parts that are not the request decision: what it
attaches for Starlette, how it words a refusal (HTTP or WebSocket), how it
strips credentials from a scope, and what it checks about the app it wraps."""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import AuthError, ConfigurationError, UpstreamUnavailable
from .tokens import TOKEN_HEADERS, strip_query

if TYPE_CHECKING:
    from .cache import Entry
    from .resolver import Resolver

__all__ = [
    "WS_POLICY_VIOLATION",
    "WS_TRY_AGAIN_LATER",
    "FrozenCredentials",
    "credentials_for",
    "lifespan",
    "refusal",
    "refuse_django_script_name",
    "strip_scope",
]

#: RFC 6455 close codes: policy violation, and "try again later".
WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER = 1008, 1013


class FrozenCredentials(AuthCredentials):
    """Starlette's ``AuthCredentials``, read-only.

    One object is shared by every identity holding the same scope set (so a
    hit builds nothing), which is only safe because nobody can change it:
    ``scopes`` is a tuple, and attributes cannot be set. A view that did
    ``request.auth.scopes.append("admin")`` would otherwise grant ``admin`` to
    every other user with that scope set, process-wide.
    """

    __slots__ = ()

    def __init__(self, scopes: Iterable[str] = ()) -> None:
        object.__setattr__(self, "scopes", tuple(scopes))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("request.auth is read-only: it is shared by every such identity")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("request.auth is read-only: it is shared by every such identity")

    def __repr__(self) -> str:
        return f"FrozenCredentials({list(self.scopes)!r})"


def credentials_for(entry: Entry) -> AuthCredentials:
    """``scope["auth"]`` for ``entry``, also kept in its adapter slot
    (:attr:`Entry.extra <.cache.Entry.extra>`), which the hot path reads
    directly: built on the entry's first use here, not per request."""
    credentials = entry.extra = _credentials(entry.granted)
    return credentials


@functools.lru_cache(maxsize=256)
def _credentials(granted: frozenset[str]) -> AuthCredentials:
    # One shared, read-only object per scope set (see FrozenCredentials).
    return FrozenCredentials(sorted(granted))


_SHUTDOWN = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


async def lifespan(
    app: ASGIApp,
    resolver: Resolver,
    aclose: Callable[[], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Pass a lifespan scope to ``app``, warming ``resolver`` at startup and
    calling ``aclose`` at shutdown."""

    async def relay(message: Message) -> None:
        if message["type"] in _SHUTDOWN:
            await aclose()
        await send(message)

    async def starting() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Warm start: httpx2, the SSL context and this loop's clients are
            # built before the first request, not by it.
            await resolver.warm_async()
        return message

    await app(scope, starting, relay)


def refuse_django_script_name(app: object) -> None:
    """Refuse to wrap Django's ASGI handler when ``FORCE_SCRIPT_NAME`` is set.

    Django then routes on ``scope["path"]`` minus ``FORCE_SCRIPT_NAME``
    (ignoring ``root_path``), a path this middleware never sees, so its route
    table would judge one URL while Django serves another. The Django
    integration judges ``request.path_info``, the path Django routes on.
    """
    handlers = sys.modules.get("django.core.handlers.asgi")
    if handlers is None or not isinstance(app, handlers.ASGIHandler):
        return
    from django.conf import settings

    if settings.configured and getattr(settings, "FORCE_SCRIPT_NAME", None):
        raise ConfigurationError(
            "LWAMiddleware cannot wrap Django's ASGI handler while FORCE_SCRIPT_NAME is set: "
            "Django routes on a path this middleware does not see. Put "
            "'lwa_middleware.integrations.django.LWAMiddleware' in settings.MIDDLEWARE instead"
        )


def refusal(error: AuthError, realm: str, scope: Scope) -> list[Message]:
    """The ASGI messages that answer ``error`` on ``scope``."""
    status, headers, body = error.response(realm)
    if scope["type"] == "websocket":
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            # No way to say why: close before accepting (the server answers
            # the handshake with 403), telling "retry later" from "no".
            code = (
                WS_TRY_AGAIN_LATER if isinstance(error, UpstreamUnavailable)
                else WS_POLICY_VIOLATION
            )
            return [{"type": "websocket.close", "code": code, "reason": error.error}]
        # The ASGI denial-response extension: the real status, challenge or
        # Retry-After, and JSON body, as over HTTP.
        start, chunk = "websocket.http.response.start", "websocket.http.response.body"
    else:
        start, chunk = "http.response.start", "http.response.body"
    return [
        {"type": start, "status": status, "headers": headers},
        {"type": chunk, "body": body},
    ]


def strip_scope(scope: Scope) -> Scope:
    """A copy of ``scope`` without its token (headers, query string, raw path).

    A copy: the server's scope object may be shared with other layers.
    """
    scope = dict(scope)
    scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in TOKEN_HEADERS]
    query = scope.get("query_string", b"")
    stripped = strip_query(query)
    if stripped != query:
        scope["query_string"] = stripped
        raw_path = scope.get("raw_path")
        if raw_path and b"?" in raw_path:
            path, _, raw_query = raw_path.partition(b"?")
            scope["raw_path"] = path + (b"?" + strip_query(raw_query) if stripped else b"")
    return scope
