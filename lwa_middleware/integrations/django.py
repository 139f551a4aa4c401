"""Django: a native ``MIDDLEWARE`` class, a view decorator and a small user object.

Add the middleware and configure it with ``settings.LWA`` (keys are the
middleware's options in upper case)::

    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "lwa_middleware.integrations.django.LWAMiddleware",
        # ...
    ]
    LWA = {
        "CLIENT_ID": "amzn1.application-oa2-client.0123",
        "ROUTES": {"/health": "public", "/": "optional", "/shipping/**": ["postal_code"]},
        "DEFAULT": "required",
        "CACHE_TTL": 300,
        "SET_USER": False,
    }

Every key maps to the option of the same name in lower case (``CLIENT_ID``,
``API_BASE_URL``, ``REGION``, ``ROUTES``, ``DEFAULT``, ``CACHE_TTL``,
``CACHE_MAXSIZE``, ``REDIS_URL``, ``REALM``, ``TIMEOUT``, …, see
docs/options.md), plus ``SET_USER`` and
``BEARER_USERS`` (DRF: see :mod:`lwa_middleware.integrations.drf`). Environment
variables (``LWA_CLIENT_ID``, ``LWA_API_BASE_URL``, …) fill what is not given.
A mistake raises :class:`~django.core.exceptions.ImproperlyConfigured` when
Django loads the middleware.

Patterns are matched against ``request.path_info`` (the path below
``SCRIPT_NAME``). The request then carries ``request.lwa_identity`` (an
:class:`~lwa_middleware.Identity`, or ``None`` when anonymous or on a
``"public"`` route) and ``get_identity(request)`` works. With ``"SET_USER": True`` an authenticated
request's ``request.user`` becomes an :class:`LWAUser`; it is off by default
because ``django.contrib.auth`` usually owns ``request.user``.

The middleware is sync and async capable (``sync_capable`` and
``async_capable``): under ASGI, with the middlewares after it async capable
too, Django calls it on the event loop and it awaits the token lookup there
(an async view then never leaves the loop); under WSGI, or with a sync-only
middleware after it, it runs in the calling thread and a lookup blocks that thread for
at most the ``timeout`` option.

**System check.** ``manage.py check`` (and ``runserver``, ``migrate``, …)
reports a missing or bad ``settings.LWA`` as ``lwa_middleware.E001``, with
the same message the middleware would raise, and warns
(``lwa_middleware.W001``) when the app is installed but neither the
middleware is in ``MIDDLEWARE`` nor DRF's ``LWAAuthentication`` (which then
judges requests itself) in ``DEFAULT_AUTHENTICATION_CLASSES``. The check is
registered when this module is imported; to be sure ``check`` imports it, add
the app config::

    INSTALLED_APPS = [..., "lwa_middleware.integrations.django.LWAConfig"]

Example view::

    from lwa_middleware.integrations.django import lwa_required

    @lwa_required("postal_code")
    def shipping(request):
        return JsonResponse({"postal_code": request.lwa_identity.postal_code})
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from .._deprecated import moved
from .._engine._login_redirect import login_location
from .._engine.errors import DEFAULT_REALM, AuthError
from .._engine.identity import IDENTITY_KEY, REALM_KEY, Identity, realm_of
from .._engine.resolver import BlockingControls
from .._engine.wsgi import redirect_text_headers
from ._common import authorize, normalize_scopes, warn_unprotected
from ._django_parts import Engine, error_response, settings_from_django
from ._django_parts import lwa_config as _lwa_config

__all__ = [
    "LWAAnonymousUser",
    "LWAConfig",
    "LWAMiddleware",
    "LWAUser",
    "lwa_required",
]


#: How ``settings.MIDDLEWARE`` names :class:`LWAMiddleware`.
MIDDLEWARE_PATH = "lwa_middleware.integrations.django.LWAMiddleware"
#: The DRF class, which judges requests itself when the middleware is not installed.
DRF_CLASS_PATH = "lwa_middleware.integrations.drf.LWAAuthentication"

View = Callable[..., Any]


class LWAUser:
    """What ``request.user`` is for an LWA identity when ``SET_USER`` is on.

    It is not a database user: it has no ``pk``, no permissions and no
    groups, so it cannot be logged in, saved or used by the admin.

    :param identity: the request's identity.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.username = identity.user_id

    def __repr__(self) -> str:
        return f"<LWAUser {self.username}>"

    def __str__(self) -> str:
        return self.username

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LWAUser) and other.username == self.username

    def __hash__(self) -> int:
        return hash(self.username)

    @property
    def email(self) -> str:
        return self.identity.email or ""

    @property
    def display_name(self) -> str:
        return self.identity.display_name

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        return False

    def has_module_perms(self, module: str) -> bool:
        return False


class LWAAnonymousUser:
    """``request.user`` of an anonymous request when ``SET_USER`` is on and no
    other middleware set one."""

    is_authenticated = False
    is_anonymous = True
    is_active = False
    is_staff = False
    is_superuser = False
    username = ""

    def __str__(self) -> str:
        return "AnonymousUser"

    def get_username(self) -> str:
        return ""

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        return False

    def has_module_perms(self, module: str) -> bool:
        return False


