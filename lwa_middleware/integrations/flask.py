"""Flask: the ``LWA`` extension and a per-view scope decorator.

:class:`LWA` judges every request *inside* Flask, in a ``before_request``
hook that runs before any other, with the exact logic of
:class:`~lwa_middleware.LWAWSGIMiddleware` (its
:meth:`~lwa_middleware.LWAWSGIMiddleware.authenticate`). A refusal is a
Flask response, returned from that hook: Flask's ``after_request`` hooks
(flask-cors, security headers, logging) see it, and it has the middleware's
status, headers and JSON body, byte for byte. It is configured from its
keyword arguments and from ``app.config`` (``LWA_CLIENT_ID``, ``LWA_REGION``,
``LWA_API_BASE_URL``, ``LWA_ROUTES``, ``LWA_DEFAULT``, ``LWA_CACHE_TTL``, and
``LWA_<OPTION>`` for every other option of the middleware; keyword arguments
win). The identity is then ``flask.g.lwa_identity`` (``None`` when anonymous)
and :func:`current_identity`.

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
``"required"``: on a ``"public"`` route no token is read. Put it *below*
``@app.get``/``@app.route``: above it, the route would register the unguarded
function, so this module raises :class:`~lwa_middleware.ConfigurationError`
instead (when the decorator runs if it can tell, else when the app is set up,
else on the route's first request, which never runs the unguarded view).

**CORS with flask-cors.** flask-cors is an ``after_request`` hook, so it
decorates our refusals: a page on another origin can read the 401/403 and,
with ``expose_headers=["WWW-Authenticate"]``, its challenge. Browsers send
preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
without credentials, and flask-cors answers them by decorating Flask's
*automatic* ``OPTIONS`` response. So, unless ``allow_preflight`` is given,
the extension lets a preflight through without a token only when Flask itself
answers it: the route provides automatic ``OPTIONS``, so no view runs (only
``before_request``/``after_request`` hooks). A view that handles ``OPTIONS``
itself is judged like any request. ``LWA_ALLOW_PREFLIGHT=True`` lets every
real preflight through (the middleware's opt-in, views included);
``False`` judges every preflight (no token: 401)::

    from flask_cors import CORS

    CORS(app, origins=["https://app.example"], allow_headers=["authorization"],
         expose_headers=["WWW-Authenticate", "Retry-After"])
    lwa = LWA(app)

**Security rule.** Nothing of the app runs before the judgement except
Flask's URL matching and ``url_value_preprocessor`` functions: the hook is
inserted first among the app's ``before_request`` hooks, so a hook that
reads the database or ``g`` runs only for an accepted request.

**When not to use it.** To protect several apps mounted in one WSGI
process (``DispatcherMiddleware``), wrap the combined app in
:class:`~lwa_middleware.LWAWSGIMiddleware` instead (put a CORS layer outside
it, or use its ``allow_preflight`` option).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from flask import Flask, Response, abort, current_app, g, has_request_context, request

from .._engine._options import OptionError, origin_of
from .._engine.config import OPTIONS
from .._engine.errors import DEFAULT_REALM, AuthError, ConfigurationError, MissingToken
from .._engine.identity import IDENTITY_KEY, Identity, get_identity, realm_of
from .._engine.stats import Stats
from .._engine.wsgi import LWAWSGIMiddleware, judge_environ, redirect_text_headers
from ._common import authorize, normalize_scopes, warn_unprotected

__all__ = ["LWA", "current_identity", "lwa_required"]

P = ParamSpec("P")
R = TypeVar("R")

#: Every option of the middleware; ``app.config[option.flask_key]``
#: (``"LWA_" + name.upper()``) sets it.
OPTION_NAMES: tuple[str, ...] = tuple(sorted(option.name for option in OPTIONS))

#: Functions that ``lwa_required`` wrapped. One of them registered as a view
#: means the decorator sat above the route decorator: the route serves the
#: unguarded original.
_guarded: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

#: Apps set up by any ``LWA`` extension, to look for misplaced decorators.
_apps: weakref.WeakSet[Flask] = weakref.WeakSet()

#: Werkzeug request attributes cached from the query string or the headers;
#: dropped after ``strip_credentials`` so the view sees the stripped request.
_CACHED = ("args", "values", "full_path", "url", "authorization")


def error_response(error: AuthError, realm: str = DEFAULT_REALM) -> Response:
    """The middleware's answer to ``error`` as a Flask :class:`~flask.Response`."""
    # A content-type among the headers keeps Werkzeug from adding its default.
    body = error.response(realm)[2]
    return Response(body, status=error.status, headers=error.text_headers(realm))


