"""Sign-in with a UUID-keyed ``AUTH_USER_MODEL``; run in a subprocess by
``tests/signin/test_signin_django.py::test_a_custom_user_model_with_uuid_keys``
(``DJANGO_SETTINGS_MODULE=tests.signin.django_uuid.settings``).

Not named ``test_*``: the main run, whose Django is configured otherwise, must
not collect it.
"""

from __future__ import annotations

import json
import os
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from lwa_middleware.signin import SignIn
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import authorize, make_signin, path_of, session_of

ADA = BUILTIN_CUSTOMERS[0]
URLCONF = "tests_signin_django_uuid_urls"

if os.environ.get("DJANGO_SETTINGS_MODULE") != "tests.signin.django_uuid.settings":
    pytest.skip("needs its own Django settings (a subprocess)", allow_module_level=True)


@pytest.fixture(scope="module")
def database() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def signin(database: None, lwa_emulator: LWAEmulator) -> Iterator[SignIn]:
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    from lwa_middleware.signin.django import link_django_user, signin_urls

    def me(request: HttpRequest) -> JsonResponse:
        user = request.user
        return JsonResponse({"type": type(user).__name__, "pk": getattr(user, "pk", None)})

    signin = make_signin(lwa_emulator, link=link_django_user)
    urls = types.ModuleType(URLCONF)
    urls.urlpatterns = [*signin_urls(signin), path("me", me), path("", me)]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = urls
    lwa = {
        "CLIENT_ID": lwa_emulator.client_id,
        "API_BASE_URL": lwa_emulator.base_url,
        "SESSION": signin,
        "ROUTES": {**signin.route_policies(), "/": "optional", "/me": "required"},
    }
    with override_settings(LWA=lwa, ROOT_URLCONF=URLCONF):
        yield signin
    del sys.modules[URLCONF]


def signed_in(lwa: LWAEmulator) -> tuple[Client, dict[str, Any]]:
    client = Client(enforce_csrf_checks=True, SERVER_NAME="127.0.0.1", SERVER_PORT="8000")
    login = client.get("/login", {"next": "/me"})
    assert client.get(path_of(authorize(lwa, login["Location"]))).status_code == 303
    return client, json.loads(client.get("/me").content)


def test_a_uuid_keyed_user_signs_in_and_keeps_its_key(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    planted = model.objects.create_user(ADA.user_id, password="the-planters-password")
    client, me = signed_in(lwa_emulator)
    user = model.objects.get(lwa_amazon_account__amazon_user_id=ADA.user_id)
    assert isinstance(user.pk, uuid.UUID)
    assert user.pk != planted.pk
    assert me == {"type": "User", "pk": str(user.pk)}
    # Kept with the session as text (sessions keep JSON), found again by it.
    assert session_of(signin, client.cookies["lwa_session"].value).user == str(user.pk)
    _, again = signed_in(lwa_emulator)
    assert again["pk"] == str(user.pk)
    assert model.objects.count() == 2  # the planted user and Ada's: no third


def test_the_links_migration_fits_a_swapped_user_model(database: None) -> None:
    from django.core.management import call_command

    # Exits non-zero if lwa_signin's models differ from its migrations here.
    call_command("makemigrations", "lwa_signin", check=True, dry_run=True, verbosity=0)
