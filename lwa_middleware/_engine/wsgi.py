"""The PEP 3333 WSGI middleware: a thin translation of :class:`~.gate.Gate`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from hashlib import sha256
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Unpack

from ._app_kind import refuse_asgi_app
from ._login_redirect import login_location, redirect_headers
from ._observe import fields
from .config import Options, Settings
from .errors import AuthError
from .gate import PASS, Gate, Resolve
from .identity import IDENTITY_KEY, REALM_KEY
from .resolver import BlockingControls, Resolver
from .routes import Access, Policy, wsgi_path
from .tokens import environ_headers, header_bytes, strip_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .cache import Entry
else:
    StartResponse = WSGIApplication = WSGIEnvironment = Any

__all__ = ["LWAWSGIMiddleware", "ajudge_environ", "judge_environ"]


def redirect_text_headers(location: str) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in redirect_headers(location)]


_BEARER = ("Bearer ", "bearer ")
_PUBLIC = Access.PUBLIC
logger = logging.getLogger("lwa_middleware")


def _upgrade(environ: WSGIEnvironment) -> bool:
    """Whether the request is a WebSocket handshake: WSGI WebSocket libraries
    (flask-sock, gevent-websocket) take the socket over from inside the app,
    so its cookie must pass the same origin check as under ASGI. Any
    ``websocket`` token in ``Upgrade`` counts (case-insensitive, RFC 6455)."""
    upgrade = environ.get("HTTP_UPGRADE")
    return isinstance(upgrade, str) and any(
        part.strip().lower() == "websocket" for part in upgrade.split(",")
    )


def judge_environ(
    gate: Gate,
    resolver: Resolver,
    environ: WSGIEnvironment,
    path: str | None = None,
    script_name: str | None = None,
) -> AuthError | None:
    """Judge a request by its environ, without calling the app.

    On success it sets ``environ["lwa.identity"]`` (unset on public routes and
    passed preflights), strips credentials if configured, and returns ``None``;
    otherwise it returns the error to answer. The Django
    integration uses it on ``request.META``, with ``path`` and
    ``script_name`` as Django decoded them (``path_info`` and its prefix).
    """
    if path is None and script_name is None and not environ.get("SCRIPT_NAME"):
        # The common case inlined (each call here is ~5% of a hit): a path
        # seen before is one dict probe.
        path = environ.get("PATH_INFO") or "/"
        if not path.isascii():
            path = wsgi_path(path)
        # Called from a local: ``gate.attr(...)`` of a callable held by the
        # instance is a method call CPython 3.11 cannot specialise (~0.1 µs).
        memo_get = gate.memo_get
        policy = memo_get(path) or gate.lookup(path)
        if policy.access is _PUBLIC:
            return None
    else:
        found = _policy(gate, environ, path, script_name)
        if found is None:
            return None
        policy = found
    entry = _hit(gate, environ, policy)
    if entry is not None:
        environ[IDENTITY_KEY], environ[REALM_KEY] = entry.identity, gate.realm
        if resolver.settings.strip_credentials:
            strip_environ(environ)
        return None
    try:
        verdict = gate.decide_blocking(policy, *_inputs(gate, environ), websocket=_upgrade(environ))
        if verdict is PASS:
            return None
        if isinstance(verdict, Resolve):
            entry = gate.admit(resolver.resolve_sync(verdict.token, policy), policy)
    except AuthError as error:
        return error
    _settle(gate, resolver, environ, entry)
    return None


async def ajudge_environ(
    gate: Gate,
    resolver: Resolver,
    environ: WSGIEnvironment,
    path: str | None = None,
    script_name: str | None = None,
) -> AuthError | None:
    """:func:`judge_environ` on an event loop: a session's token and the
    lookup are awaited (:meth:`Gate.adecide`, :meth:`Resolver.resolve_async`),
    never run in a thread. The Django integration's async path uses it on the
    ``request.META`` of an ``ASGIRequest``."""
    policy = _policy(gate, environ, path, script_name)
    if policy is None:
        return None
    entry = _hit(gate, environ, policy)
    try:
        if entry is None:
            verdict = await gate.adecide(
                policy, *_inputs(gate, environ), websocket=_upgrade(environ)
            )
            if verdict is PASS:
                return None
            if isinstance(verdict, Resolve):
                entry = gate.admit(await resolver.resolve_async(verdict.token, policy), policy)
    except AuthError as error:
        return error
    _settle(gate, resolver, environ, entry)
    return None


def _policy(
    gate: Gate, environ: WSGIEnvironment, path: str | None, script_name: str | None
) -> Policy | None:
    """The route's policy; ``None`` on a public route (nothing to read)."""
    if path is None:
        path = environ.get("PATH_INFO") or "/"
        path = path if path.isascii() else wsgi_path(path)
    if script_name is None:
        script_name = wsgi_path(environ.get("SCRIPT_NAME") or "")
    # A path seen before (no SCRIPT_NAME): one dict probe.
    policy = (not script_name and gate.memo_get(path)) or gate.lookup_below(path, script_name)
    return None if policy.access is _PUBLIC else policy


