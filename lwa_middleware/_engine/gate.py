"""The request decision, written once, sans-IO, for every adapter.

Given what any server gives (method, path, ``root_path``, headers, query),
:class:`Gate` answers what to do with a request:

* :data:`PASS`: call the app untouched (a public route, or an opted-in CORS
  preflight): no credential was read, LWA is not asked;
* :data:`ANONYMOUS`: an ``optional`` route without a token;
* an :class:`~.cache.Entry`: a cache hit that serves the route (its scopes
  already checked);
* :class:`Resolve`: the adapter resolves ``token`` (its :class:`~.resolver.
  Resolver` driver, blocking or async), then calls :meth:`Gate.admit`;
* :class:`FromSession` (``token_sources`` ``"session"``, a session cookie and
  no token): the adapter asks :attr:`Gate.session` for the session's access
  token, then :meth:`Gate.from_session` gives the verdict on it;

or raises the :class:`~.errors.AuthError` to answer. The ASGI middleware, the
WSGI middleware and the Django integration are thin translations of it: they
only turn their request into these arguments and a verdict into their
response.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Final

from .errors import MissingToken
from .identity import check_scopes
from .routes import Access, Policy
from .tokens import extract_token

if TYPE_CHECKING:
    from ..signin._source import SessionSource
    from .cache import Entry
    from .config import Settings
    from .resolver import Resolver

__all__ = ["ANONYMOUS", "PASS", "FromSession", "Gate", "Resolve", "Verdict"]


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Call the app untouched.
PASS: Final = _Mark("PASS")
#: Call the app with no identity (an ``optional`` route, no token).
ANONYMOUS: Final = _Mark("ANONYMOUS")


@dataclass(frozen=True, slots=True)
class Resolve:
    """Resolve ``token`` for ``policy``, then :meth:`Gate.admit` the entry.

    The token lives only as long as this verdict: adapters drop it before
    the app runs.
    """

    token: str
    policy: Policy

    def __repr__(self) -> str:  # never the token
        return f"Resolve(policy={self.policy!r})"


@dataclass(frozen=True, slots=True)
class FromSession:
    """Ask ``source`` for the access token of session ``session_id``
    (``access_token`` or ``access_token_async``), then :meth:`Gate.from_session`."""

    source: SessionSource
    session_id: str
    policy: Policy

    def __repr__(self) -> str:  # never the session id
        return f"FromSession(policy={self.policy!r})"


Verdict = _Mark | Resolve | FromSession

#: Methods a cookie-authenticated request may use without a same-origin proof.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _preflight(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    # A browser's CORS preflight carries Origin and Access-Control-Request-
    # Method (Fetch standard); both are required, so a hand-made OPTIONS with
    # one of them is judged like any other request.
    names = {name for name, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


def _check_origin(
    session: SessionSource,
    method: str,
    headers: Iterable[tuple[bytes, bytes]],
    websocket: bool,
) -> None:
    """Raise ``CrossSiteRequest`` unless this cookie request may go on.

    Browsers send cookies on cross-site requests too: an unsafe one must
    prove it comes from the app (Bearer is exempt). So must a WebSocket
    handshake: a ``GET``, but the socket it opens reads and writes as the
    user and the same-origin policy does not guard it (cross-site WebSocket
    hijacking). Browsers always send ``Origin`` on one, so there it is
    required and must be the app's, with no ``Sec-Fetch-Site`` fallback.
    """
    if websocket:
        from ..signin._origins import origin_matches

        allowed = origin_matches(headers, session.origin, require_origin=True)
    elif method not in _SAFE_METHODS:
        allowed = session.same_origin(headers)
    else:
        return
    if not allowed:
        from ..signin._source import CrossSiteRequest

        if websocket:
            raise CrossSiteRequest("A signed-in WebSocket must be opened from this site's pages.")
        raise CrossSiteRequest()


class Gate:
    """The request decision for one middleware instance.

    :param settings: validated options (routes, preflights, token sources).
    :param resolver: whose cache :meth:`hit` reads and whose stats it counts.
    """

    def __init__(self, settings: Settings, resolver: Resolver) -> None:
        routes = settings.routes
        self.lookup = routes.lookup
        self.lookup_mounted = routes.lookup_mounted
        self.lookup_below = routes.lookup_below
        #: ``memo_get(path)``: the policy of a path seen before, else ``None``.
        self.memo_get = routes.memo_get
        self.realm = settings.realm
        self._preflight = settings.allow_preflight
        self._sources = settings.token_sources
        #: Whether header tokens are accepted: the fast path reads only those.
        self.headers_allowed = "header" in settings.token_sources
        self._peek = resolver.cache.peek
        self._clock = resolver.clock
        self._stats = resolver.stats
        self._resolver = resolver
        #: The session cookie source, when ``token_sources`` holds ``"session"``.
        self.session: SessionSource | None = settings.session
        if self.session is not None:
            self.session.attach(resolver)

    def policy(self, path: str, root_path: str = "") -> Policy:
        """The policy of ``path`` (the ASGI path, which may include ``root_path``)."""
        return self.lookup_mounted(path, root_path) if root_path else self.lookup(path)

    def decide(
        self,
        policy: Policy,
        method: str,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
        *,
        websocket: bool = False,
    ) -> Verdict:
        """The verdict on a request to a non-public route (see the module docstring).

        :param headers: ``(lowercase name, value)`` pairs; only the credential
            headers, ``Origin`` and ``Sec-Fetch-Site`` (a session cookie on an
            unsafe method or a WebSocket handshake) and, for ``OPTIONS``,
            ``Access-Control-Request-Method`` are looked at.
        :param websocket: a WebSocket handshake (its method counts as ``GET``).
        :raises AuthError: the refusal to answer.
        """
        if self._preflight and method == "OPTIONS" and _preflight(headers):
            return PASS
        token = extract_token(headers, query, self._sources)
        if token is None and self.session is not None:
            session_id = self.session.session_id(headers)
            if session_id is not None:
                _check_origin(self.session, method, headers, websocket)
                return FromSession(self.session, session_id, policy)
        return self.from_session(token, policy)

    def decide_blocking(
        self,
        policy: Policy,
        method: str,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
        *,
        websocket: bool = False,
    ) -> Verdict:
        """:meth:`decide`, with a session's token looked up (blocking): never
        :class:`FromSession`."""
        verdict = self.decide(policy, method, headers, query, websocket=websocket)
        if isinstance(verdict, FromSession):
            return self.from_session(verdict.source.access_token(verdict.session_id), policy)
        return verdict

    async def adecide(
        self,
        policy: Policy,
        method: str,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
        *,
        websocket: bool = False,
    ) -> Verdict:
        """:meth:`decide_blocking` on an event loop (which serves WebSockets too)."""
        verdict = self.decide(policy, method, headers, query, websocket=websocket)
        if isinstance(verdict, FromSession):
            token = await verdict.source.access_token_async(verdict.session_id)
            return self.from_session(token, policy)
        return verdict

    @staticmethod
    def from_session(token: str | None, policy: Policy) -> Verdict:
        """The verdict on ``token`` (a session's, or ``None`` when it has none)."""
        if token is None:
            if policy.access is not Access.OPTIONAL:
                raise MissingToken()
            return ANONYMOUS
        return Resolve(token, policy)

    def hit(self, raw: bytes, policy: Policy) -> Entry | None:
        """The fast path: the entry of a token seen as one raw header value,
        if cached and serving ``policy`` with its scopes; else ``None`` (go on
        with :meth:`decide`). Only tokens validated and resolved earlier are
        in the cache, so nothing unusual can hit here.

        The ASGI middleware inlines this; a property test ties the two.
        """
        entry = self._peek(sha256(raw).digest())
        if entry is not None and entry.fresh_until > self._clock() and policy.hot <= entry.holds:
            self._stats.hits += 1
            if self._resolver.hooked:
                self._resolver.emit("hit")
            return entry
        return None

    @staticmethod
    def admit(entry: Entry, policy: Policy) -> Entry:
        """``entry`` if it holds the policy's scopes; else raise ``InsufficientScope``."""
        if policy.scopes:
            check_scopes(entry.granted, policy.scopes)
        return entry
