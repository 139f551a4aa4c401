"""The pure ASGI 3 middleware: a thin translation of :class:`~.gate.Gate`."""

from __future__ import annotations

from hashlib import sha256
from typing import Unpack

from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._app_kind import refuse_wsgi_app
from ._asgi_parts import credentials_for, lifespan, refusal, refuse_django_script_name, strip_scope
from ._login_redirect import login_location, redirect_headers
from .cache import Entry
from .config import Options, Settings
from .errors import AuthError, UnsupportedScope
from .gate import PASS, Gate, Resolve
from .identity import REALM_KEY
from .resolver import AsyncControls, Resolver
from .routes import Access, Policy
from .tokens import TOKEN_HEADERS

__all__ = ["LWAMiddleware"]

_PUBLIC = Access.PUBLIC  # a module constant: an enum lookup per request shows
_BEARER = (b"Bearer ", b"bearer ")
_PERCENT = ord("%")  # tokens.may_carry_token, inlined: an int needle is the fast one
_HTTP_KINDS = ("http", "websocket")


class LWAMiddleware(AsyncControls):
    """Protects an ASGI app with Login with Amazon access tokens.

    For each HTTP or WebSocket request it finds the route's policy, reads the
    token (``Authorization: Bearer``, ``x-amz-access-token`` or
    ``?access_token=``), resolves it through LWA (tokeninfo, ``aud`` check,
    profile) or its caches, and either answers the refusal itself or calls the
    app with ``scope["lwa.identity"]`` (an :class:`~lwa_middleware.Identity`,
    or ``None`` when anonymous), ``scope["user"]``, ``scope["auth"]`` (so
    Starlette's ``request.user`` and ``@requires(...)`` work) and
    ``scope["lwa.realm"]``. ``lifespan`` passes through (the pooled clients
    are built at its startup and closed at its shutdown); any other scope type
    is refused.

    **When not to use it.** If your clients send LWA *authorization codes* or
    you need Amazon Pay or Alexa tokens, this is not the tool: it checks
    access tokens of customers of *your* LWA client. Don't put it behind a
    proxy that already strips ``Authorization``.

    **Security.** ``client_id`` is mandatory: a token issued to any other app
    (``aud``) is refused, or anyone could replay a token their own app
    obtained. Failures of LWA fail *closed* (503 with ``Retry-After``).
    Cached identities are never served past their token's expiry, and a
    token revoked at Amazon stays usable here for at most ``cache_ttl``
    seconds: call :meth:`revoke` on logout.

    :param app: the ASGI app to protect.
    :param settings: options validated elsewhere (:meth:`Settings.from_options`).
    :param options: every option, typed (the ``Options`` ``TypedDict``) and
        listed in docs/options.md: ``client_id``, ``routes``, ``default``,
        ``cache_ttl``, ``redis_url``, ...

    Example::

        app = LWAMiddleware(
            Starlette(routes=...),
            client_id="amzn1.application-oa2-client.0123",
            routes={"/health": "public", "/": "optional", "/shipping/**": ["postal_code"]},
        )
    """

    def __init__(
        self, app: ASGIApp, *, settings: Settings | None = None, **options: Unpack[Options]
    ) -> None:
        refuse_wsgi_app(app)
        refuse_django_script_name(app)
        self.app = app
        if settings is None:
            options = _with_public_docs(app, options)
        self.settings = settings or Settings.from_options(**options)
        self.resolver = Resolver(self.settings)
        self.gate = gate = Gate(self.settings, self.resolver)
        self._lookup, self._lookup_mounted = gate.lookup, gate.lookup_mounted
        self._memo_get = self.settings.routes.memo_get
        resolver = self.resolver
        self._peek, self._stats, self._clock = resolver.cache.peek, resolver.stats, resolver.clock
        self._hooked = self.resolver.hooked
        self._strip, self._realm = self.settings.strip_credentials, self.settings.realm
        # With header tokens turned off the hot path finds no header, so every
        # request goes to the gate, which refuses them.
        self._token_headers = TOKEN_HEADERS if gate.headers_allowed else ()

    def __repr__(self) -> str:
        return f"LWAMiddleware({self.app!r}, {self.resolver!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in _HTTP_KINDS:
            if kind != "lifespan":
                raise UnsupportedScope(kind)  # no rule for it: fail closed
            await lifespan(self.app, self.resolver, self.aclose, scope, receive, send)
            return
        root_path = scope.get("root_path")
        path = scope["path"]
        if root_path:
            policy = self._lookup_mounted(path, root_path)
        else:  # a path seen before: one dict probe, not a call into the route table
            # Called from a local: ``self.attr(...)`` of a callable held by the
            # instance is a method call CPython 3.11 cannot specialise (~0.1 µs).
            memo_get = self._memo_get
            policy = memo_get(path) or self._lookup(path)
        if policy.access is _PUBLIC:
            # The realm also says "the middleware saw this request": a guarded
            # view on a public route answers 401, on an unwrapped app it raises.
            scope[REALM_KEY] = self._realm
            await self.app(scope, receive, send)
            return
        if self._hit(scope, policy) is None:
            judged = await self._judge(scope, send, policy)
            if judged is None:
                return
            scope = judged
        elif self._strip:
            scope = strip_scope(scope)
        await self.app(scope, receive, send)

    def _hit(self, scope: Scope, policy: Policy) -> Entry | None:
        """The fast path (Gate.hit, inlined; a property test ties the two):
        one credential header, no token in the query, a cached entry that
        serves the policy with its scopes; the scope then carries its
        identity. A function call costs ~5% here: this is the only one.

        It returns before the app runs, so no credential stays in a frame
        while the app runs (error reporters, Sentry's capture_locals, record
        every frame's locals)."""
        raw = None
        seen = 0
        token_headers = self._token_headers
        for name, value in scope["headers"]:
            if name in token_headers:
                seen += 1
                raw = value if name == b"x-amz-access-token" else (
                    value[7:] if value.startswith(_BEARER) else None
                )
        if seen != 1 or raw is None:
            return None
        query = scope.get("query_string")
        if query and (_PERCENT in query or query.find(b"access_token") >= 0):
            return None
        peek, clock = self._peek, self._clock  # locals, as memo_get in __call__
        entry = peek(sha256(raw).digest())
        if entry is None or entry.fresh_until <= clock() or not policy.hot <= entry.holds:
            return None
        self._stats.hits += 1
        if self._hooked:
            self.resolver.emit("hit")
        scope["lwa.identity"] = scope["user"] = entry.identity
        scope[REALM_KEY] = self._realm
        try:  # free when no exception: no test on the hot path
            scope["auth"] = entry.extra
        except AttributeError:  # the entry's first use here
            scope["auth"] = credentials_for(entry)
        return entry

    async def _judge(self, scope: Scope, send: Send, policy: Policy) -> Scope | None:
        """The scope to call the app with, or ``None`` once the refusal was sent.

        It returns before the app runs, so the token it read never sits in a
        frame below the app's."""
        gate = self.gate
        try:
            verdict = await gate.adecide(
                policy,
                scope.get("method", "GET"),
                scope["headers"],
                scope.get("query_string", b""),
                websocket=scope["type"] == "websocket",
            )
            if verdict is PASS:
                return scope
            scope[REALM_KEY] = self._realm
            if isinstance(verdict, Resolve):
                entry = await self.resolver.resolve_async(verdict.token, policy)
                scope["lwa.identity"] = scope["user"] = gate.admit(entry, policy).identity
                scope["auth"] = credentials_for(entry)
            else:
                scope["lwa.identity"], scope["user"] = None, UnauthenticatedUser()
                scope["auth"] = AuthCredentials()
        except AuthError as error:
            for message in self._refusal(error, scope):
                await send(message)
            return None
        return strip_scope(scope) if self._strip else scope

    def _refusal(self, error: AuthError, scope: Scope) -> list[Message]:
        """The refusal; a 303 to the sign-in page instead for a page load
        without a token, with ``login_redirect``."""
        if scope["type"] == "http":
            location = login_location(
                self.settings.login_redirect,
                error,
                scope.get("method", "GET"),
                scope["headers"],
                _full_path(scope),
                scope.get("query_string", b"").decode("latin-1"),
            )
            if location is not None:
                start = {"type": "http.response.start", "status": 303}
                start["headers"] = redirect_headers(location)
                return [start, {"type": "http.response.body", "body": b""}]
        return refusal(error, self._realm, scope)


def _full_path(scope: Scope) -> str:
    # uvicorn and Starlette put root_path in path, hypercorn does not.
    root: str = scope.get("root_path") or ""
    path: str = scope["path"]
    return path if path.startswith(root) else root + path


def _with_public_docs(app: ASGIApp, options: Options) -> Options:
    """``options`` with a FastAPI app's docs pages public, unless ``public_docs=False``
    or the route table names them itself."""
    if not options.get("public_docs", True):
        return options
    from ..integrations._fastapi_docs import docs_paths

    paths = docs_paths(app)
    if not paths:
        return options
    routes = {**dict.fromkeys(paths, "public"), **(options.get("routes") or {})}
    return Options(**{**options, "routes": routes})
