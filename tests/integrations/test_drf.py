"""``lwa_middleware.integrations.drf``: DRF authentication and scope permission.

Real DRF views behind the Django integration's middleware, driven by DRF's
``APIClient`` and, once, over Werkzeug's threaded server. Django is set up as
in ``test_django`` (its ``django_app`` fixture); this module's urls and
``REST_FRAMEWORK`` are laid over it with ``override_settings``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from integration_support import (
    DJANGO_PROJECT,
    assert_insufficient,
    assert_missing_token,
    bearer,
    fresh_warnings,
    http_client,
    json_of,
    same_error,
    wsgi_server,
)

# DRF reads settings when imported: configure Django from the example project
# first, as its create_app would (the django_app fixture then lays its own over).
if not settings.configured:
    sys.path.insert(0, str(DJANGO_PROJECT))
    try:
        from lwa_demo import settings as _project
    finally:
        sys.path.remove(str(DJANGO_PROJECT))
    settings.configure(**{k: getattr(_project, k) for k in dir(_project) if k.isupper()})
    django.setup()

from django.test import override_settings
from django.urls import path
from django_support import django_app, lwa_settings  # noqa: F401  (fixture)
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from lwa_middleware import Identity
from lwa_middleware.integrations.drf import HasLWAScopes, LWAAuthentication
from lwa_middleware.testing import LWAEmulator

# DRF binds DEFAULT_AUTHENTICATION_CLASSES into APIView when it is imported,
# before any test can set it: the views name their classes.
LWA_FIRST = [LWAAuthentication, SessionAuthentication]


def _describe(request: Request) -> dict[str, Any]:
    auth = request.auth
    return {
        "user": type(request.user).__name__,
        "username": request.user.get_username(),
        "authenticated": request.user.is_authenticated,
        "auth": auth.user_id if isinstance(auth, Identity) else None,
        "authenticator": type(request.successful_authenticator).__name__
        if request.successful_authenticator
        else None,
    }


class Echo(APIView):
    authentication_classes = LWA_FIRST

    def get(self, request: Request) -> Response:
        return Response(_describe(request))

    def post(self, request: Request) -> Response:
        return Response({**_describe(request), "data": request.data}, status=201)


class SessionFirstEcho(Echo):
    authentication_classes = list(reversed(LWA_FIRST))


class Authed(APIView):
    authentication_classes = LWA_FIRST
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(_describe(request))


class ZipByAttribute(APIView):
    authentication_classes = LWA_FIRST
    permission_classes = [HasLWAScopes]
    required_scopes = ["postal_code"]

    def get(self, request: Request) -> Response:
        return Response({"postal_code": request.auth.postal_code})


@api_view(["GET"])
@authentication_classes(LWA_FIRST)
@permission_classes([HasLWAScopes.require("postal_code")])
def zip_view(request: Request) -> Response:
    return Response({"postal_code": request.auth.postal_code})


@api_view(["GET"])
@authentication_classes(LWA_FIRST)
@permission_classes([HasLWAScopes.require()])
def any_identity(request: Request) -> Response:
    return Response(_describe(request))


class Unconfigured(APIView):
    authentication_classes = LWA_FIRST
    permission_classes = [HasLWAScopes]

    def get(self, request: Request) -> Response:
        return Response({})


urlpatterns = [
    path("api/echo", Echo.as_view()),
    path("api/session-first", SessionFirstEcho.as_view()),
    path("api/authed", Authed.as_view()),
    path("api/zip-attr", ZipByAttribute.as_view()),
    path("api/zip", zip_view),
    path("api/any", any_identity),
    path("api/unconfigured", Unconfigured.as_view()),
    path("policy-zip", Echo.as_view()),
    path("required", Echo.as_view()),
]


@pytest.fixture
def drf(django_app: Any, lwa_emulator: LWAEmulator) -> Iterator[Any]:  # noqa: F811
    """``drf(**LWA overrides)``: an ``APIClient`` for these urls."""
    overrides: list[Any] = []

    def make(csrf: bool = True, **extra: Any) -> APIClient:
        config = lwa_settings(
            lwa_emulator, ROUTES={"/api/**": "optional", "/policy-zip": ["postal_code"]}
        )
        config.update(extra)
        override = override_settings(
            LWA=config,
            ROOT_URLCONF=__name__,
            REST_FRAMEWORK={
                # No django.contrib.auth in this project: an anonymous user without models.
                "UNAUTHENTICATED_USER": "lwa_middleware.integrations.django.LWAAnonymousUser",
                "EXCEPTION_HANDLER": "lwa_middleware.integrations.drf.exception_handler",
            },
        )
        override.enable()
        overrides.append(override)
        return APIClient(enforce_csrf_checks=csrf)

    yield make
    for override in reversed(overrides):
        override.disable()


def test_user_and_auth_come_from_the_identity(drf: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    client = drf()
    assert json_of(client.get("/api/echo", headers=bearer(token))) == {
        "user": "LWAUser",
        "username": user_id,
        "authenticated": True,
        "auth": user_id,
        "authenticator": "LWAAuthentication",
    }
    anonymous = json_of(client.get("/api/echo"))
    assert anonymous["authenticated"] is False
    assert anonymous["auth"] is None
    assert anonymous["authenticator"] is None
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_not_authenticated_is_a_401_with_the_challenge(drf: Any, lwa_emulator: LWAEmulator) -> None:
    client = drf(REALM="shop")
    refused = client.get("/api/authed")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="shop"'
    assert LWAAuthentication().authenticate_header(None) == 'Bearer realm="shop"'
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert client.get("/api/authed", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("url", ["/api/zip", "/api/zip-attr"])
def test_scope_permission_answers_like_the_middleware(
    drf: Any, lwa_emulator: LWAEmulator, url: str
) -> None:
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    client = drf()
    assert json_of(client.get(url, headers=bearer(full))) == {"postal_code": "10115"}
    refused = client.get(url, headers=bearer(poor))
    assert_insufficient(refused, "postal_code")
    same_error(refused, client.get("/policy-zip", headers=bearer(poor)))
    anonymous = client.get(url)
    assert_missing_token(anonymous)
    same_error(anonymous, client.get("/required"))


def test_default_exception_handler_keeps_status_challenge_and_body(
    drf: Any, lwa_emulator: LWAEmulator
) -> None:
    client = drf()
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with override_settings(
        REST_FRAMEWORK={
            "UNAUTHENTICATED_USER": "lwa_middleware.integrations.django.LWAAnonymousUser"
        }
    ):
        refused = client.get("/api/zip", headers=bearer(poor))
    assert_insufficient(refused, "postal_code")
    reference = client.get("/policy-zip", headers=bearer(poor))
    assert refused["WWW-Authenticate"] == reference["WWW-Authenticate"]
    assert json_of(refused) == json_of(reference)


def test_scope_permission_without_scopes_needs_an_identity(
    drf: Any, lwa_emulator: LWAEmulator
) -> None:
    client = drf()
    assert_missing_token(client.get("/api/any"))
    token = lwa_emulator.issue_token(scopes=["profile:user_id"])
    assert client.get("/api/any", headers=bearer(token)).status_code == 200


def test_scope_permission_misconfigured(drf: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="required_scopes"):
        drf().get("/api/unconfigured")
    with pytest.raises(ValueError, match="scope"):
        HasLWAScopes.require("not a scope")


def test_bearer_post_never_needs_csrf(drf: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    # SET_USER makes Django's request.user an active LWAUser, which is what
    # makes SessionAuthentication enforce CSRF.
    client = drf(SET_USER=True)
    created = client.post("/api/echo", {"a": 1}, format="json", headers=bearer(token))
    assert created.status_code == 201
    assert json_of(created)["auth"] == user_id
    assert json_of(created)["data"] == {"a": 1}
    # The control: SessionAuthentication first refuses the same request (CSRF).
    refused = client.post("/api/session-first", {"a": 1}, format="json", headers=bearer(token))
    assert refused.status_code == 403
    assert "CSRF" in json_of(refused)["detail"]


def test_without_the_middleware_it_authenticates_nothing(
    drf: Any, lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from django.conf import settings

    client = drf()
    token = lwa_emulator.issue_token(scopes=["profile"])
    middleware = [m for m in settings.MIDDLEWARE if "lwa_middleware" not in m]
    with (
        override_settings(MIDDLEWARE=middleware),
        fresh_warnings(),
        caplog.at_level(logging.WARNING, "lwa_middleware.integrations"),
    ):
        assert json_of(client.get("/api/echo", headers=bearer(token)))["auth"] is None
        assert_missing_token(client.get("/api/zip", headers=bearer(token)))
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert any("Django REST framework" in r.getMessage() for r in caplog.records)


def test_drf_over_a_threaded_wsgi_server(drf: Any, lwa_emulator: LWAEmulator) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    drf()  # this module's settings
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with wsgi_server(WSGIHandler()) as url, http_client(url) as client:
        assert client.get("/api/zip", headers=bearer(full)).json() == {"postal_code": "10115"}
        assert_insufficient(client.get("/api/zip", headers=bearer(poor)), "postal_code")
        same_error(client.get("/api/zip"), client.get("/required"))
        posted = client.post(
            "/api/echo",
            content=json.dumps({"n": 2}),
            headers={**bearer(poor), "Content-Type": "application/json"},
        )
        assert posted.status_code == 201
        assert posted.json()["data"] == {"n": 2}


def test_default_authentication_classes_setting_imports_cleanly() -> None:
    # DRF imports the classes named in its settings while rest_framework.views
    # is half-imported: our module must not import it back at import time.
    import subprocess

    code = (
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure(REST_FRAMEWORK={'DEFAULT_AUTHENTICATION_CLASSES': "
        "['lwa_middleware.integrations.drf.LWAAuthentication'], 'EXCEPTION_HANDLER': "
        "'lwa_middleware.integrations.drf.exception_handler', 'UNAUTHENTICATED_USER': "
        "'lwa_middleware.integrations.django.LWAAnonymousUser'})\n"
        "django.setup()\n"
        "from rest_framework.views import APIView\n"
        "print(APIView.authentication_classes[0].__name__, APIView.settings.EXCEPTION_HANDLER"
        ".__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["LWAAuthentication", "exception_handler"]
