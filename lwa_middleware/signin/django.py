"""Django glue: the three views, an authentication backend, and ``request.user``.

::

    # settings.py
    INSTALLED_APPS = [..., "django.contrib.auth", "lwa_middleware.signin.django_app"]
    SIGNIN = SignIn(..., link=link_django_user)      # anywhere importable
    LWA = {"CLIENT_ID": ..., "SESSION": SIGNIN,
           "ROUTES": {**SIGNIN.route_policies(), "/": "optional"}}
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "lwa_middleware.integrations.django.LWAMiddleware",
                  "lwa_middleware.signin.django.SignedInUserMiddleware"]
    AUTHENTICATION_BACKENDS = ["lwa_middleware.signin.django.LWABackend"]
    # urls.py
    urlpatterns = [*signin_urls(SIGNIN), ...]

:func:`link_django_user` (the ``link`` hook) finds the Django user linked to
the LWA ``user_id`` (a row of the ``lwa_middleware.signin.django_app`` app,
which must be in ``INSTALLED_APPS`` and migrated), or creates and links a new
one, through :class:`LWABackend`, and keeps its primary key with the session;
:class:`SignedInUserMiddleware` makes ``request.user`` that user on requests
the session authenticated. An existing user is never taken over because its
username equals a customer's ``user_id``.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, path
from django.utils.module_loading import import_string

from .._engine.errors import UpstreamUnavailable
from .._engine.identity import Identity, get_identity
from .._engine.tokens import environ_headers
from ..integrations._django_parts import SESSION_USER, error_response, lwa_config
from ._core import Reply, SignIn

__all__ = [
    "LINKS_APP",
    "LWABackend",
    "SignedInUserMiddleware",
    "link_amazon_account",
    "link_django_user",
    "signin_urls",
]

LINKS_APP = "lwa_middleware.signin.django_app"
_NOT_INSTALLED = (
    f"LWA sign-in links Django users to Amazon accounts in a table of its own: add "
    f"{LINKS_APP!r} to INSTALLED_APPS, then run `manage.py migrate lwa_signin`."
)
_NOT_MIGRATED = (
    "The table of LWA account links (app lwa_signin) does not exist: "
    "run `manage.py migrate lwa_signin`."
)
_E002 = "lwa_middleware.E002"
_T = TypeVar("_T")


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


def _cookie(request: HttpRequest) -> list[tuple[bytes, bytes]]:
    """The cookie as the gate reads it, so both find the same session: under
    ASGI Django joins several ``Cookie`` headers with "," (the gate splits them)."""
    return environ_headers(request.META, "GET", session=True)


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


def _links() -> Any:
    """The link model, or a setup error that says what to add."""
    if not apps.is_installed(LINKS_APP):
        raise ImproperlyConfigured(_NOT_INSTALLED)
    return apps.get_model("lwa_signin", "AmazonAccount")


def _migrated(query: Callable[[], _T]) -> _T:
    """``query()``; a missing links app or table is a setup error, not a 500 deep in SQL."""
    _links()
    try:
        return query()
    except DatabaseError as error:
        links = _links()
        try:
            tables = connections[router.db_for_read(links)].introspection.table_names()
            missing = links._meta.db_table not in tables
        except DatabaseError:  # e.g. an aborted transaction: the first error stands
            raise error from None
        if missing:
            raise ImproperlyConfigured(_NOT_MIGRATED) from None
        raise


def _new_user(identity: Identity) -> Any:
    """A new user under a generated username, so it can neither collide with nor
    become an existing one (a user named after the ``user_id`` is anyone's pick)."""
    model = get_user_model()
    manager = model._default_manager
    name = f"lwa-{secrets.token_hex(8)}"
    while manager.filter(**{model.USERNAME_FIELD: name}).exists():  # 64 random bits
        name = f"lwa-{secrets.token_hex(8)}"
    user = model(**{model.USERNAME_FIELD: name})
    if identity.email and hasattr(user, "email"):
        user.email = identity.email
    if identity.name and hasattr(user, "first_name"):
        user.first_name = identity.name[:150]
    user.set_unusable_password()  # LWA is its only way in
    user.save()
    return user


def _linked_or_new(identity: Identity) -> Any:
    links = _links()
    found = links._default_manager.select_related("user")
    link = found.filter(amazon_user_id=identity.user_id).first()
    if link is not None:
        return link.user
    try:
        # One transaction: a user whose link fails is not left behind.
        with transaction.atomic(using=router.db_for_write(links)):
            user = _new_user(identity)
            links._default_manager.create(amazon_user_id=identity.user_id, user=user)
            return user
    except IntegrityError:
        # The same customer's concurrent first sign-in linked first (amazon_user_id
        # is unique); this one's user was rolled back with its link.
        link = found.filter(amazon_user_id=identity.user_id).first()
        if link is None:
            raise
        return link.user


class LWABackend:
    """``authenticate(request, lwa_identity=identity)``: the Django user linked to
    the LWA ``user_id``, created (and linked) on first sign-in.

    The link is a row of ``lwa_middleware.signin.django_app``'s ``AmazonAccount``
    (install the app, run ``migrate``). A user the backend did not create is
    never adopted, whatever its username: it stays its owner's, and only an
    explicit :func:`link_amazon_account` links it. A new user gets a generated
    username and an unusable password; name and email are copied.

    A user whose ``is_active`` is false is refused, by :meth:`authenticate`
    and :meth:`get_user` alike, as Django's ``ModelBackend`` does: deactivating
    the account in the admin ends its LWA sign-ins too."""

    def authenticate(self, request: Any, lwa_identity: Identity | None = None, **_: Any) -> Any:
        if lwa_identity is None:
            return None
        user = _migrated(lambda: _linked_or_new(lwa_identity))
        return user if _can_authenticate(user) else None

    def get_user(self, user_id: Any) -> Any:
        """The user, if linked to an Amazon account (only those sign in through LWA)."""
        return _active(_migrated(lambda: _users(lwa_amazon_account__isnull=False, pk=user_id)))


def _users(**lookups: Any) -> Any:
    return get_user_model()._default_manager.filter(**lookups).first()


def _active(user: Any) -> Any:
    return user if user is not None and _can_authenticate(user) else None


def link_amazon_account(user: Any, amazon_user_id: str) -> None:
    """Link ``user`` to the Amazon account ``amazon_user_id`` (its LWA ``user_id``).

    For an app that lets an existing user attach their Amazon account: call it
    only once that user proved they own the local account (Amazon's "Integrate
    with Your Existing Account System": an email match needs the local
    password first). Raises ``IntegrityError`` if either side is linked already.
    """
    _migrated(lambda: _links()._default_manager.create(amazon_user_id=amazon_user_id, user=user))


def _session_key(pk: Any) -> Any:
    # Sessions keep link()'s result as JSON: a UUID (or other) key as its text.
    return pk if isinstance(pk, int | str) else str(pk)


def link_django_user(identity: Identity) -> Any:
    """A ``link`` hook for :class:`SignIn`: the linked Django user's primary key
    (as text if it is not an int or a str, a UUID say: sessions keep JSON)."""
    user = LWABackend().authenticate(None, lwa_identity=identity)
    return _session_key(user.pk) if user is not None else None


class SignedInUserMiddleware:
    """After ``LWAMiddleware``: ``request.user`` is the session's Django user.

    Sync and async capable, as ``LWAMiddleware``: on the async path only the
    session and database look-ups of a request with a session cookie go to
    a thread (``sync_to_async``, as Django's ORM needs), not the view.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        _links()  # at start-up, not at the first sign-in: the links app must be installed
        self.signin = _session_signin()
        _refuse_misordered()
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        refused = self._sign_in(request)
        return refused if refused is not None else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        refused = None
        identity = get_identity(request)
        if identity is not None and self.signin.session_id(_cookie(request)) is not None:
            refused = await sync_to_async(self._sign_in)(request)
        if refused is not None:
            return refused
        response: HttpResponse = await self.get_response(request)
        return response

    def _sign_in(self, request: HttpRequest) -> HttpResponse | None:
        """Set ``request.user`` to the session's user; an error to answer, or ``None``."""
        identity = get_identity(request)
        try:
            pk = self.signin.user_for(_cookie(request), identity)
        except UpstreamUnavailable as down:  # the session store went away meanwhile
            return error_response(down)
        if pk is not None and identity is not None:
            # Still linked to this session's customer: unlinking ends the sign-in.
            lookup = {"pk": pk, "lwa_amazon_account__amazon_user_id": identity.user_id}
            user = _active(_migrated(lambda: _users(**lookup)))
            # For DRF's LWAAuthentication: this request is the session's, and this
            # (or no) user is its Django user, as here.
            setattr(request, SESSION_USER, (identity.user_id, user))
            if user is not None:
                request.user = user
                request.auser = functools.partial(_same_user, user)  # async views' request.user
        return None


def _session_signin() -> SignIn:
    """``settings.LWA["SESSION"]``, a ``SignIn`` with a ``link``: without one,
    no session has a user to find and ``request.user`` would silently stay anonymous."""
    signin = lwa_config().get("SESSION")
    if not isinstance(signin, SignIn):
        raise ImproperlyConfigured(
            "SignedInUserMiddleware reads the session of settings.LWA['SESSION']: set it to "
            "your SignIn(..., link=link_django_user)"
        )
    if signin.link is None:
        raise ImproperlyConfigured(
            "SignedInUserMiddleware sets request.user to the user link() gave at sign-in, and "
            "settings.LWA['SESSION'] has no link=: pass SignIn(..., link=link_django_user)"
        )
    return signin


def _refuse_misordered() -> None:
    """It reads the identity ``LWAMiddleware`` attached, so it comes after it;
    ``AuthenticationMiddleware`` after it would set ``request.user`` over its
    user. Either way ``request.user`` would silently not be the session's."""
    from django.contrib.auth.middleware import AuthenticationMiddleware

    from ..integrations.django import MIDDLEWARE_PATH, LWAMiddleware

    names = [n for n in getattr(settings, "MIDDLEWARE", None) or [] if isinstance(n, str)]
    here = f"{__name__}.SignedInUserMiddleware"
    if here not in names:  # listed under another name (a subclass): not judged here
        return
    at = names.index(here)
    if not any(_is(name, LWAMiddleware) for name in names[:at]):
        raise ImproperlyConfigured(
            f"{here} reads the identity {MIDDLEWARE_PATH} attaches: list that middleware "
            "in settings.MIDDLEWARE before it"
        )
    if any(_is(name, AuthenticationMiddleware) for name in names[at + 1 :]):
        raise ImproperlyConfigured(
            f"django.contrib.auth's AuthenticationMiddleware after {here} would replace the "
            "session's request.user: list it before LWAMiddleware and SignedInUserMiddleware"
        )


def _is(name: str, kind: type) -> bool:
    try:
        found = import_string(name)
    except ImportError:
        return False
    return isinstance(found, type) and issubclass(found, kind)


async def _same_user(user: Any) -> Any:
    return user


def check_links(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django system check ``lwa_middleware.E002``: :class:`LWABackend` or
    :class:`SignedInUserMiddleware` is configured but the links app is not installed."""
    here = __name__
    used = f"{here}.LWABackend" in (getattr(settings, "AUTHENTICATION_BACKENDS", None) or [])
    used |= f"{here}.SignedInUserMiddleware" in (getattr(settings, "MIDDLEWARE", None) or [])
    if not used or apps.is_installed(LINKS_APP):
        return []
    hint = f"Add {LINKS_APP!r} to INSTALLED_APPS, then run `manage.py migrate lwa_signin`."
    return [checks.Error(_NOT_INSTALLED, hint=hint, obj="settings.INSTALLED_APPS", id=_E002)]


# Registered at import (settings.py imports this module for link_django_user).
checks.register(check_links, "lwa")
