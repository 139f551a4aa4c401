"""The server-side sign-in flow: login, callback, sessions, refresh, logout.

Framework-neutral and blocking: each step takes what any framework gives
(query pairs, ``Cookie`` header values, a few headers) and returns a
:class:`Reply` (status, headers, body) that the glue turns into its own
response. Under ASGI the glue runs these steps in a worker thread; the hot
per-request path (:meth:`SignIn.access_token_async` on a fresh session in
memory) stays on the event loop. LWA is reached through the middleware's own
HTTP driver, the async one under ASGI (:mod:`._transport`).

Secrets: the access token, the refresh token, the authorization code and the
PKCE verifier never leave the server except towards LWA's token endpoint
(refresh token, code, verifier, client secret: in a POST body) and the
tokeninfo and profile endpoints (the access token, in a header). They are
never logged, never in a ``repr``, never in a URL, never in a response.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

import anyio
import httpx2

from .._engine._observe import fields
from .._engine.clock import Clock, epoch_of
from .._engine.config import Settings
from .._engine.errors import ConfigurationError, SharedCacheError, UpstreamUnavailable
from .._engine.flow import UpstreamFailure
from .._engine.identity import Identity
from .._engine.routes import PROVABLE_SCOPES, Access, Policy
from .._engine.singleflight import TaskFlights, ThreadFlights
from ._cookies import CookieJar, cookie_headers, read_cookie, safe_next
from ._exchange import Exchanging
from ._options import AUTHORIZE_URL, authorize_url_of, check_signin_options
from ._origins import origin_matches
from ._pages import Page, PageKind, Pages, check_pages, render_page
from ._parts import (
    Refusals,
    Reply,
    _challenge,
    _Grant,
    _origin_of,
    _Session,
    grant_of,
    token_unreachable,
)
from ._refresh import Refreshing, warn_without_delete_if
from ._sessions import (
    MAX_PENDING_LOGINS,
    MemorySessionStore,
    RedisSessionStore,
    Sealer,
    SessionStore,
)
from ._source import CrossSiteRequest
from ._transport import revoke, send_token, token_request
from ._wiring import refuse_guarded_endpoints, refuse_mixed_hosts

if TYPE_CHECKING:
    from .._engine.resolver import Resolver

__all__ = ["AUTHORIZE_URL", "CrossSiteRequest", "Page", "Reply", "SignIn"]

logger = logging.getLogger("lwa_middleware.signin")

#: A pending login (state and PKCE verifier) lives this long: 10 minutes.
LOGIN_TTL: Final = 600
_REQUIRED: Final = Policy(Access.REQUIRED)


class SignIn(Exchanging, Refreshing):
    """Signs users in with Login with Amazon, server-side (authorization code + PKCE).

    The browser only ever holds an opaque session cookie; the access and
    refresh tokens stay in the session store, encrypted. Give it to the
    middleware as ``session=signin`` and a request carrying the cookie is
    judged like one carrying the session's access token.

    Its keywords (what each does, its default, its check): the table
    :data:`lwa_middleware.signin._options.SIGNIN_OPTIONS`, shown in
    ``docs/options.md``. ``clock`` is the middleware's kind (see
    :mod:`lwa_middleware._engine.clock`); SignIn reads its ``time()``, since
    sessions outlive the process; the HTTP deadlines run in real time.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        session_secret: str | bytes,
        api_base_url: str | None = None,
        region: str | None = None,
        authorize_url: str | None = None,
        scopes: Collection[str] = ("profile",),
        redis_url: str | None = None,
        store: SessionStore | None = None,
        link: Callable[[Identity], Any] | None = None,
        login_path: str = "/login",
        logout_path: str = "/logout",
        after_login: str = "/",
        after_logout: str = "/",
        cookie_name: str = "lwa_session",
        session_ttl: float = 14 * 86400,
        refresh_margin: float = 60.0,
        timeout: float = 5.0,
        retry_after: int = 5,
        max_sessions: int = 10_000,
        max_pending_logins: int = MAX_PENDING_LOGINS,
        clock: Clock | Callable[[], float] = time,
        http: httpx2.Client | None = None,
        pages: Pages | None = None,
        allow_mixed_hosts: bool = False,
    ) -> None:
        check_signin_options(locals())
        self._settings = Settings.from_options(
            client_id=client_id, api_base_url=api_base_url, region=region, timeout=timeout
        )
        if not isinstance(client_id, str):
            raise ConfigurationError("client_id must be one client id (a string)")
        if not isinstance(client_secret, str) or not client_secret.strip():
            raise ConfigurationError("client_secret is required for the server-side flow")
        self.client_id = client_id
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self.origin, secure = _origin_of(redirect_uri, "redirect_uri")
        self.callback_path = urlsplit(redirect_uri).path or "/"
        authorize_url = authorize_url_of(authorize_url)
        _origin_of(authorize_url, "authorize_url")
        self.authorize_url = authorize_url
        self.pages = check_pages(pages)
        chosen = tuple(dict.fromkeys([scopes] if isinstance(scopes, str) else scopes))
        if not chosen or not set(chosen) <= PROVABLE_SCOPES:
            raise ConfigurationError(
                f"scopes {chosen!r}: choose from {', '.join(sorted(PROVABLE_SCOPES))}"
            )
        self.scopes = chosen
        self.token_url = self._settings.api_base_url + "/auth/o2/token"
        self._sealer = Sealer(session_secret)
        if not allow_mixed_hosts:
            refuse_mixed_hosts(authorize_url, self._settings.api_base_url)
        if store is not None and redis_url is not None:
            raise ConfigurationError("give redis_url or store, not both")
        if store is not None:
            warn_without_delete_if(store)
        self.store: SessionStore = (
            store
            if store is not None
            else RedisSessionStore(
                redis_url, timeout=min(timeout, 0.5), max_pending=max_pending_logins
            )
            if redis_url is not None
            else MemorySessionStore(max_sessions, max_pending=max_pending_logins)
        )
        #: Whether the store is this process's memory (no I/O: no thread needed under ASGI).
        self.in_memory = isinstance(self.store, MemorySessionStore)
        self.cookies = CookieJar(secure, cookie_name)
        self.login_path, self.logout_path = login_path, logout_path
        self.after_login = safe_next(after_login, "/")
        self.after_logout = safe_next(after_logout, "/")
        self.link = link
        self.session_ttl = float(session_ttl)
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.retry_after = int(retry_after)
        #: Epoch seconds: the ``time()`` face of ``clock=``.
        self.clock = epoch_of(clock, "SignIn")
        self._http = http
        self._resolvers: list[weakref.ref[Resolver]] = []
        self._attaching = threading.Lock()  # middlewares built in several threads at once
        self._wired = False  # attach()ed once: login() works
        self._own_resolver: Resolver | None = None
        self._threads: ThreadFlights[tuple[str | None]] = ThreadFlights(
            self.timeout * 2 + 1, self.retry_after
        )
        self._tasks: TaskFlights[tuple[str | None]] = TaskFlights()
        self._refusals_logged = -60.0
        self._refusals = Refusals(logger)

    def __repr__(self) -> str:  # never the secrets
        return (
            f"SignIn(client_id={self.client_id!r}, redirect_uri={self.redirect_uri!r}, "
            f"store={self.store!r})"
        )

    # -- wiring --------------------------------------------------------------

    def route_policies(self) -> dict[str, str]:
        """The middleware route table entries of the sign-in endpoints: public
        (each checks what it needs itself)."""
        return {p: "public" for p in self._endpoints()}

    def _endpoints(self) -> tuple[str, ...]:
        return (self.login_path, self.callback_path, self.logout_path)

    def attach(self, resolver: Resolver) -> None:
        """Called by each middleware given ``session=signin``: its sign-in
        endpoints must be public there, or nobody could ever sign in."""
        refuse_guarded_endpoints(self._endpoints(), resolver.settings.routes)
        if self.client_id not in resolver.settings.client_ids:
            # Else every sign-in completes at LWA and its new token is refused
            # here (its aud), logged as if LWA had refused it.
            raise ConfigurationError(
                f"SignIn's client_id {self.client_id!r} is not among the middleware's "
                "client_id: give the middleware that client id too (client_id=[...])"
            )
        with self._attaching:  # else two attach() at once keep only one of theirs
            live = self._attached()
            if resolver not in live:
                self._resolvers = [*map(weakref.ref, live), weakref.ref(resolver)]
        self._wired = True

    def _attached(self) -> list[Resolver]:
        """The resolvers of the live middlewares wired to this SignIn, latest
        last. Held weakly: a middleware dropped (Django builds one per test
        client) goes, with its pool and I/O thread (none left: SignIn's own)."""
        return [resolver for ref in self._resolvers if (resolver := ref()) is not None]

    def _page(
        self, kind: PageKind, status: int, title: str, message: str, *extra: tuple[str, str]
    ) -> Reply:
        page = Page(kind, status, title, message, self.login_path, self.after_login)
        return render_page(self.pages, page, *extra)

    def _resolver(self) -> Resolver:
        live = self._attached()
        if live:
            return live[-1]
        if self._own_resolver is None:
            from .._engine.resolver import Resolver

            self._own_resolver = Resolver(self._settings)
        return self._own_resolver

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._own_resolver is not None:
            self._own_resolver.close()

    # -- helpers ---------------------------------------------------------------

    def session_id(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        return read_cookie(cookie_headers(headers), self.cookies.session)

    def same_origin(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """``Origin`` is the app's (malformed: no), or else, without ``Origin``
        or with ``Origin: null``, ``Sec-Fetch-Site: same-origin`` (see
        :func:`._origins.origin_matches`)."""
        return origin_matches(headers, self.origin)

    def _key(self, kind: str, browser_id: str) -> str:
        return self._sealer.name(kind, browser_id)

    def _load(self, key: str) -> _Session | None:
        found = self._load_sealed(key)
        return found[1] if found is not None else None

    def _load_sealed(self, key: str) -> tuple[bytes, _Session] | None:
        """The session and the sealed bytes it was read from (a refresh's
        write is conditional on them still being there)."""
        raw = self.store.get(key)
        plain = self._sealer.open(key, raw) if raw is not None else None
        session = _Session.load(plain) if plain is not None else None
        if raw is None or session is None or session.ends_at <= self.clock():
            return None
        return raw, session

    def _save(self, key: str, session: _Session, replacing: bytes | None = None) -> bool:
        """Write the session; with ``replacing``, only if the store still holds
        those sealed bytes (``False`` if not: nothing written)."""
        ttl = max(session.ends_at - self.clock(), 1.0)
        sealed = self._sealer.seal(key, session.dump())
        if replacing is None:
            self.store.put(key, sealed, ttl)
            return True
        return self.store.replace(key, replacing, sealed, ttl)

    def _post(self, form: Mapping[str, str]) -> _Grant:
        """POST to the token endpoint; :class:`_Refused` on 4xx, 503 on anything else odd."""
        request = token_request(self.token_url, form)
        outcome = send_token(self._http, self._resolver(), request, self.timeout)
        if isinstance(outcome, UpstreamFailure):
            raise token_unreachable(outcome, self.retry_after)
        return grant_of(outcome, self.retry_after)

    def _revoke(self, token: str) -> None:
        for resolver in self._attached() or [self._resolver()]:
            try:
                revoke(resolver, token)
            except SharedCacheError:
                logger.warning(
                    "logout: the revocation could not be shared through Redis yet",
                    extra=fields("logout_unshared", reason="redis"),
                )

    # -- /login ----------------------------------------------------------------

    def _unavailable(self, down: UpstreamUnavailable, *extra: tuple[str, str]) -> Reply:
        wait = str(down.retry_after or self.retry_after)
        return self._page(
            "unavailable",
            503,
            "Try again",
            "Sign-in is unavailable for a moment. Try again shortly.",
            *extra,
            ("Retry-After", wait),
        )

    def login(self, next_path: str | None = None) -> Reply:
        """Redirect to LWA with a fresh ``state`` and PKCE challenge, kept server-side.

        A 503 page if the session store is down (nothing half-started).

        :raises ConfigurationError: no middleware was given ``session=signin``:
            the sign-in would succeed and every page still answer 401."""
        if not self._wired:
            raise ConfigurationError(
                "SignIn is not wired into a middleware: pass session=signin to LWAMiddleware, "
                "LWAWSGIMiddleware or the framework integration (LWA(app, session=signin), "
                "settings.LWA['SESSION']), or signed-in users would get 401 on every page"
            )
        try:
            return self._login(next_path)
        except UpstreamUnavailable as down:
            self._refusals.warn(
                "sign-in unavailable: the session store did not answer",
                "store",
                event="signin_unavailable",
            )
            return self._unavailable(down)

    def _too_many_logins(self) -> Reply:
        """A flood of /login (or a real rush) filled the pending logins' own
        bound: refuse the new one, rather than forget anyone's session."""
        now = time.monotonic()
        if now - self._refusals_logged >= 60:  # one line a minute, not one a request
            self._refusals_logged = now
            logger.warning(
                "sign-in refused: too many sign-ins in progress",
                extra=fields("signin_refused", reason="pending_logins_full"),
            )
        return self._page(
            "unavailable",
            503,
            "Try again",
            "Too many sign-ins are in progress. Try again shortly.",
            ("Retry-After", str(self.retry_after)),
        )

    def _login(self, next_path: str | None) -> Reply:
        login_id = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, RFC 7636 allows 43-128
        key = self._key("login", login_id)
        record = json.dumps(
            {"s": state, "v": verifier, "n": safe_next(next_path, self.after_login)}
        ).encode()
        if not self.store.add_login(key, self._sealer.seal(key, record), LOGIN_TTL):
            return self._too_many_logins()
        query = urlencode(
            {
                "client_id": self.client_id,
                "scope": " ".join(self.scopes),
                "response_type": "code",
                "redirect_uri": self.redirect_uri,
                "state": state,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        return Reply(
            302,
            (
                ("Location", f"{self.authorize_url}?{query}"),
                ("Set-Cookie", self.cookies.set(self.cookies.login, login_id, LOGIN_TTL)),
                ("Cache-Control", "no-store"),
            ),
        )

    # -- /callback -------------------------------------------------------------

    def callback(self, query: Sequence[tuple[str, str]], cookies: Iterable[str]) -> Reply:
        """Check ``state``, exchange the code, open a new session; redirect to ``next``.

        503 when LWA or the session store is unavailable."""
        try:
            return self._callback(query, list(cookies))
        except UpstreamUnavailable as down:  # the store; LWA's own 503 is handled inside
            self._refusals.warn(
                "sign-in unavailable: the session store did not answer",
                "store",
                event="signin_unavailable",
            )
            return self._unavailable(down, ("Set-Cookie", self.cookies.clear(self.cookies.login)))

    def _callback(self, query: Sequence[tuple[str, str]], cookies: list[str]) -> Reply:
        clear = ("Set-Cookie", self.cookies.clear(self.cookies.login))
        login_id = read_cookie(cookies, self.cookies.login)
        raw = None
        if login_id is not None:
            key = self._key("login", login_id)
            sealed = self.store.take_login(key)  # used once, whatever happens next
            raw = self._sealer.open(key, sealed) if sealed is not None else None
        params = dict(reversed(query))  # the first of repeated parameters
        if raw is None:
            return self._revisited(cookies, clear)
        pending = json.loads(raw)
        # Checked again here, before any session exists: a Location the
        # server cannot send must not fail after the code is spent.
        target = safe_next(pending.get("n"), self.after_login)
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending["s"].encode()):
            self._refusals.warn("sign-in refused: state mismatch", "state", event="signin_refused")
            return self._page(
                "refused", 400, "Sign-in refused", "This sign-in was not started here.", clear
            )
        error = params.get("error")
        if error is not None:
            if error == "access_denied":
                return self._page(
                    "cancelled", 403, "Sign-in cancelled", "You cancelled the sign-in.", clear
                )
            self._refusals.warn(f"sign-in failed at LWA: {error!r:.40}", "authorize_error")
            return self._failed(400, "Amazon did not sign you in.", clear)
        code = params.get("code", "")
        if not code:
            return self._failed(400, "The answer from Amazon is incomplete.", clear)
        found = self._exchange(code, pending["v"], clear)
        if isinstance(found, Reply):
            return found
        return self._open_session(found, cookies, target, clear)

    def _failed(self, status: int, message: str, *extra: tuple[str, str]) -> Reply:
        return self._page("failed", status, "Sign-in failed", message, *extra)

    def _revisited(self, cookies: list[str], clear: tuple[str, str]) -> Reply:
        """No pending login: expired, or the callback URL visited again (Back
        after signing in). A live session means the sign-in already worked:
        go on signed in, rather than say it expired."""
        session_id = read_cookie(cookies, self.cookies.session)
        if session_id is not None and self._load(self._key("session", session_id)) is not None:
            return Reply(
                303, (("Location", self.after_login), clear, ("Cache-Control", "no-store"))
            )
        return self._page("expired", 400, "Sign-in expired", "This sign-in has expired.", clear)

    def _open_session(
        self,
        found: tuple[_Grant, Identity],
        cookies: list[str],
        target: str,
        clear: tuple[str, str],
    ) -> Reply:
        grant, identity = found
        if grant.refresh_token is None:
            logger.warning(
                "sign-in: LWA gave no refresh token; the session ends with the token",
                extra=fields("signin_no_refresh_token"),
            )
        user = self.link(identity) if self.link is not None else None
        now = self.clock()
        session = _Session(
            grant.access_token,
            grant.refresh_token or "",
            now + grant.expires_in,
            now + self.session_ttl,
            identity.user_id,
            user,
        )
        old = read_cookie(cookies, self.cookies.session)
        if old is not None:  # rotated on sign-in: a planted id never becomes a session
            self.store.delete(self._key("session", old))
        session_id = secrets.token_urlsafe(32)
        self._save(self._key("session", session_id), session)
        logger.info("sign-in completed", extra=fields("signin_completed"))
        return Reply(
            303,
            (
                ("Location", target),
                (
                    "Set-Cookie",
                    self.cookies.set(self.cookies.session, session_id, int(self.session_ttl)),
                ),
                clear,
                ("Cache-Control", "no-store"),
            ),
        )

    # -- /logout ---------------------------------------------------------------

    def logout(self, method: str, headers: Iterable[tuple[bytes, bytes]]) -> Reply:
        """``POST`` only, from the app's origin: end the session, revoke its access
        token in the middleware (every worker, with Redis), clear the cookie.

        503 if the session store is down: the session could not be ended, so
        the cookie is kept and the user can retry."""
        try:
            return self._logout(method, list(headers))
        except UpstreamUnavailable as down:
            self._refusals.warn(
                "logout unavailable: the session store did not answer",
                "store",
                event="logout_unavailable",
            )
            return self._unavailable(down)

    def _logout(self, method: str, headers: list[tuple[bytes, bytes]]) -> Reply:
        if method != "POST":
            return Reply(405, (("Allow", "POST"), ("Cache-Control", "no-store")))
        if not self.same_origin(headers):
            return self._page("refused", 403, "Refused", "Sign out from this site's own page.")
        session_id = self.session_id(headers)
        if session_id is not None:
            key = self._key("session", session_id)
            sealed = self.store.take(key)
            plain = self._sealer.open(key, sealed) if sealed is not None else None
            session = _Session.load(plain) if plain is not None else None
            if session is not None:
                self._revoke(session.access_token)
        return Reply(
            303,
            (
                ("Location", self.after_logout),
                ("Set-Cookie", self.cookies.clear(self.cookies.session)),
                ("Cache-Control", "no-store"),
            ),
        )

    # -- the session token source ------------------------------------------------

    def _fresh(self, session: _Session) -> bool:
        return session.expires_at - self.clock() > self.refresh_margin

    def access_token(self, session_id: str) -> str | None:
        key = self._key("session", session_id)
        session = self._load(key)
        if session is None:
            return None
        if self._fresh(session):
            return session.access_token
        return self._threads.run(key, lambda: (self._refresh(key),), _same, _nothing)[0]

    async def access_token_async(self, session_id: str) -> str | None:
        key = self._key("session", session_id)
        if self.in_memory:  # microseconds: no thread for the common case
            session = self._load(key)
            if session is None:
                return None
            if self._fresh(session):
                return session.access_token

        async def lead() -> tuple[str | None]:
            return (await anyio.to_thread.run_sync(self.access_token, session_id),)

        return (await self._tasks.run(key, lead, _same, _nothing))[0]

    # -- the signed-in user, for the glue --------------------------------------------

    def user_for(self, headers: Iterable[tuple[bytes, bytes]], identity: Identity | None) -> Any:
        """The ``link`` result of the request's session, if the identity the
        middleware attached is that session's (not a Bearer token's); else ``None``."""
        if identity is None:
            return None
        session_id = self.session_id(headers)
        session = self._load(self._key("session", session_id)) if session_id else None
        if session is None or session.user_id != identity.user_id:
            return None
        return session.user


def _same(found: tuple[str | None]) -> tuple[str | None]:
    return found


def _nothing() -> None:
    return None
