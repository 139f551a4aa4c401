"""DRF's ``request.user`` is the linked Django user, for a session and a token.

Real ``django.contrib.auth`` users in SQLite (``tests/signin/django_support.py``),
signed in through ``SignIn`` + ``LWABackend``; DRF views authenticated by
``LWAAuthentication``. A view filters a model by ``request.user``
(``AmazonAccount.objects.filter(user=request.user)``), which only a real user
can do. Driven by Django's test client, its ``AsyncClient``, and real
servers: uvicorn (ASGI) and waitress (WSGI), with the emulator as LWA.

Bearer tokens map to users through ``AUTHENTICATION_BACKENDS``
(``authenticate(request, lwa_identity=identity)``): on by default exactly
when ``LWABackend`` is listed (``settings.LWA["BEARER_USERS"]`` overrides).
A customer with no link yet gets one, as at sign-in: Amazon's "Integrate with
Your Existing Account System" (LWA-FACTS S13, developer.amazon.com/docs/login-with-amazon/
integrate-with-account-system-websites.html) keys the local account by ``user_id``;
that a Bearer-only client (a mobile app) should get its account on first use
as a browser does at sign-in is this library's choice, not Amazon's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

# DRF reads settings when imported: configure Django from the example project
# first (django_with_auth then lays sign-in's settings over it).
if not settings.configured:
    from tests.signin.django_support import DJANGO_PROJECT

    sys.path.insert(0, str(DJANGO_PROJECT))
    try:
        from lwa_demo import settings as _project
    finally:
        sys.path.remove(str(DJANGO_PROJECT))
    settings.configure(**{k: getattr(_project, k) for k in dir(_project) if k.isupper()})
    django.setup()

from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, override_settings
from django.urls import path
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from support.callers import http_client
from support.servers import serve

from lwa_middleware import Identity, get_identity
from lwa_middleware.integrations.drf import HasLWAScopes, LWAAuthentication
from lwa_middleware.signin import SignIn
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.django_support import (
    AUTH_MIDDLEWARE,
    body,
    browser,
    django_with_auth_fixture,
    session_id,
    sign_in,
    signed_in_project,
)
from tests.signin.signin_support import ORIGIN

ADA, GRACE = BUILTIN_CUSTOMERS[0], BUILTIN_CUSTOMERS[1]
URLCONF = "tests_signin_drf_urls"
django_with_auth = django_with_auth_fixture


def _describe(user: Any, identity: Identity | None) -> dict[str, Any]:
    from lwa_middleware.signin.django_app.models import AmazonAccount

    real = getattr(user, "_meta", None) is not None  # a model instance
    return {
        "type": type(user).__name__,
        "authenticated": user.is_authenticated,
        "pk": getattr(user, "pk", None),
        "auth": identity.user_id if identity else None,
        # What the issue could not do: a query on the user.
        "owned": list(
            AmazonAccount.objects.filter(user=user).values_list("amazon_user_id", flat=True)
        )
        if real
        else None,
    }


class Me(APIView):
    authentication_classes = [LWAAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        auth = request.auth if isinstance(request.auth, Identity) else None
        return Response(_describe(request.user, auth))

    def post(self, request: Request) -> Response:
        return self.get(request)


class Scoped(Me):
    permission_classes = [HasLWAScopes.require("profile")]


def plain(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request.user, get_identity(request)))


async def plain_async(request: HttpRequest) -> JsonResponse:
    from asgiref.sync import sync_to_async

    user = await request.auser()
    answer = await sync_to_async(_describe)(user, get_identity(request))
    return JsonResponse(answer)


class TaskProbe:
    """Async only, outermost: the task the request arrived in (``request.probe``)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        from asgiref.sync import markcoroutinefunction

        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> Any:
        request.probe = asyncio.current_task()  # type: ignore[attr-defined]
        return await self.get_response(request)


