# ruff: noqa: F811  (django_app is imported from django_support)
"""``lwa_middleware.integrations.django`` and the example Django project.

Django is configured once per process from the example project's settings
(``examples/django_project/lwa_demo/settings.py``) by its ``create_app``;
each test then adjusts ``settings.LWA`` and ``ROOT_URLCONF`` with
``override_settings`` and uses a fresh ``django.test.Client``, whose handler
builds the middleware from the settings of the moment.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from django_support import django_app, lwa_settings  # noqa: F401  (fixture)
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

from lwa_middleware import get_identity
from lwa_middleware.integrations.django import (
    LWAMiddleware,
    LWAUser,
    lwa_required,
)
from lwa_middleware.testing import Fault, LWAEmulator


def _describe(request: HttpRequest) -> dict[str, Any]:
    identity = get_identity(request)
    user = getattr(request, "user", None)
    return {
        "identity": identity.user_id if identity else None,
        "attr": request.lwa_identity.user_id if request.lwa_identity else None,
        "user": None
        if user is None
        else {
            "type": type(user).__name__,
            "is_authenticated": user.is_authenticated,
            "username": user.get_username(),
        },
        "auth_header": "HTTP_AUTHORIZATION" in request.META,
        "query": request.META.get("QUERY_STRING", ""),
        "get": sorted(request.GET),
    }


def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request))


@lwa_required("postal_code")
def zip_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request))


@lwa_required("postal_code")
async def async_zip_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request))


@lwa_required("profile", "postal_code")
def both_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request))


@lwa_required()
def any_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request))


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("opt/echo", echo),
    path("opt/zip", zip_view),
    path("opt/async-zip", async_zip_view),
    path("opt/any", any_view),
    path("required", echo),
    path("policy-zip", echo),
    path("opt/both", both_view),
    path("policy-both", echo),
    path("public", any_view),
]


@pytest.fixture
def configure(django_app: Any, lwa_emulator: LWAEmulator) -> Iterator[Any]:
    """``configure(**LWA overrides)``: a test ``Client`` for this module's urls."""
    overrides: list[Any] = []

    def make(**extra: Any) -> Client:
        override = override_settings(LWA=lwa_settings(lwa_emulator, **extra), ROOT_URLCONF=__name__)
        override.enable()
        overrides.append(override)
        return Client()

    yield make
    for override in reversed(overrides):
        override.disable()


