"""Django REST framework: an authentication class and a scope permission.

:class:`LWAAuthentication` gives DRF ``request.auth``, the
:class:`~lwa_middleware.Identity`, and ``request.user``: the session's
Django user for a request the sign-in session authenticated
(``SignedInUserMiddleware``); for a token, the user
``django.contrib.auth.authenticate(request, lwa_identity=identity)`` gives
when ``settings.LWA["BEARER_USERS"]`` is on (by default exactly when
``lwa_middleware.signin.django.LWABackend`` is in ``AUTHENTICATION_BACKENDS``:
the linked user, created and linked on a customer's first token as at a first
sign-in); else an :class:`~lwa_middleware.integrations.django.LWAUser`.

The identity is the one the Django integration's ``MIDDLEWARE`` class
(:class:`lwa_middleware.integrations.django.LWAMiddleware`) attached. Without
that middleware the class judges the request itself, with an engine built
from ``settings.LWA`` on first use (and rebuilt when the setting changes):
the same route table, token sources, caches, ``aud`` check and error
answers. It answers DRF's ``authenticate_header`` with the Bearer challenge
and the configured realm, so DRF's "not authenticated" is a 401 with
``WWW-Authenticate``.

:class:`HasLWAScopes` is a permission: the identity must hold the scopes
given by ``HasLWAScopes.require("postal_code")`` or by the view's
``required_scopes``. Its refusals are the middleware's, status, challenge and
``{"error", "error_description"}`` body alike (401 ``missing_token``, 403
``insufficient_scope`` with ``scope="…"``); with :func:`exception_handler`
as DRF's ``EXCEPTION_HANDLER`` the other headers too (``Cache-Control``).

Settings (``django.contrib.auth`` optional; without it give DRF an
anonymous user class that needs no database; the middleware optional too)::

    MIDDLEWARE = [..., "lwa_middleware.integrations.django.LWAMiddleware", ...]
    LWA = {"CLIENT_ID": "amzn1.application-oa2-client.0123", "DEFAULT": "optional"}
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "lwa_middleware.integrations.drf.LWAAuthentication",   # first
            "rest_framework.authentication.SessionAuthentication",
        ],
        "UNAUTHENTICATED_USER": "lwa_middleware.integrations.django.LWAAnonymousUser",
        "EXCEPTION_HANDLER": "lwa_middleware.integrations.drf.exception_handler",  # optional
    }

Views::

    from rest_framework.decorators import api_view, permission_classes
    from rest_framework.response import Response
    from lwa_middleware.integrations.drf import HasLWAScopes

    @api_view(["GET"])
    @permission_classes([HasLWAScopes.require("postal_code")])
    def shipping(request):
        return Response({"postal_code": request.auth.postal_code})

**Security rule: CSRF.** A Bearer token is not a cookie, so a cross-site form
cannot send it; this class never runs DRF's CSRF check. DRF's
``SessionAuthentication`` does, for any request whose Django ``request.user``
is active, which includes an :class:`LWAUser` when ``SET_USER`` is on. List
``LWAAuthentication`` *first*: DRF stops at the first class that
authenticates, so a Bearer request never reaches ``SessionAuthentication``.
A sign-in session cookie can ride a cross-site request: the gate refuses a
cookie-authenticated unsafe request that does not prove the app's origin,
with or without the middleware.

**When not to use it.** On a route whose policy is ``"public"`` no token is
read, so this class sees every request as anonymous.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .._engine.errors import AuthError, MissingToken
from .._engine.identity import Identity, get_identity
from ._common import authorize, normalize_scopes
from ._django_parts import SESSION_USER, bearer_users, error_response, shared_engine
from .django import LWAUser
from .django import _realm as _django_realm

__all__ = ["HasLWAScopes", "LWAAuthentication", "exception_handler"]


class LWAAPIException(APIException):  # type: ignore[misc]
    """An :class:`~lwa_middleware.AuthError` as DRF renders errors.

    DRF's exception handler turns ``auth_header`` into ``WWW-Authenticate``
    and a dict ``detail`` into the body, so the answer matches the middleware's.
    """

    def __init__(self, error: AuthError, realm: str) -> None:
        super().__init__(
            detail={"error": error.error, "error_description": error.description},
            code=error.error,
        )
        self.status_code = error.status
        # DRF's handler sends auth_header as WWW-Authenticate and wait as
        # Retry-After: the 503's headers are Retry-After and no challenge.
        headers = dict(error.text_headers(realm))
        self.auth_header = headers.get("www-authenticate")
        if "retry-after" in headers:
            self.wait = int(headers["retry-after"])
        self.error = error
        self.realm = realm


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's exception handler, but :class:`LWAAPIException` is the middleware's answer.

    DRF's own handler already sends it with the middleware's status, JSON
    body and ``WWW-Authenticate``; this one sends the middleware's response
    itself, so the bytes and the other headers (``Cache-Control: no-store``)
    are identical too. Opt in with ``REST_FRAMEWORK = {"EXCEPTION_HANDLER":
    "lwa_middleware.integrations.drf.exception_handler"}``.
    """
    # Imported here: DRF imports this module (DEFAULT_AUTHENTICATION_CLASSES)
    # while rest_framework.views is itself still being imported.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, LWAAPIException):
        set_rollback()
        return error_response(exc.error, exc.realm)
    response: HttpResponse | None = drf_exception_handler(exc, context)
    return response


