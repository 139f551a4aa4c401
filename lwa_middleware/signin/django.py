"""Django glue: the three views, an authentication backend, and ``request.user``.

::

    # settings.py
    SIGNIN = SignIn(..., link=link_django_user)      # anywhere importable
    LWA = {"CLIENT_ID": ..., "SESSION": SIGNIN,
           "ROUTES": {**SIGNIN.route_policies(), "/": "optional"}}
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "lwa_middleware.integrations.django.LWAMiddleware",
                  "lwa_middleware.signin.django.SignedInUserMiddleware"]
    AUTHENTICATION_BACKENDS = ["lwa_middleware.signin.django.LWABackend"]
    # urls.py
    urlpatterns = [*signin_urls(SIGNIN), ...]

:func:`link_django_user` (the ``link`` hook) gets or creates the Django user
named after the LWA ``user_id`` through :class:`LWABackend` and keeps its
primary key with the session; :class:`SignedInUserMiddleware` makes
``request.user`` that user on requests the session authenticated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, path

from ..errors import UpstreamUnavailable
from ..identity import Identity, get_identity
from .core import Reply, SignIn

__all__ = ["LWABackend", "SignedInUserMiddleware", "link_django_user", "signin_urls"]


def _response(reply: Reply) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status)
    for name, value in reply.headers:
        if name.lower() != "set-cookie":
            response.headers[name] = value
            continue
        # Django keeps one header per name: cookies go through its cookie jar.
        first, *attributes = value.split("; ")
        cookie, _, content = first.partition("=")
        max_age = next(int(a[8:]) for a in attributes if a.startswith("Max-Age="))
        response.set_cookie(
            cookie,
            content,
            max_age=max_age,
            path="/",
            secure="Secure" in attributes,
            httponly=True,
            samesite="Lax",
        )
    return response


def _headers(request: HttpRequest) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]


def signin_urls(signin: SignIn) -> list[URLPattern]:
    """URL patterns of the login, callback and logout views (paths from ``signin``)."""

    def login(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        return _response(signin.login(request.GET.get("next")))

    def callback(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        cookies = [request.META["HTTP_COOKIE"]] if "HTTP_COOKIE" in request.META else []
        # Every pair in order (QueryDict.items() keeps only each key's last
        # value): SignIn reads the first of repeated parameters, as with the
        # other frameworks' glue.
        query = [(key, value) for key, values in request.GET.lists() for value in values]
        return _response(signin.callback(query, cookies))

    def logout(request: HttpRequest) -> HttpResponse:
        return _response(signin.logout(request.method or "GET", _headers(request)))

    # What csrf_exempt does: SignIn.logout checks Origin itself (and SameSite=Lax).
    logout.csrf_exempt = True  # type: ignore[attr-defined]

    return [
        path(signin.login_path.lstrip("/"), login, name="lwa-login"),
        path(signin.callback_path.lstrip("/"), callback, name="lwa-callback"),
        path(signin.logout_path.lstrip("/"), logout, name="lwa-logout"),
    ]


def _can_authenticate(user: Any) -> bool:
    # As Django's ModelBackend.user_can_authenticate: a deactivated user does not.
    is_active = getattr(user, "is_active", None)
    return bool(is_active) or is_active is None


class LWABackend:
    """``authenticate(request, lwa_identity=identity)``: the Django user named
    after the LWA ``user_id``, created on first sign-in (name and email copied).

    A user whose ``is_active`` is false is refused, by :meth:`authenticate`
    and :meth:`get_user` alike, as Django's ``ModelBackend`` does: deactivating
    the account in the admin ends its LWA sign-ins too."""

    def authenticate(self, request: Any, lwa_identity: Identity | None = None, **_: Any) -> Any:
        if lwa_identity is None:
            return None
        model = get_user_model()
        user, created = model._default_manager.get_or_create(
            **{model.USERNAME_FIELD: lwa_identity.user_id}
        )
        if created:
            if lwa_identity.email and hasattr(user, "email"):
                user.email = lwa_identity.email
            if lwa_identity.name and hasattr(user, "first_name"):
                user.first_name = lwa_identity.name[:150]
            user.set_unusable_password()
            user.save()
        return user if _can_authenticate(user) else None

    def get_user(self, user_id: Any) -> Any:
        model = get_user_model()
        user = model._default_manager.filter(pk=user_id).first()
        return user if user is not None and _can_authenticate(user) else None


def link_django_user(identity: Identity) -> Any:
    """A ``link`` hook for :class:`SignIn`: the Django user's primary key."""
    user = LWABackend().authenticate(None, lwa_identity=identity)
    return user.pk if user is not None else None


class SignedInUserMiddleware:
    """After ``LWAMiddleware``: ``request.user`` is the session's Django user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.signin: SignIn = settings.LWA["SESSION"]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            pk = self.signin.user_for(_headers(request), get_identity(request))
        except UpstreamUnavailable as down:  # the session store went away meanwhile
            from ..integrations.django import error_response

            return error_response(down)
        if pk is not None:
            user = LWABackend().get_user(pk)
            if user is not None:
                request.user = user
        return self.get_response(request)
