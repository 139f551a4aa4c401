"""Hostile review (issue 18 after the redesign): a Django project's SignIn and
the middlewares Django builds and drops (one per test client)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, JsonResponse
from django.urls import path

from lwa_middleware import get_identity
from lwa_middleware.signin import SignIn
from lwa_middleware.testing import LWAEmulator
from tests.signin.django_support import browser, django_with_auth_fixture, signed_in_project
from tests.signin.django_support import sign_in as django_sign_in

URLCONF = "tests_signin_review_urls"
django_with_auth = django_with_auth_fixture


def me(request: HttpRequest) -> JsonResponse:
    identity = get_identity(request)
    return JsonResponse({"identity": identity.user_id if identity else None})


@pytest.fixture
def signin(django_with_auth: None, lwa_emulator: LWAEmulator) -> Iterator[SignIn]:
    with signed_in_project(lwa_emulator, URLCONF, [path("me", me)], {"/me": "required"}) as s:
        yield s


def _io_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "lwa-upstream")


def test_the_middlewares_django_drops_are_not_kept_alive_by_the_signin(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    for _ in range(2):  # warm: whatever stays for good is made here
        client = browser()
        assert django_sign_in(client, lwa_emulator).status_code == 303
        del client
    gc.collect()
    before = _io_threads()
    for _ in range(5):
        client = browser()  # a new handler: Django builds its middleware again
        assert django_sign_in(client, lwa_emulator).status_code == 303
        assert client.get("/me").status_code == 200
        del client
    gc.collect()
    assert _io_threads() <= before