def _identity(request: Request) -> Identity | None:
    """The request's identity: the middleware's, else judged here, once.

    :raises LWAAPIException: the middleware's refusal (bad token, LWA down, ...).
    """
    django_request = request._request
    if not hasattr(django_request, "lwa_identity"):
        # No middleware judged it (it always sets the attribute): judge it
        # here, with the same gate, caches and answers, built from settings.LWA.
        engine = shared_engine()
        error = engine.judge(django_request)
        if error is not None:
            raise LWAAPIException(error, engine.realm)
    identity = getattr(django_request, "lwa_identity", None)
    if isinstance(identity, Identity):
        return identity
    return get_identity(django_request)


def _user(django_request: HttpRequest, identity: Identity) -> Any:
    """DRF's ``request.user`` for ``identity`` (see :class:`LWAAuthentication`)."""
    signed_in = getattr(django_request, SESSION_USER, None)
    if signed_in is not None and signed_in[0] == identity.user_id:
        # The sign-in session's own customer: what plain views get.
        return signed_in[1] if signed_in[1] is not None else _anonymous()
    if not bearer_users():
        return LWAUser(identity)
    from django.contrib.auth import authenticate

    user = authenticate(django_request, lwa_identity=identity)
    # Refused (a deactivated user): anonymous, the identity still in request.auth.
    return user if user is not None else _anonymous()


def _anonymous() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


class LWAAuthentication(BaseAuthentication):  # type: ignore[misc]
    """DRF authentication by LWA: ``(user, identity)`` for a request with an
    identity, ``None`` for an anonymous one (the next class, or DRF's
    anonymous user, takes over). It never enforces CSRF.

    The identity is the one the Django middleware attached; without the
    middleware this class judges the request itself (same gate, caches and
    errors, from ``settings.LWA``), and a refusal is raised as the
    middleware's answer.

    The user: for a request the sign-in session authenticated (with
    ``SignedInUserMiddleware``), that session's Django user, as plain views
    get it. For a token, with ``BEARER_USERS`` on, the user
    ``django.contrib.auth.authenticate(request, lwa_identity=identity)`` gives
    (``LWABackend``: the linked user, created and linked on first use); with
    it off, an :class:`~lwa_middleware.integrations.django.LWAUser`. A user
    the backends refuse (deactivated) is DRF's anonymous user, with the
    identity still in ``request.auth``.
    """

    def authenticate(self, request: Request) -> tuple[Any, Identity] | None:
        identity = _identity(request)
        if identity is None:
            return None
        return _user(request._request, identity), identity

    def authenticate_header(self, request: Request) -> str:
        return MissingToken().challenge(_django_realm(getattr(request, "_request", None)))


class HasLWAScopes(BasePermission):  # type: ignore[misc]
    """DRF permission: the request's LWA identity holds the required scopes.

    The scopes come from :meth:`require` (``HasLWAScopes.require("postal_code")``),
    else from the view's ``required_scopes``; an empty set needs any identity.
    Refusals raise :class:`LWAAPIException`: the middleware's 401/403.
    """

    scopes: ClassVar[frozenset[str] | None] = None

    @classmethod
    def require(cls, *scopes: str) -> type[HasLWAScopes]:
        """A subclass needing ``scopes``; validated now, as route policies are."""
        required = normalize_scopes(scopes, "HasLWAScopes.require")
        name = f"HasLWAScopes_{'_'.join(sorted(required)) or 'any'}"
        return type(name.replace(":", "_"), (cls,), {"scopes": required})

    def required_scopes(self, view: Any) -> frozenset[str]:
        if self.scopes is not None:
            return self.scopes
        scopes: Iterable[str] | None = getattr(view, "required_scopes", None)
        if scopes is None:
            raise ImproperlyConfigured(
                "HasLWAScopes needs HasLWAScopes.require(...) or a required_scopes "
                f"attribute on {type(view).__name__}"
            )
        if isinstance(scopes, str):
            scopes = [scopes]
        return normalize_scopes(scopes, f"{type(view).__name__}.required_scopes")

    def has_permission(self, request: Request, view: Any) -> bool:
        required = self.required_scopes(view)
        try:
            authorize(_identity(request), required)
        except AuthError as error:
            raise LWAAPIException(error, _django_realm(request._request)) from None
        return True