def _misplaced(view: Callable[..., Any], endpoint: str) -> ConfigurationError:
    name = getattr(view, "__qualname__", repr(view))
    return ConfigurationError(
        f"@lwa.required/@lwa_required on {name!r} (endpoint {endpoint!r}) is placed above "
        "@app.route/@app.get, so the route registered the unguarded function and it would "
        "run unprotected. Put @lwa.required below @app.route/@app.get, next to the function. "
        "(To serve one function both guarded and unguarded, register two functions.)"
    )


def _is_guarded(view: Any) -> bool:
    try:
        return view in _guarded
    except TypeError:  # unhashable view callable: never one of ours
        return False


def _check_views(app: Flask) -> None:
    """Raise if a view registered in ``app`` is the unguarded original of a guarded one."""
    for endpoint, view in app.view_functions.items():
        if _is_guarded(view):
            raise _misplaced(view, endpoint)


class LWA:
    """The Flask extension: protects the whole app, exposes the identity.

    :param app: the app to set up now; or call :meth:`init_app` later
        (application factories), once per app.
    :param options: options of :class:`~lwa_middleware.LWAWSGIMiddleware`
        (``client_id``, ``routes``, ``default``, ``cache_ttl``, …); they win
        over ``app.config``. ``allow_preflight`` is three-way here: unset
        (default) lets through only preflights Flask answers itself, ``True``
        every real preflight, ``False`` none (see the module docs).

    After :meth:`init_app`, ``app.extensions["lwa"]`` is this extension and
    :meth:`middleware` gives the app's middleware (for ``stats``,
    ``invalidate`` and ``close``). ``app.wsgi_app`` is left as it is: the
    judgement happens inside Flask, so Flask's hooks see refusals.
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
        options = {o.name: app.config[o.flask_key] for o in OPTIONS if o.flask_key in app.config}
        options.update(self.options)
        return options

    def init_app(self, app: Flask) -> None:
        """Build the app's middleware and register the judging ``before_request`` hook.

        :raises lwa_middleware.ConfigurationError: bad options, or a view
            already registered with ``@lwa.required`` above its route, at once.
        :raises RuntimeError: ``init_app`` was already called for ``app``.
        """
        if "lwa" in app.extensions:
            raise RuntimeError("LWA is already set up on this app")
        options = self.options_for(app)
        # None: the extension's own preflight rule (Flask's automatic OPTIONS only).
        flask_preflights = options.get("allow_preflight") is None
        if flask_preflights:
            options["allow_preflight"] = False
        # An error names the app.config key the option came from (not a keyword).
        from_config = {
            o.name: f"app.config[{o.flask_key!r}]"
            for o in OPTIONS
            if o.flask_key in app.config and o.name not in self.options
        }
        try:
            # It judges this app's requests from the app's own hook, so it
            # wraps the app itself, weakly: the extension keeps no app alive.
            middleware = LWAWSGIMiddleware(weakref.proxy(app), **options)
        except OptionError as error:
            raise origin_of(error, from_config) from None
        _check_views(app)
        self._middlewares[app] = middleware
        _apps.add(app)
        app.extensions["lwa"] = self
        hook = _make_hook(app, middleware, flask_preflights)
        # First of the app's hooks: no other hook runs for a refused request.
        app.before_request_funcs.setdefault(None, []).insert(0, hook)

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


def _make_hook(
    app: Flask, middleware: LWAWSGIMiddleware, flask_preflights: bool
) -> Callable[[], Response | None]:
    realm = middleware.settings.realm
    strip = middleware.settings.strip_credentials
    gate, resolver = middleware.gate, middleware.resolver
    # Endpoint -> the view last found unguarded there: a request to it again
    # costs one dict probe, not a weakref made for the WeakSet lookup. A view
    # decorated once registered raises at decoration (``lwa_required``), so
    # an unguarded view never becomes a guarded one.
    unguarded: dict[str, Any] = {}

    def lwa_before_request() -> Response | None:
        # Every proxy access (request, g) costs a context lookup: one each.
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        rule = req.url_rule
        if rule is not None:
            endpoint = rule.endpoint
            view = app.view_functions.get(endpoint)
            if view is not None and unguarded.get(endpoint) is not view:
                if _is_guarded(view):
                    # Registered after init_app (a blueprint): never run it unguarded.
                    raise _misplaced(view, endpoint)
                unguarded[endpoint] = view
            if (
                flask_preflights
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
                and "HTTP_ORIGIN" in environ
                and req.method == "OPTIONS"
                and getattr(rule, "provide_automatic_options", False)
            ):
                # Flask answers it with its default OPTIONS response; no view runs.
                g.lwa_identity = None
                return None
        error = judge_environ(gate, resolver, environ)
        if error is not None:
            location = middleware.login_location(error, environ)
            if location is not None:  # login_redirect: a page load without a token
                return Response(status=303, headers=redirect_text_headers(location))
            return error_response(error, realm)
        if strip:
            # Werkzeug copied the query string and cached parsed views of the
            # request when it built it; rebuild them from the stripped environ.
            req.query_string = environ.get("QUERY_STRING", "").encode("latin-1")
            for name in _CACHED:
                req.__dict__.pop(name, None)
        identity = environ.get(IDENTITY_KEY)  # get_identity(environ), inlined
        # Set on the object: setting through the proxy runs several frames more.
        app_globals = g._get_current_object()
        app_globals.lwa_identity = identity if isinstance(identity, Identity) else None
        return None

    return lwa_before_request


@overload
def current_identity() -> Identity | None: ...
@overload
def current_identity(*, required: Literal[True]) -> Identity: ...
@overload
def current_identity(*, required: bool) -> Identity | None: ...
def current_identity(*, required: bool = False) -> Identity | None:
    """The request's :class:`Identity`, ``None`` when anonymous or outside a request.

    With ``required=True`` it is typed ``Identity`` (for ``mypy --strict`` on
    ``"required"`` routes and ``@lwa.required`` views): an anonymous request
    is answered the middleware's 401 (Flask's ``abort``), and a call outside
    a request raises ``RuntimeError``.
    """
    if not has_request_context():
        if required:
            raise RuntimeError("current_identity(required=True) outside a request")
        return None
    if "lwa_identity" in g:
        identity = cast(Identity | None, g.lwa_identity)
    else:
        identity = get_identity(request.environ)
    if identity is None and required:
        abort(error_response(MissingToken(), realm_of(request.environ)))
    return identity


def _check(required: frozenset[str]) -> Response | None:
    if IDENTITY_KEY not in request.environ:
        warn_unprotected("Flask", request.path)
    try:
        authorize(get_identity(request.environ), required)
    except AuthError as error:
        return error_response(error, realm_of(request.environ))
    return None


def lwa_required(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Decorate a Flask view so it needs an identity holding ``scopes``.

    Answers like the middleware: 401 ``missing_token`` when anonymous, 403
    ``insufficient_scope`` with ``scope="…"``, with the realm of the app's
    :class:`LWA` extension. Works on plain and ``async`` views. Put it
    *below* ``@app.route`` so the route registers the guarded view; above
    it raises :class:`~lwa_middleware.ConfigurationError` (see the module docs).
    """
    required = normalize_scopes(scopes, "lwa_required")

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        for app in list(_apps):
            for endpoint, registered in app.view_functions.items():
                if registered is view:
                    raise _misplaced(view, endpoint)
        _guarded.add(view)

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
