"""The PEP 3333 WSGI middleware."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from hashlib import sha256
from http import HTTPStatus
from time import monotonic
from typing import TYPE_CHECKING, Any

from .config import Settings
from .core import Authenticator, SyncControls
from .errors import AuthError, InvalidRequest, MissingToken
from .routes import Access, Policy, PolicySpec
from .tokens import extract_token, strip_query

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
else:
    StartResponse = WSGIApplication = WSGIEnvironment = Any

# Module constants: an enum member lookup per request is measurably slower.
_PUBLIC = Access.PUBLIC
_OPTIONAL = Access.OPTIONAL

__all__ = ["LWAWSGIMiddleware"]

_HEADER_KEYS = (
    ("HTTP_AUTHORIZATION", b"authorization"),
    ("HTTP_X_AMZ_ACCESS_TOKEN", b"x-amz-access-token"),
)
_BEARER = ("Bearer ", "bearer ")


def _latin1(value: str) -> bytes:
    # PEP 3333 native strings are latin-1 decoded bytes; anything else came
    # from a broken server and cannot be a token.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequest("The request's credentials are not valid header bytes.") from None


def _utf8(path: str) -> str:
    # Match patterns against the UTF-8 text, as ASGI servers give it.
    return path.encode("latin-1", "replace").decode("utf-8", "replace")


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class LWAWSGIMiddleware(SyncControls):
    """Protects a WSGI app (Flask, Django, Pyramid, bare PEP 3333) with LWA tokens.

    It mirrors :class:`~lwa_middleware.LWAMiddleware` option for option; see
    its docstring for the policies, the security rules and every option. The
    identity is put in ``environ["lwa.identity"]`` (``None`` when anonymous);
    read it with :func:`~lwa_middleware.get_identity` from the environ or any
    Werkzeug, Flask or Django request.

    Concurrent requests for one new token in a threaded server share one
    lookup. Each lookup blocks its worker thread for at most ``timeout``
    seconds; profile and tokeninfo are fetched concurrently.

    **When not to use it.** Under an ASGI server use the ASGI middleware: this
    one blocks a thread per lookup.

    Example::

        from flask import Flask
        from lwa_middleware import LWAWSGIMiddleware

        app = Flask(__name__)
        app.wsgi_app = LWAWSGIMiddleware(
            app.wsgi_app,
            client_id="amzn1.application-oa2-client.0123",
            routes={"/health": "public", "/shipping/**": ["postal_code"]},
        )
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        client_id: str | Collection[str] | None = None,
        api_base_url: str | None = None,
        region: str | None = None,
        routes: Mapping[str, PolicySpec | Policy] | None = None,
        default: PolicySpec | Policy = "required",
        cache_ttl: float | None = None,
        cache_maxsize: int | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        #: Validated options; pass ``settings=`` to reuse ones built elsewhere.
        self.settings = settings or Settings.from_options(
            client_id=client_id,
            api_base_url=api_base_url,
            region=region,
            routes=routes,
            default=default,
            cache_ttl=cache_ttl,
            cache_maxsize=cache_maxsize,
            **options,
        )
        self.authenticator = Authenticator(self.settings)
        self._lookup = self.settings.routes.lookup
        self._resolve = self.authenticator.resolve_sync
        self._peek = self.authenticator.cache.peek
        self._stats = self.authenticator.stats
        self._on_event = self.settings.on_event
        self._realm = self.settings.realm
        self._strip = self.settings.strip_credentials
        self._preflight = self.settings.allow_preflight
        self._sources = self.settings.token_sources
        self._header_tokens = "header" in self._sources

    def __repr__(self) -> str:
        return f"LWAWSGIMiddleware({self.app!r}, {self.authenticator!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        error = self.authenticate(environ)
        if error is None:
            return self.app(environ, start_response)
        status, headers, body = error.response(self._realm)
        start_response(
            _status_line(status), [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        )
        return [body]

    def authenticate(self, environ: WSGIEnvironment, path: str | None = None) -> AuthError | None:
        """Judge a request by its environ, without calling the app.

        On success it sets ``environ["lwa.identity"]`` (left unset on public
        routes and passed preflights), strips credentials if configured, and
        returns ``None``; otherwise it returns the error to answer. Framework
        integrations whose request wraps a WSGI environ (Django's ``META``)
        use it to share this exact logic; ``path`` overrides ``PATH_INFO``
        when the framework has already decoded it (Django's ``path_info``).
        """
        if path is None:
            path = environ.get("PATH_INFO") or "/"
            if not path.isascii():
                path = _utf8(path)
        policy = self._lookup(path)
        if policy.access is _PUBLIC:
            return None

        # Hot path: see LWAMiddleware.__call__; a miss falls through to _full.
        auth = environ.get("HTTP_AUTHORIZATION")
        amz = environ.get("HTTP_X_AMZ_ACCESS_TOKEN")
        if amz is None:
            raw = auth[7:] if auth is not None and auth.startswith(_BEARER) else None
        else:
            raw = amz if auth is None else None
        if raw is not None and self._header_tokens:
            query = environ.get("QUERY_STRING")
            if not query or ("access_token" not in query and "%" not in query):
                # The hot-path check, inlined as in LWAMiddleware.__call__.
                try:
                    entry = self._peek(sha256(raw.encode("latin-1")).digest())
                except UnicodeEncodeError:
                    entry = None
                if (
                    entry is not None
                    and entry.fresh_until > monotonic()
                    and policy.hot <= entry.serves
                ):
                    self._stats.hits += 1
                    if self._on_event is not None:
                        self.authenticator.emit("hit")
                    environ["lwa.identity"] = entry.identity
                    if self._strip:
                        self._strip_environ(environ)
                    return None
        return self._full(environ, policy)

    def _full(self, environ: WSGIEnvironment, policy: Policy) -> AuthError | None:
        if (
            self._preflight
            and environ.get("REQUEST_METHOD") == "OPTIONS"
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
            and "HTTP_ORIGIN" in environ
        ):
            return None
        try:
            # WSGI servers join repeated headers with "," (LWA tokens never
            # hold one): split them back, so two tokens are seen as two.
            headers = [
                (name, _latin1(part))
                for key, name in _HEADER_KEYS
                if key in environ
                for part in environ[key].split(",")
            ]
            query = environ.get("QUERY_STRING", "")
            token = extract_token(headers, _latin1(query) if query else b"", self._sources)
            if token is None:
                if policy.access is not _OPTIONAL:
                    raise MissingToken()
                environ["lwa.identity"] = None
            else:
                entry = self._resolve(token, policy)
                if policy.scopes:
                    Authenticator.authorize(entry, policy)
                environ["lwa.identity"] = entry.identity
        except AuthError as error:
            return error
        if self._strip:
            self._strip_environ(environ)
        return None

    @staticmethod
    def _strip_environ(environ: WSGIEnvironment) -> None:
        for key, _ in _HEADER_KEYS:
            environ.pop(key, None)
        query = environ.get("QUERY_STRING", "")
        if query:
            environ["QUERY_STRING"] = strip_query(query.encode("latin-1")).decode("latin-1")
        for key in ("REQUEST_URI", "RAW_URI"):
            uri = environ.get(key)
            if uri and "?" in uri:
                path, _, raw_query = uri.partition("?")
                kept = strip_query(raw_query.encode("latin-1")).decode("latin-1")
                environ[key] = path + ("?" + kept if kept else "")
