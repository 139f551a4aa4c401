"""Flask: the ``LWA`` extension and a per-view scope decorator.

:class:`LWA` wraps ``app.wsgi_app`` in
:class:`~lwa_middleware.LWAWSGIMiddleware`, configured from its keyword
arguments and from ``app.config`` (``LWA_CLIENT_ID``, ``LWA_REGION``,
``LWA_API_BASE_URL``, ``LWA_ROUTES``, ``LWA_DEFAULT``, ``LWA_CACHE_TTL``, and
``LWA_<OPTION>`` for every other option of the middleware; keyword
arguments win). The identity is then ``flask.g.lwa_identity`` (``None`` when
anonymous) and :func:`current_identity`.

Example::

    from flask import Flask
    from lwa_middleware.integrations.flask import LWA, current_identity

    app = Flask(__name__)
    app.config.update(
        LWA_CLIENT_ID="amzn1.application-oa2-client.0123",
        LWA_ROUTES={"/health": "public"},
        LWA_DEFAULT="optional",
    )
    lwa = LWA(app)

    @app.get("/shipping")
    @lwa.required("postal_code")
    def shipping():
        return {"postal_code": current_identity().postal_code}

:meth:`LWA.required` (or :func:`lwa_required`) answers exactly as the
middleware: 401 ``missing_token`` when anonymous, 403 ``insufficient_scope``
with ``scope="…"``. Use it on routes whose policy is ``"optional"`` or
``"required"``: on a ``"public"`` route no token is read.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from flask import Flask, Response, current_app, g, has_request_context, request

from ..access import IDENTITY_KEY, get_identity
from ..config import Settings
from ..core import Stats
from ..errors import AuthError
from ..identity import Identity
from ..wsgi import LWAWSGIMiddleware
from ._common import authorize, normalize_scopes, warn_unprotected

__all__ = ["LWA", "OPTION_NAMES", "current_identity", "error_response", "lwa_required"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_REALM = "lwa"

#: Every option of the middleware; ``app.config["LWA_" + name.upper()]`` sets it.
OPTION_NAMES: tuple[str, ...] = tuple(
    sorted(
        ({"client_id", "region", "default"} | set(Settings.__dataclass_fields__)) - {"client_ids"}
    )
)


def error_response(error: AuthError, realm: str = DEFAULT_REALM) -> Response:
    """The middleware's answer to ``error`` as a Flask :class:`~flask.Response`."""
    status, headers, body = error.response(realm)
    # A content-type among the headers keeps Werkzeug from adding its default.
    return Response(
        body,
        status=status,
        headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
    )


class LWA:
    """The Flask extension: protects the whole app, exposes the identity.

    :param app: the app to set up now; or call :meth:`init_app` later
        (application factories), once per app.
    :param options: options of :class:`~lwa_middleware.LWAWSGIMiddleware`
        (``client_id``, ``routes``, ``default``, ``cache_ttl``, …); they win
        over ``app.config``.

    After :meth:`init_app`, ``app.extensions["lwa"]`` is this extension and
    :meth:`middleware` gives the app's middleware (for ``stats``,
    ``invalidate`` and ``close``).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        self._middlewares: weakref.WeakKeyDictionary[Flask, LWAWSGIMiddleware] = (
            weakref.WeakKeyDictionary()
        )
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"LWA(apps={len(self._middlewares)})"

    def options_for(self, app: Flask) -> dict[str, Any]:
        """The middleware options for ``app``: ``app.config`` overlaid by the keywords."""
        options = {
            name: app.config[key]
            for name in OPTION_NAMES
            if (key := "LWA_" + name.upper()) in app.config
        }
        options.update(self.options)
        return options

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and register the ``g.lwa_identity`` hook.

        :raises lwa_middleware.ConfigurationError: bad options, at once.
        :raises RuntimeError: ``init_app`` was already called for ``app``.
        """
        if "lwa" in app.extensions:
            raise RuntimeError("LWA is already set up on this app")
        middleware = LWAWSGIMiddleware(app.wsgi_app, **self.options_for(app))
        app.wsgi_app = middleware  # type: ignore[method-assign]
        self._middlewares[app] = middleware
        app.extensions["lwa"] = self
        app.before_request(_load_identity)

    def middleware(self, app: Flask | None = None) -> LWAWSGIMiddleware:
        """The middleware of ``app`` (default: the current app)."""
        target = app if app is not None else cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
        try:
            return self._middlewares[target]
        except KeyError:
            raise RuntimeError("LWA.init_app() was not called for this app") from None

    @property
    def stats(self) -> Stats:
        """The current app's cache and upstream counters."""
        return self.middleware().stats

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (on logout) in the current app's caches."""
        self.middleware().invalidate(token)

    def realm(self, app: Flask | None = None) -> str:
        """The ``realm`` the middleware of ``app`` answers with."""
        return self.middleware(app).settings.realm

    def required(self, *scopes: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
        """Decorate a view so it needs an identity holding ``scopes`` (none: any identity)."""
        return lwa_required(*scopes)


def _load_identity() -> None:
    g.lwa_identity = get_identity(request.environ)


def current_identity() -> Identity | None:
    """The request's :class:`Identity`, ``None`` when anonymous or outside a request."""
    if not has_request_context():
        return None
    if "lwa_identity" in g:
        return cast(Identity | None, g.lwa_identity)
    return get_identity(request.environ)


def _realm() -> str:
    extension = current_app.extensions.get("lwa")
    if isinstance(extension, LWA):
        try:
            return extension.realm()
        except RuntimeError:
            pass
    return DEFAULT_REALM


def _check(required: frozenset[str]) -> Response | None:
    if IDENTITY_KEY not in request.environ:
        warn_unprotected("Flask", request.path)
    try:
        authorize(get_identity(request.environ), required)
    except AuthError as error:
        return error_response(error, _realm())
    return None


def lwa_required(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Decorate a Flask view so it needs an identity holding ``scopes``.

    Answers like the middleware: 401 ``missing_token`` when anonymous, 403
    ``insufficient_scope`` with ``scope="…"``, with the realm of the app's
    :class:`LWA` extension. Works on plain and ``async`` views. Put it
    *below* ``@app.route`` so the route registers the guarded view.
    """
    required = normalize_scopes(scopes, "lwa_required")

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @functools.wraps(view)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                refused = _check(required)
                if refused is not None:
                    return refused
                return await async_view(*args, **kwargs)

            return cast(Callable[P, R | Response], async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            refused = _check(required)
            if refused is not None:
                return refused
            return view(*args, **kwargs)

        return wrapper

    return decorator