async def same_task(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    probe = getattr(request, "probe", None)
    return JsonResponse({"pk": user.pk, "same_task": probe is asyncio.current_task()})


URLS = [
    path("api/me", Me.as_view()),
    path("api/scoped", Scoped.as_view()),
    path("me", plain),
    path("async/me", plain_async),
    path("async/task", same_task),
]
ROUTES = {"/api/**": "optional", "/me": "optional", "/async/**": "optional"}


@pytest.fixture
def project(django_with_auth: None, lwa_emulator: LWAEmulator) -> Iterator[Any]:
    """``project(**LWA extra)``: the sign-in project with this module's views."""
    stack: list[Any] = []

    def make(**extra: Any) -> SignIn:
        context = signed_in_project(lwa_emulator, URLCONF, URLS, ROUTES, **extra)
        stack.append(context)
        return context.__enter__()

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def linked_user(amazon_user_id: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(lwa_amazon_account__amazon_user_id=amazon_user_id)


def test_a_signed_in_session_is_the_linked_user_in_drf(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    project()
    client = browser()
    sign_in(client, lwa_emulator)
    ada = linked_user(ADA.user_id)
    expected = {
        "type": "User",
        "authenticated": True,
        "pk": ada.pk,
        "auth": ADA.user_id,
        "owned": [ADA.user_id],
    }
    assert body(client.get("/api/me")) == expected
    assert body(client.get("/me")) == expected  # what plain views already got


def test_a_bearer_token_of_a_linked_customer_is_the_linked_user(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    project()
    sign_in(browser(), lwa_emulator)  # links Ada to a new user
    ada = linked_user(ADA.user_id)
    token = lwa_emulator.issue_token(scopes=["profile"], customer=ADA)
    me = body(browser().get("/api/me", headers=bearer(token)))
    assert (me["type"], me["pk"], me["auth"], me["owned"]) == (
        "User",
        ada.pk,
        ADA.user_id,
        [ADA.user_id],
    )
    assert body(browser().get("/api/scoped", headers=bearer(token)))["pk"] == ada.pk


def test_a_new_customers_bearer_token_creates_the_linked_user(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    project()
    token = lwa_emulator.issue_token(scopes=["profile"], customer=GRACE)
    first = body(browser().get("/api/me", headers=bearer(token)))
    grace = linked_user(GRACE.user_id)
    assert first["pk"] == grace.pk
    assert grace.get_username().startswith("lwa-")  # as sign-in names it
    assert not grace.has_usable_password()
    assert body(browser().get("/api/me", headers=bearer(token)))["pk"] == grace.pk
    assert get_user_model().objects.count() == 1
    # Signing in later finds that same user.
    client = browser()
    sign_in(client, lwa_emulator, customer=1)
    assert body(client.get("/me"))["pk"] == grace.pk


def test_a_bearer_token_never_adopts_a_user_named_after_the_user_id(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    project()
    planted = get_user_model().objects.create_user(ADA.user_id, password="planted-password")
    token = lwa_emulator.issue_token(scopes=["profile"], customer=ADA)
    me = body(browser().get("/api/me", headers=bearer(token)))
    assert me["pk"] != planted.pk
    assert me["pk"] == linked_user(ADA.user_id).pk
    assert (
        not get_user_model()
        .objects.filter(pk=planted.pk, lwa_amazon_account__isnull=False)
        .exists()
    )


def test_another_customers_token_beside_a_session_is_that_customer(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    project()
    client = browser()
    sign_in(client, lwa_emulator)
    grace_token = lwa_emulator.issue_token(scopes=["profile"], customer=GRACE)
    mixed = body(client.get("/api/me", headers=bearer(grace_token)))
    assert mixed["auth"] == GRACE.user_id
    assert mixed["pk"] == linked_user(GRACE.user_id).pk != linked_user(ADA.user_id).pk


def test_bearer_users_off_keeps_an_lwa_user_for_tokens(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    project(BEARER_USERS=False)
    client = browser()
    sign_in(client, lwa_emulator)
    ada = linked_user(ADA.user_id)
    assert body(client.get("/api/me"))["pk"] == ada.pk  # the session's user, still
    token = lwa_emulator.issue_token(scopes=["profile"], customer=GRACE)
    me = body(browser().get("/api/me", headers=bearer(token)))
    assert (me["type"], me["pk"], me["auth"]) == ("LWAUser", None, GRACE.user_id)
    assert get_user_model().objects.count() == 1  # no user made for Grace


def test_bearer_users_default_follows_the_backend(project: Any, lwa_emulator: LWAEmulator) -> None:
    project()
    token = lwa_emulator.issue_token(scopes=["profile"], customer=GRACE)
    with override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]):
        me = body(browser().get("/api/me", headers=bearer(token)))
    assert (me["type"], me["pk"]) == ("LWAUser", None)
    project(BEARER_USERS=None)
    assert body(browser().get("/api/me", headers=bearer(token)))["type"] == "User"


def test_bad_bearer_users_setting_is_improperly_configured(project: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    project(BEARER_USERS="yes")
    with pytest.raises(ImproperlyConfigured, match="BEARER_USERS"):
        browser().get("/api/me")


def test_a_deactivated_user_is_anonymous_in_drf(project: Any, lwa_emulator: LWAEmulator) -> None:
    project()
    client = browser()
    sign_in(client, lwa_emulator)
    ada = linked_user(ADA.user_id)
    ada.is_active = False
    ada.save()
    token = lwa_emulator.issue_token(scopes=["profile"], customer=ADA)
    for answer in (client.get("/api/me"), browser().get("/api/me", headers=bearer(token))):
        assert answer.status_code == 403  # authenticated by LWA, but the account is off
    scoped = body(browser().get("/api/scoped", headers=bearer(token)))
    assert (scoped["type"], scoped["authenticated"], scoped["auth"]) == (
        "AnonymousUser",
        False,
        ADA.user_id,
    )
    assert body(client.get("/api/scoped"))["type"] == "AnonymousUser"


def test_without_the_middleware_a_token_is_still_the_linked_user(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    project()
    sign_in(browser(), lwa_emulator)
    token = lwa_emulator.issue_token(scopes=["profile"], customer=ADA)
    middleware = [m for m in AUTH_MIDDLEWARE if not m.startswith("lwa_middleware.")]
    with override_settings(MIDDLEWARE=middleware):
        me = body(browser().get("/api/me", headers=bearer(token)))
    assert (me["pk"], me["owned"]) == (linked_user(ADA.user_id).pk, [ADA.user_id])


@pytest.mark.parametrize("with_middleware", [True, False], ids=["middleware", "alone"])
def test_a_sessions_unsafe_requests_must_come_from_the_app(
    project: Any, lwa_emulator: LWAEmulator, with_middleware: bool
) -> None:
    # LWAAuthentication runs no CSRF check: the gate's Origin check guards the cookie.
    project()
    client = browser()
    sign_in(client, lwa_emulator)
    middleware = [m for m in AUTH_MIDDLEWARE if with_middleware or "LWAMiddleware" not in m]
    middleware = [m for m in middleware if with_middleware or "SignedInUser" not in m]
    with override_settings(MIDDLEWARE=middleware):
        refused = client.post("/api/me")
        assert refused.status_code == 403
        assert body(refused)["error"] == "cross_site_request"
        assert client.post("/api/me", headers={"Origin": "https://evil.example"}).status_code == 403
        allowed = client.post("/api/me", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert body(allowed)["pk"] == linked_user(ADA.user_id).pk


def _signed_in_async_get(lwa_emulator: LWAEmulator, url: str) -> Any:
    """Sign Ada in, then GET ``url`` with her session through Django's ``AsyncClient``."""
    client = browser()
    sign_in(client, lwa_emulator)
    cookie = f"lwa_session={session_id(client)}"

    async def call() -> Any:
        # Its own (empty) cookie header and this one reach the view joined by
        # "," (Django's ASGIRequest): SignedInUserMiddleware reads it as the gate does.
        async_client = AsyncClient(SERVER_NAME="127.0.0.1", SERVER_PORT="8000")
        return await async_client.get(url, headers={"Cookie": cookie})

    return body(asyncio.run(call()))


def test_async_views_get_the_session_user(project: Any, lwa_emulator: LWAEmulator) -> None:
    project()
    me = _signed_in_async_get(lwa_emulator, "/async/me")
    assert (me["type"], me["pk"], me["auth"]) == ("User", linked_user(ADA.user_id).pk, ADA.user_id)


def test_the_async_path_keeps_the_view_in_the_requests_task(
    project: Any, lwa_emulator: LWAEmulator
) -> None:
    # Issue 22: both Django middlewares are async capable. A sync-only one in an
    # async chain would run in a thread and await the view in another task.
    project()
    with override_settings(MIDDLEWARE=[f"{__name__}.TaskProbe", *AUTH_MIDDLEWARE]):
        me = _signed_in_async_get(lwa_emulator, "/async/task")
    assert me == {"pk": linked_user(ADA.user_id).pk, "same_task": True}


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
def test_served_under_asgi_and_wsgi(project: Any, lwa_emulator: LWAEmulator, kind: str) -> None:
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    project()
    client = browser()
    sign_in(client, lwa_emulator)
    ada = linked_user(ADA.user_id)
    cookie = {"Cookie": f"lwa_session={session_id(client)}"}
    token = lwa_emulator.issue_token(scopes=["profile"], customer=GRACE)
    app = ASGIHandler() if kind == "uvicorn" else WSGIHandler()
    with serve(kind, app) as url, http_client(url) as server:
        session = server.get("/api/me", headers=cookie).json()
        assert (session["pk"], session["owned"]) == (ada.pk, [ADA.user_id])
        assert server.get("/me", headers=cookie).json()["pk"] == ada.pk
        grace = server.get("/api/me", headers=bearer(token)).json()
        assert (grace["pk"], grace["owned"]) == (linked_user(GRACE.user_id).pk, [GRACE.user_id])
        if kind == "uvicorn":
            assert server.get("/async/me", headers=cookie).json()["pk"] == ada.pk
        assert server.get("/api/me").status_code == 401