def test_example_project_with_test_client(django_app: Any, lwa_emulator: LWAEmulator) -> None:
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(full)
    client = Client()
    assert json_of(client.get("/health")) == {"status": "ok"}
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert json_of(client.get("/")) == {"hello": "anonymous"}
    # SET_USER is on in the example: request.user is an LWAUser.
    assert json_of(client.get("/", headers=bearer(full))) == {"hello": "Ada"}
    me = client.get("/me", headers=bearer(full))
    assert me.status_code == 200
    assert json_of(me)["user_id"] == customer.user_id
    assert json_of(me)["scopes"] == ["postal_code", "profile"]
    shipping = client.get("/shipping", headers=bearer(full))
    assert json_of(shipping) == {"user_id": customer.user_id, "postal_code": customer.postal_code}
    assert_missing_token(client.get("/me"))
    assert_missing_token(client.get("/shipping"))
    assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_example_project_over_threaded_server(django_app: Any, lwa_emulator: LWAEmulator) -> None:
    from lwa_demo.wsgi import create_app

    app = create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.set_latency(0.2, "tokeninfo")
    with wsgi_server(app) as url, http_client(url) as client:
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(lambda _: client.get("/shipping", headers=bearer(full)), range(6))
            )
        assert [a.status_code for a in answers] == [200] * 6
        # Concurrent requests with one new token shared one lookup.
        assert lwa_emulator.calls["tokeninfo"] == 1
        assert_missing_token(client.get("/me"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
        assert client.get("/health").json() == {"status": "ok"}


def test_identity_on_request_and_meta(configure: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    client = configure()
    body = json_of(client.get("/required", headers=bearer(token)))
    assert body["identity"] == body["attr"] == user_id
    # SET_USER defaults to off: request.user is left alone.
    assert body["user"] is None
    anonymous = json_of(client.get("/opt/echo"))
    assert anonymous["identity"] is None
    assert anonymous["attr"] is None


def test_set_user(configure: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    client = configure(SET_USER=True)
    assert json_of(client.get("/opt/echo", headers=bearer(token)))["user"] == {
        "type": "LWAUser",
        "is_authenticated": True,
        "username": user_id,
    }
    assert json_of(client.get("/opt/echo"))["user"] == {
        "type": "LWAAnonymousUser",
        "is_authenticated": False,
        "username": "",
    }


def test_lwa_user() -> None:
    from lwa_middleware import Identity

    identity = Identity(user_id="amzn1.account.X", email="a@b.c", client_id="c", expires_at=1.0)
    user = LWAUser(identity)
    assert user.is_authenticated
    assert not user.is_anonymous
    assert user.username == user.get_username() == str(user) == "amzn1.account.X"
    assert user.email == "a@b.c"
    assert user.display_name == "a@b.c"
    assert not user.has_perm("app.view_thing")
    assert not hasattr(user, "pk")
    assert user == LWAUser(identity)


@pytest.mark.parametrize("view", ["/opt/zip", "/opt/async-zip"])
def test_decorator_answers_like_the_middleware(
    configure: Any, lwa_emulator: LWAEmulator, view: str
) -> None:
    full = lwa_emulator.issue_token(scopes=["postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    client = configure()
    ok = client.get(view, headers=bearer(full))
    assert ok.status_code == 200
    assert json_of(ok)["identity"] == lwa_emulator.customer_for(full).user_id
    refused = client.get(view, headers=bearer(poor))
    assert_insufficient(refused, "postal_code")
    same_error(refused, client.get("/policy-zip", headers=bearer(poor)))
    anonymous = client.get(view)
    assert_missing_token(anonymous)
    same_error(anonymous, client.get("/required"))


def test_several_scopes_answer_like_a_route_policy(
    configure: Any, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = configure()
    response = client.get("/opt/both", headers=bearer(token))
    assert response.status_code == 403
    same_error(response, client.get("/policy-both", headers=bearer(token)))


def test_decorator_uses_the_configured_realm(configure: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = configure(REALM="shop")
    assert_missing_token(client.get("/required"), realm="shop")
    assert_missing_token(client.get("/opt/any"), realm="shop")
    assert_insufficient(client.get("/opt/zip", headers=bearer(token)), "postal_code", "shop")


def test_public_route_reads_no_token(
    configure: Any, lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = configure()
    with fresh_warnings(), caplog.at_level("WARNING", "lwa_middleware.integrations"):
        assert_missing_token(client.get("/public", headers=bearer(token)))
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert any("Django" in record.getMessage() for record in caplog.records)


def test_core_errors_rendered(configure: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    other = lwa_emulator.issue_token(scopes=["profile"])
    client = configure()
    two = client.get("/required", {"access_token": other}, headers=bearer(token))
    assert two.status_code == 400
    assert json_of(two)["error"] == "invalid_request"
    assert 'error="invalid_request"' in two.headers["www-authenticate"]
    lwa_emulator.revoke(other)
    revoked = client.get("/required", headers={"x-amz-access-token": other})
    assert revoked.status_code == 401
    assert json_of(revoked)["error"] == "invalid_token"
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", retry_after=7)
    down = client.get("/required", headers=bearer(token))
    assert down.status_code == 503
    assert json_of(down)["error"] == "temporarily_unavailable"
    assert down.headers["retry-after"] == "7"
    assert "www-authenticate" not in down.headers


def test_query_token_and_strip_credentials(configure: Any, lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    kept = configure()
    body = json_of(kept.get("/required", {"access_token": token, "page": "2"}))
    assert body["identity"] == user_id
    assert "access_token" in body["get"]
    stripped = configure(STRIP_CREDENTIALS=True)
    body = json_of(stripped.get("/required", {"access_token": token, "page": "2"}))
    assert body["identity"] == user_id
    assert body["query"] == "page=2"
    assert body["get"] == ["page"]
    body = json_of(stripped.get("/required", headers=bearer(token)))
    assert body["identity"] == user_id
    assert body["auth_header"] is False


def test_cors_preflight_is_judged_unless_opted_in(configure: Any) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    assert_missing_token(configure().options("/required", headers=preflight))
    client = configure(ALLOW_PREFLIGHT=True)
    assert client.options("/required", headers=preflight).status_code == 200
    assert_missing_token(client.options("/required"))
    # Origin is part of a real preflight.
    assert_missing_token(
        client.options("/required", headers={"Access-Control-Request-Method": "GET"})
    )


def test_sync_only() -> None:
    assert LWAMiddleware.sync_capable is True
    assert LWAMiddleware.async_capable is False


@pytest.mark.parametrize(
    ("lwa", "message"),
    [
        ("not a dict", "must be a dict"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "ROUTE": {}}, "unknown key"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "ROUTES": {"me": "public"}}, "starts"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "DEFAULT": "sometimes"}, "policy"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "SET_USER": "yes"}, "SET_USER"),
        (
            {"CLIENT_ID": "amzn1.application-oa2-client.x", "API_BASE_URL": "http://example.com"},
            "loopback",
        ),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "CACHE_TTL": -1}, "cache_ttl"),
        ({}, "client_id is required"),
    ],
)
def test_bad_settings_are_improperly_configured(
    django_app: Any, monkeypatch: pytest.MonkeyPatch, lwa: Any, message: str
) -> None:
    for name in ("LWA_CLIENT_ID", "LWA_API_BASE_URL", "LWA_REGION"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(LWA=lwa), pytest.raises(ImproperlyConfigured, match=message) as error:
        LWAMiddleware(bare)
    assert "settings.LWA" in str(error.value)
    # Django raises it when it loads the middleware, on the first request.
    with (
        override_settings(LWA=lwa, ROOT_URLCONF=__name__),
        pytest.raises(ImproperlyConfigured, match=message),
    ):
        Client().get("/required")


def test_the_asgi_middleware_refuses_django_with_force_script_name(
    django_app: Any, lwa_emulator: LWAEmulator
) -> None:
    """Django routes on ``path`` minus ``FORCE_SCRIPT_NAME``, a path the ASGI
    middleware never sees: wrapping it would let one URL form slip past the
    route table, so it is refused with a pointer to the Django integration."""
    from django.core.handlers.asgi import ASGIHandler

    from lwa_middleware import ConfigurationError
    from lwa_middleware import LWAMiddleware as ASGIMiddleware

    options = {"client_id": lwa_emulator.client_id, "api_base_url": lwa_emulator.base_url}
    with (
        override_settings(FORCE_SCRIPT_NAME="/public"),
        pytest.raises(ConfigurationError, match=r"integrations\.django\.LWAMiddleware"),
    ):
        ASGIMiddleware(ASGIHandler(), routes={"/public/**": "public"}, **options)
    # Without it Django routes on the path below root_path, which the
    # middleware judges too.
    ASGIMiddleware(ASGIHandler(), routes={"/public/**": "public"}, **options)


# -- the system check: manage.py check reports a missing or bad settings.LWA ------------


def _lwa_messages() -> list[Any]:
    from django.core.checks import run_checks

    return [m for m in run_checks(tags=["lwa"]) if m.id.startswith("lwa_middleware.")]


@pytest.fixture
def no_lwa_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LWA_CLIENT_ID", "LWA_API_BASE_URL", "LWA_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_lwa_env")
def test_check_passes_on_good_settings(django_app: Any, lwa_emulator: LWAEmulator) -> None:
    with override_settings(LWA=lwa_settings(lwa_emulator)):
        assert _lwa_messages() == []


@pytest.mark.usefixtures("no_lwa_env")
@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "CACHE_TLL": 3}, "unknown key"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "DEFAULT": "sometimes"}, "policy"),
        ({"CLIENT_ID": "amzn1.application-oa2-client.x", "SET_USER": "yes"}, "SET_USER"),
        (["CLIENT_ID"], "must be a dict"),
        ({"ROUTES": {"/": "public"}}, "client"),
    ],
)
def test_check_reports_bad_settings(django_app: Any, config: Any, words: str) -> None:
    with override_settings(LWA=config):
        messages = _lwa_messages()
    assert [m.id for m in messages] == ["lwa_middleware.E001"]
    error = messages[0]
    assert words.lower() in error.msg.lower()
    assert error.is_serious()
    assert "settings.LWA" in error.hint


@pytest.mark.usefixtures("no_lwa_env")
def test_check_reports_missing_settings(django_app: Any) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings():
        del settings.LWA
        assert [m.id for m in _lwa_messages()] == ["lwa_middleware.E001"]
        with pytest.raises(SystemCheckError, match=r"lwa_middleware\.E001"):
            call_command("check", "--tag", "lwa")


def test_check_warns_when_the_middleware_is_missing(
    django_app: Any, lwa_emulator: LWAEmulator
) -> None:
    from django.conf import settings

    assert "lwa_middleware.integrations.django.LWAConfig" in settings.INSTALLED_APPS
    middleware = [m for m in settings.MIDDLEWARE if "lwa_middleware" not in m]
    with override_settings(LWA=lwa_settings(lwa_emulator), MIDDLEWARE=middleware):
        assert [m.id for m in _lwa_messages()] == ["lwa_middleware.W001"]


def test_manage_py_check_on_the_example_project(tmp_path: Any) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWA_", "DJANGO_"))}
    manage = [sys.executable, str(DJANGO_PROJECT / "manage.py"), "check"]
    broken = subprocess.run(manage, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0
    assert "lwa_middleware.E001" in broken.stderr
    env["LWA_CLIENT_ID"] = "amzn1.application-oa2-client.0123"
    fixed = subprocess.run(manage, env=env, capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    assert "no issues" in fixed.stdout
