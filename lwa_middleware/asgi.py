"""The pure ASGI 3 middleware."""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, MutableMapping
from hashlib import sha256
from time import monotonic
from typing import Any

from starlette.authentication import AuthCredentials, UnauthenticatedUser

from .config import Settings
from .core import Authenticator, Stats
from .errors import (
    AuthError,
    ConfigurationError,
    MissingToken,
    UnsupportedScope,
    UpstreamUnavailable,
)
from .identity import Identity, expand_scopes
from .routes import Access, Policy, PolicySpec
from .tokens import TOKEN_HEADERS, extract_token, strip_query

# Module constants: an enum member lookup per request is measurably slower.
_PUBLIC = Access.PUBLIC
_OPTIONAL = Access.OPTIONAL

__all__ = ["FrozenCredentials", "LWAMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BEARER = (b"Bearer ", b"bearer ")

#: RFC 6455 close codes: policy violation, and "try again later".
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013


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


def _credentials(identity: Identity) -> AuthCredentials:
    return _credentials_for(identity.scopes)


@functools.lru_cache(maxsize=256)
def _credentials_for(scopes: frozenset[str]) -> AuthCredentials:
    # One read-only object per distinct scope set: nothing is built per
    # request or per identity.
    return FrozenCredentials(sorted(expand_scopes(scopes)))


def _is_preflight(scope: Scope) -> bool:
    # A browser's CORS preflight: OPTIONS, with Origin and
    # Access-Control-Request-Method (Fetch standard). Both are required, so a
    # hand-made OPTIONS with one header is judged like any other request.
    if scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


def _refuse_django_script_name(app: object) -> None:
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


class LWAMiddleware:
    """Protects an ASGI app with Login with Amazon access tokens.

    For each HTTP or WebSocket request it finds the route's policy, reads the
    token (``Authorization: Bearer``, ``x-amz-access-token`` or
    ``?access_token=``), resolves it through LWA (tokeninfo, ``aud`` check,
    profile) or its caches, and either answers the error itself or calls the
    app with ``scope["lwa.identity"]`` (an :class:`~lwa_middleware.Identity`,
    or ``None`` when anonymous), ``scope["user"]`` and ``scope["auth"]`` set,
    so Starlette's ``request.user`` and ``@requires(...)`` work. ``lifespan``
    and other scope types pass through untouched.

    **When not to use it.** If your clients send LWA *authorization codes* or
    you need Amazon Pay or Alexa tokens, this is not the tool: it checks
    access tokens of customers of *your* LWA client. Don't put it behind a
    proxy that already strips ``Authorization``.

    **Security.** ``client_id`` is mandatory: a token issued to any other app
    (``aud``) is refused, or anyone could replay a token their own app
    obtained. Failures of LWA fail *closed* (503 with ``Retry-After``);
    opt into ``stale_if_error`` to keep serving identities whose tokens have
    not expired. Cached identities are never served past their token's
    expiry, and a token revoked at Amazon stays usable here for at most
    ``cache_ttl`` seconds (call :meth:`revoke` on logout).

    :param app: the ASGI app to protect.
    :param client_id: your LWA client id, or a collection of them.
    :param api_base_url: LWA API origin (default ``https://api.amazon.com``);
        plain ``http://`` only on loopback, as for the bundled emulator.
    :param region: ``"na"``, ``"eu"`` or ``"fe"``, instead of ``api_base_url``.
    :param routes: path pattern → policy: ``"public"``, ``"optional"``,
        ``"required"`` or a list of scopes. Patterns are exact (``/me``),
        ``*`` for one segment, or end in ``/**`` for a whole subtree.
    :param default: policy for paths no pattern matches (``"required"``).
    :param cache_ttl: seconds a resolved token is served without asking LWA
        again (300). This is also the longest a revocation goes unnoticed.
    :param cache_maxsize: resolved tokens kept in memory (10 000).
    :param options: see :class:`~lwa_middleware.config.Settings`:
        ``negative_cache_ttl``, ``timeout``, ``connect_timeout``,
        ``retry_after``, ``realm``, ``stale_if_error``,
        ``strip_credentials``, ``allow_preflight``, ``max_concurrent_lookups``,
        ``breaker_threshold``, ``breaker_cooldown``, ``redis_url``,
        ``cache_key_secret``, ``on_event``.

    Example::

        from starlette.applications import Starlette
        from lwa_middleware import LWAMiddleware

        app = LWAMiddleware(
            Starlette(routes=...),
            client_id="amzn1.application-oa2-client.0123",
            routes={"/health": "public", "/": "optional", "/shipping/**": ["postal_code"]},
        )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client_id: str | Collection[str] | None = None,
        api_base_url: str | None = None,
        region: str | None = None,
        routes: Mapping[str, PolicySpec | Policy] | None = None,
        default: PolicySpec | Policy = "required",
        cache_ttl: float | None = None,
        cache_maxsize: int | None = None,
        **options: Any,
    ) -> None:
        _refuse_django_script_name(app)
        self.app = app
        self.settings = Settings.from_options(
            client_id=client_id,
            api_base_url=api_base_url,
            region=region,
            routes=routes,
            default=default,
            cache_ttl=cache_ttl,
            cache_maxsize=cache_maxsize,
            **options,
        )
        self.authenticator = Authenticator(self.settings, decorate=_credentials)
        self._lookup = self.settings.routes.lookup
        self._lookup_mounted = self.settings.routes.lookup_mounted
        self._resolve = self.authenticator.resolve_async
        self._peek = self.authenticator.cache.peek
        self._stats = self.authenticator.stats
        self._on_event = self.settings.on_event
        self._realm = self.settings.realm
        self._strip = self.settings.strip_credentials
        self._preflight = self.settings.allow_preflight
        self._sources = self.settings.token_sources
        # With header tokens turned off the hot path finds no header, so every
        # request goes through _judge(), which refuses them.
        self._token_headers = TOKEN_HEADERS if "header" in self._sources else frozenset()

    def __repr__(self) -> str:
        return f"LWAMiddleware({self.app!r}, {self.authenticator!r})"

    @property
    def stats(self) -> Stats:
        """Cache and upstream counters (hits, misses, coalesced, …)."""
        return self.authenticator.stats

    async def invalidate(self, token: str) -> None:
        """Forget what is cached about ``token``, here and in the shared cache.

        The next request with it asks LWA again (to pick up a changed profile,
        or a revocation made at Amazon). To refuse the token from now on, as
        a logout should, use :meth:`revoke`. Raises
        :class:`~lwa_middleware.SharedCacheError` if Redis could not be written.
        """
        await self.authenticator.ainvalidate(token)

    async def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires (logout), here and on every worker.

        Other workers sharing the Redis cache refuse it within
        ``local_cache_ttl`` seconds (5 by default). Raises
        :class:`~lwa_middleware.SharedCacheError` if Redis could not be written
        (it is refused here all the same, and published when Redis is back).
        """
        await self.authenticator.arevoke(token)

    async def aclose(self) -> None:
        """Close pooled connections to LWA (and Redis)."""
        await self.authenticator.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, receive, send)
                return
            # A scope type this middleware does not know could carry a
            # request it has no rule for: fail closed.
            raise UnsupportedScope(kind)
        root_path = scope.get("root_path")
        if root_path:
            policy = self._lookup_mounted(scope["path"], root_path)
        else:
            policy = self._lookup(scope["path"])
        if policy.access is _PUBLIC:
            await self.app(scope, receive, send)
            return

        # Hot path: one credential header, no token in the query, token cached.
        # It reads the raw header bytes without parsing them: only tokens that
        # were validated and resolved earlier are in the cache, so anything
        # unusual misses here and gets the full treatment in _judge(). The
        # check is inlined (a function call costs ~5% here); wsgi.py has its
        # twin, and both must keep to the rule: a fresh entry whose
        # ``serves`` covers ``policy.hot``.
        raw = value = None
        seen = 0
        token_headers = self._token_headers
        for name, value in scope["headers"]:
            if name in token_headers:
                seen += 1
                if name == b"x-amz-access-token":
                    raw = value
                else:
                    raw = value[7:] if value.startswith(_BEARER) else None
        entry = None
        if seen == 1 and raw is not None:
            query = scope.get("query_string")
            if not query or (b"access_token" not in query and b"%" not in query):
                entry = self._peek(sha256(raw).digest())
                if (
                    entry is not None
                    and entry.fresh_until > monotonic()
                    and policy.hot <= entry.serves
                ):
                    self._stats.hits += 1
                    if self._on_event is not None:
                        self.authenticator.emit("hit")
                    scope["lwa.identity"] = scope["user"] = entry.identity
                    scope["auth"] = entry.extra
                else:
                    entry = None
            query = None
        # No credential may stay in this frame while the app runs: error
        # reporters (Sentry, capture_locals) record the locals of every frame.
        raw = value = None
        if entry is None:
            judged = await self._judge(scope, send, kind, policy)
            if judged is None:
                return
            scope = judged
        elif self._strip:
            scope = self._stripped(scope)
        await self.app(scope, receive, send)

    async def _judge(self, scope: Scope, send: Send, kind: str, policy: Policy) -> Scope | None:
        """The scope to call the app with, or ``None`` once the refusal was sent.

        It returns before the app runs, so the token it read never sits in a
        frame below the app's.
        """
        if self._preflight and kind == "http" and _is_preflight(scope):
            return scope
        try:
            token = extract_token(
                scope["headers"], scope.get("query_string", b""), self._sources
            )
            if token is None:
                if policy.access is not _OPTIONAL:
                    raise MissingToken()
                scope["lwa.identity"] = None
                scope["user"] = UnauthenticatedUser()
                scope["auth"] = AuthCredentials()
            else:
                entry = await self._resolve(token, policy)
                if policy.scopes:
                    Authenticator.authorize(entry, policy)
                scope["lwa.identity"] = scope["user"] = entry.identity
                scope["auth"] = entry.extra
        except AuthError as error:
            await self._refuse(error, scope, send)
            return None
        return self._stripped(scope) if self._strip else scope

    async def _refuse(self, error: AuthError, scope: Scope, send: Send) -> None:
        status, headers, body = error.response(self._realm)
        if scope["type"] == "websocket":
            extensions = scope.get("extensions") or {}
            if "websocket.http.response" not in extensions:
                # No way to say why: close before accepting (the server answers
                # the handshake with 403), with a code that tells "retry later"
                # from "not allowed".
                code = (
                    WS_TRY_AGAIN_LATER
                    if isinstance(error, UpstreamUnavailable)
                    else WS_POLICY_VIOLATION
                )
                await send({"type": "websocket.close", "code": code, "reason": error.error})
                return
            # The ASGI denial-response extension: the client gets the real
            # status, challenge or Retry-After, and JSON body, as over HTTP.
            start, chunk = "websocket.http.response.start", "websocket.http.response.body"
        else:
            start, chunk = "http.response.start", "http.response.body"
        await send({"type": start, "status": status, "headers": headers})
        await send({"type": chunk, "body": body})

    @staticmethod
    def _stripped(scope: Scope) -> Scope:
        # A copy: the server's scope object may be shared with other layers.
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
