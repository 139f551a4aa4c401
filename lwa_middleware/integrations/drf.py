"""Django REST framework: an authentication class and a scope permission.

:class:`LWAAuthentication` turns the identity that the Django integration's
``MIDDLEWARE`` class (:class:`lwa_middleware.integrations.django.LWAMiddleware`)
attached into DRF's ``request.user`` (an
:class:`~lwa_middleware.integrations.django.LWAUser`) and ``request.auth``
(the :class:`~lwa_middleware.Identity`). It never calls LWA and never reads
a token itself: the middleware has already judged the request. It answers
DRF's ``authenticate_header`` with the Bearer challenge and the configured
realm, so DRF's "not authenticated" is a 401 with ``WWW-Authenticate``.

:class:`HasLWAScopes` is a permission: the identity must hold the scopes
given by ``HasLWAScopes.require("postal_code")`` or by the view's
``required_scopes``. Its refusals are the middleware's, status, challenge and
``{"error", "error_description"}`` body alike (401 ``missing_token``, 403
``insufficient_scope`` with ``scope="…"``); with :func:`exception_handler`
as DRF's ``EXCEPTION_HANDLER`` the other headers too (``Cache-Control``).

Settings (``django.contrib.auth`` optional; without it give DRF an
anonymous user class that needs no database)::

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

**When not to use it.** On a route whose policy is ``"public"`` the
middleware reads no token, so this class sees every request as anonymous.
Without the Django middleware it authenticates nothing (and logs a warning
once per path).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..errors import AuthError, MissingToken
from ..identity import Identity, get_identity
from ._common import authorize, normalize_scopes, warn_unprotected
from .django import LWAUser, error_response
from .django import _realm as _django_realm

__all__ = ["HasLWAScopes", "LWAAPIException", "LWAAuthentication", "exception_handler"]


class LWAAPIException(APIException):  # type: ignore[misc]
    """An :class:`~lwa_middleware.errors.AuthError` as DRF renders errors.

    DRF's exception handler turns ``auth_header`` into ``WWW-Authenticate``
    and a dict ``detail`` into the body, so the answer matches the middleware's.
    """

    def __init__(self, error: AuthError, realm: str) -> None:
        super().__init__(
            detail={"error": error.error, "error_description": error.description},
            code=error.error,
        )
        self.status_code = error.status
        self.auth_header = error.challenge(realm)
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
    django_request = request._request
    identity = getattr(django_request, "lwa_identity", None)
    if isinstance(identity, Identity):
        return identity
    return get_identity(django_request)


class LWAAuthentication(BaseAuthentication):  # type: ignore[misc]
    """DRF authentication from the identity the LWA Django middleware attached.

    ``authenticate`` returns ``(LWAUser(identity), identity)`` for an
    authenticated request and ``None`` for an anonymous one (so the next
    class, or DRF's anonymous user, takes over). It never enforces CSRF.
    """

    def authenticate(self, request: Request) -> tuple[LWAUser, Identity] | None:
        identity = _identity(request)
        if identity is None:
            if not hasattr(request._request, "lwa_identity"):
                # The middleware always sets the attribute: it is not installed.
                warn_unprotected("Django REST framework", request._request.path)
            return None
        return LWAUser(identity), identity

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