class LWAMiddleware(BlockingControls):
    """Protects a Django project with LWA tokens, as ``LWAWSGIMiddleware`` does.

    Built from ``settings.LWA`` (see the module docs) when Django loads its
    middleware. The route table, the policies, the caches, the errors and
    their bodies are those of the core middlewares.

    Sync and async capable, as Django documents it: given an async
    ``get_response`` (under ASGI, with no sync-only middleware after it) it
    is a coroutine function itself and awaits the async engine on the event
    loop; otherwise it judges in the calling thread.

    :param get_response: the next layer, given by Django.
    :raises ImproperlyConfigured: on a bad ``settings.LWA``.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.engine = engine = Engine()
        self.settings, self.set_user = engine.settings, engine.set_user
        self.resolver, self.gate, self._realm = engine.resolver, engine.gate, engine.realm
        self._async = iscoroutinefunction(get_response)
        if self._async:
            # Django (convert_exception_to_response) then awaits this instance.
            markcoroutinefunction(self)

    def __repr__(self) -> str:
        return f"LWAMiddleware({self.resolver!r})"

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        error = self.engine.judge(request)
        if error is not None:
            return self._refusal(error, request)
        self._set_user(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        error = await self.engine.ajudge(request)
        if error is not None:
            return self._refusal(error, request)
        self._set_user(request)
        response: HttpResponse = await self.get_response(request)
        return response

    def _refusal(self, error: AuthError, request: HttpRequest) -> HttpResponse:
        """The refusal; with ``LOGIN_REDIRECT``, a 303 to the sign-in page for a
        page load without a token, as the ASGI and WSGI middlewares answer."""
        location = login_location(
            self.settings.login_redirect,
            error,
            request.method or "GET",
            [(b"accept", request.META.get("HTTP_ACCEPT", "").encode("latin-1", "replace"))],
            request.path,
            request.META.get("QUERY_STRING", ""),
        )
        if location is None:
            return error_response(error, self._realm)
        response = HttpResponse(status=303)
        for name, value in redirect_text_headers(location):
            response[name] = value
        return response

    def _set_user(self, request: HttpRequest) -> None:
        if not self.set_user:
            return
        # Any: an attribute ours to add; HttpRequest does not declare it.
        target: Any = request
        identity = request.lwa_identity
        if identity is not None:
            target.user = LWAUser(identity)
        elif not hasattr(request, "user"):
            target.user = LWAAnonymousUser()


def _realm(request: HttpRequest | None = None) -> str:
    """The realm published with ``request`` by the middleware; else the settings'."""
    if request is not None and REALM_KEY in request.META:
        return realm_of(request.META)
    try:
        realm = _lwa_config().get("REALM", DEFAULT_REALM)
    except ImproperlyConfigured:
        return DEFAULT_REALM
    return realm if isinstance(realm, str) and realm else DEFAULT_REALM


def _check(request: HttpRequest, required: frozenset[str]) -> HttpResponse | None:
    if IDENTITY_KEY not in request.META:
        warn_unprotected("Django", request.path)
    try:
        authorize(getattr(request, "lwa_identity", None), required)
    except AuthError as error:
        return error_response(error, _realm(request))
    return None


def lwa_required(*scopes: str) -> Callable[[View], View]:
    """Decorate a Django view so it needs an identity holding ``scopes``.

    Answers like the middleware: 401 ``missing_token`` when anonymous, 403
    ``insufficient_scope`` with ``scope="…"``. Works on function views,
    ``async`` views and, through ``method_decorator``, on class-based views.
    The route's policy should be ``"optional"`` or ``"required"``.
    """
    required = normalize_scopes(scopes, "lwa_required")

    def decorator(view: View) -> View:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[..., Awaitable[Any]], view)

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = _check(request, required)
                if refused is not None:
                    return refused
                return await async_view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = _check(request, required)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django system check: ``settings.LWA`` would build a middleware.

    ``lwa_middleware.E001``: missing or bad ``settings.LWA`` (no client id,
    unknown key, bad value), with the ``ImproperlyConfigured`` message the
    middleware would raise on the first request. ``lwa_middleware.W001``: the
    app config is installed but neither the middleware is in ``MIDDLEWARE`` nor
    the DRF class in ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``.
    """
    middleware = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    installed = any(
        isinstance(entry, str) and entry.startswith("lwa_middleware.")
        for entry in getattr(django_settings, "INSTALLED_APPS", None) or []
    )
    rest = getattr(django_settings, "REST_FRAMEWORK", None) or {}
    drf_judges = DRF_CLASS_PATH in (rest.get("DEFAULT_AUTHENTICATION_CLASSES") or [])
    if MIDDLEWARE_PATH not in middleware and not drf_judges:
        if not installed:
            # Imported for lwa_required or get_identity only: nothing to check.
            return []
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not in settings.MIDDLEWARE: no request is judged.",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, after SecurityMiddleware.",
                id="lwa_middleware.W001",
            )
        ]
    try:
        settings_from_django()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint=(
                    "Set settings.LWA to a dict of the middleware's options in upper case, "
                    'at least {"CLIENT_ID": "amzn1.application-oa2-client...."} (or the '
                    "LWA_CLIENT_ID environment variable); see "
                    "lwa_middleware.integrations.django."
                ),
                obj="settings.LWA",
                id="lwa_middleware.E001",
            )
        ]
    return []


# Registered at import (not as a decorator: Django's is untyped).
checks.register(check_settings, "lwa")


class LWAConfig(AppConfig):  # type: ignore[misc]
    """Install it (``INSTALLED_APPS``) so ``manage.py check`` always runs :func:`check_settings`.

    It has no models and no migrations: naming it imports this module, which
    registers the check.
    """

    name = "lwa_middleware.integrations"
    label = "lwa_middleware"
    verbose_name = "Login with Amazon"


# OPTION_KEYS: no longer public (issue 19), still importable with a warning.
if not TYPE_CHECKING:  # a type checker keeps refusing names that are not public
    __getattr__ = moved(__name__, "lwa_middleware.integrations._django_parts")