def _hit(gate: Gate, environ: WSGIEnvironment, policy: Policy) -> Entry | None:
    """The fast path, :meth:`Gate.hit` inlined (a property test ties the two):
    one plain token header (cached tokens are visible ASCII), no token in the
    query, a cached entry serving the policy with its scopes."""
    query = environ.get("QUERY_STRING", "")
    auth, amz = environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_AMZ_ACCESS_TOKEN")
    raw = amz if auth is None else (auth[7:] if amz is None and auth.startswith(_BEARER) else None)
    if raw is None or not raw.isascii() or "access_token" in query or "%" in query:
        return None
    peek, clock = gate._peek, gate._clock  # locals, as memo_get in judge_environ
    entry = peek(sha256(raw.encode("ascii")).digest()) if gate.headers_allowed else None
    if entry is not None and entry.fresh_until > clock() and policy.hot <= entry.holds:
        gate._stats.hits += 1
        if gate._resolver.hooked:
            gate._resolver.emit("hit")
        return entry
    return None


def _inputs(gate: Gate, environ: WSGIEnvironment) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """What :meth:`Gate.decide` reads: method, credential headers, query."""
    method = environ.get("REQUEST_METHOD", "GET")
    headers = environ_headers(environ, method, gate.session is not None)
    return method, headers, header_bytes(environ.get("QUERY_STRING", ""))


def _settle(gate: Gate, resolver: Resolver, environ: WSGIEnvironment, entry: Entry | None) -> None:
    environ[IDENTITY_KEY] = entry.identity if entry is not None else None
    environ[REALM_KEY] = gate.realm
    if resolver.settings.strip_credentials:
        strip_environ(environ)


class LWAWSGIMiddleware(BlockingControls):
    """Protects a WSGI app (Flask, Django, Pyramid, bare PEP 3333) with LWA tokens.

    It mirrors :class:`~lwa_middleware.LWAMiddleware` option for option (see
    its docstring and docs/options.md) and puts the
    identity in ``environ["lwa.identity"]`` (``None`` when anonymous). Threads
    asking for one new token share one lookup, of at most ``timeout`` seconds.

    **When not to use it.** Under an ASGI server use the ASGI middleware: this
    one blocks a thread per lookup.

    Example::

        app.wsgi_app = LWAWSGIMiddleware(
            app.wsgi_app,
            client_id="amzn1.application-oa2-client.0123",
            routes={"/health": "public", "/shipping/**": ["postal_code"]},
        )
    """

    def __init__(
        self, app: WSGIApplication, *, settings: Settings | None = None, **options: Unpack[Options]
    ) -> None:
        refuse_asgi_app(app)
        self.app = app
        self.settings = settings or Settings.from_options(**options)
        self.resolver = Resolver(self.settings)
        self.gate = Gate(self.settings, self.resolver)
        # Warm start now, in this thread, and with no thread of its own left
        # behind: servers import the app and then fork their workers (uWSGI,
        # gunicorn --preload), and a worker has none of its parent's threads,
        # nor can it take a lock or finish an import that one held.
        self._warm()

    def __repr__(self) -> str:
        return f"LWAWSGIMiddleware({self.app!r}, {self.resolver!r})"

    def _warm(self) -> None:
        try:
            self.resolver.warm_sync()
        except Exception:  # the first lookup meets it again, and fails closed
            logger.debug("warm start failed", exc_info=True, extra=fields("warm_start_failed"))

    def close(self) -> None:
        """Close pooled connections to LWA (and Redis)."""
        super().close()

    def authenticate(self, environ: WSGIEnvironment, path: str | None = None) -> AuthError | None:
        """Judge a request without calling the app (see :func:`judge_environ`)."""
        return judge_environ(self.gate, self.resolver, environ, path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        error = judge_environ(self.gate, self.resolver, environ)
        if error is None:
            return self.app(environ, start_response)
        location = self.login_location(error, environ)
        if location is not None:
            start_response("303 See Other", redirect_text_headers(location))
            return [b""]
        status, realm = error.status, self.gate.realm
        start_response(f"{status} {HTTPStatus(status).phrase}", error.text_headers(realm))
        return [error.response(realm)[2]]

    def login_location(self, error: AuthError, environ: WSGIEnvironment) -> str | None:
        """With ``login_redirect``: where to send a page load refused for no token."""
        if self.settings.login_redirect is None:
            return None
        accept = environ.get("HTTP_ACCEPT", "").encode("latin-1")
        path = wsgi_path(environ.get("SCRIPT_NAME") or "") + wsgi_path(
            environ.get("PATH_INFO") or "/"
        )
        return login_location(
            self.settings.login_redirect,
            error,
            environ.get("REQUEST_METHOD", "GET"),
            [(b"accept", accept)],
            path,
            environ.get("QUERY_STRING", ""),
        )
