"""The Django sign-in glue (``lwa_middleware.signin.django``) in the example project.

``signin_urls``, ``LWABackend``, ``link_django_user`` and
``SignedInUserMiddleware`` with real ``django.contrib.auth`` users in a
SQLite database, behind the project's ``LWAMiddleware`` and Django's own
session, authentication and CSRF middleware (set up by
``tests/signin/django_support.py``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from lwa_middleware import get_identity
from lwa_middleware.signin import SignIn
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.django_support import (
    body,
    browser,
    django_with_auth_fixture,
    session_id,
    sign_in,
    signed_in_project,
)
from tests.signin.signin_support import ORIGIN, authorize, path_of, session_of

ADA = BUILTIN_CUSTOMERS[0]
URLCONF = "tests_signin_django_urls"
ROOT = Path(__file__).resolve().parents[2]
DJANGO_PROJECT = ROOT / "examples" / "django_project"
UUID_CHECKS = Path(__file__).resolve().parent / "django_uuid" / "uuid_checks.py"


@csrf_exempt  # the LWA gate checks Origin on cookie-authenticated POSTs itself
def me(request: HttpRequest) -> JsonResponse:
    identity = get_identity(request)
    user = request.user
    return JsonResponse(
        {
            "identity": identity.user_id if identity else None,
            "type": user.__class__.__name__,  # through Django's SimpleLazyObject
            "is_authenticated": user.is_authenticated,
            "username": user.get_username(),
            "email": getattr(user, "email", None),
            "first_name": getattr(user, "first_name", None),
            "pk": getattr(user, "pk", None),
        }
    )


django_with_auth = django_with_auth_fixture


@pytest.fixture
def signin(django_with_auth: None, lwa_emulator: LWAEmulator) -> Iterator[SignIn]:
    """A SignIn linked to Django users, wired into settings.LWA and the urls."""
    urls = [path("", me), path("me", me), path("zip", me)]
    routes = {"/": "optional", "/me": "required", "/zip": ["postal_code"]}
    with signed_in_project(lwa_emulator, URLCONF, urls, routes) as signin:
        yield signin


def test_sign_in_makes_request_user_a_django_user(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    client = browser()
    answer = sign_in(client, lwa_emulator)
    assert answer.status_code == 303
    assert answer["Location"] == "/me"
    cookie = answer.cookies["lwa_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert answer.cookies["lwa_session_login"]["max-age"] == 0  # the pending login, cleared
    me = body(client.get("/me"))
    user = get_user_model().objects.get()
    assert me == {
        "identity": ADA.user_id,
        "type": "User",
        "is_authenticated": True,
        "username": user.get_username(),
        "email": ADA.email,
        "first_name": ADA.name,
        "pk": user.pk,
    }
    # Named by the backend, not after the user_id (which anyone may register as);
    # the link is a row of its own.
    assert user.get_username().startswith("lwa-")
    assert user.lwa_amazon_account.amazon_user_id == ADA.user_id
    assert not user.has_usable_password()
    assert session_of(signin, session_id(client)).user == user.pk  # link_django_user's result
    # A second sign-in (another browser) finds the same user.
    other = browser()
    sign_in(other, lwa_emulator)
    assert body(other.get("/me"))["pk"] == user.pk
    assert get_user_model().objects.count() == 1


def test_a_bearer_token_is_not_the_sessions_django_user(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    client = browser()
    sign_in(client, lwa_emulator)
    token = lwa_emulator.issue_token(scopes=["profile"], customer=BUILTIN_CUSTOMERS[1])
    other = browser()
    me = body(other.get("/me", headers={"Authorization": f"Bearer {token}"}))
    assert me["identity"] == BUILTIN_CUSTOMERS[1].user_id
    assert me["type"] == "AnonymousUser"  # no session: Django's own anonymous user
    # Another customer's token beside Ada's session cookie does not become Ada.
    mixed = body(client.get("/me", headers={"Authorization": f"Bearer {token}"}))
    assert mixed["identity"] == BUILTIN_CUSTOMERS[1].user_id
    assert mixed["type"] == "AnonymousUser"
    assert body(browser().get("/"))["type"] == "AnonymousUser"
    assert browser().get("/me").status_code == 401


def test_a_deactivated_user_is_no_longer_request_user(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    from lwa_middleware.signin.django import LWABackend

    client = browser()
    sign_in(client, lwa_emulator)
    user = get_user_model().objects.get()
    user.is_active = False
    user.save()
    # As Django's ModelBackend: an inactive user does not authenticate.
    me = body(client.get("/me"))
    assert me["type"] == "AnonymousUser"
    assert me["is_authenticated"] is False
    assert me["identity"] == ADA.user_id  # the LWA token is still good; the account is off
    assert LWABackend().get_user(user.pk) is None
    # Signing in again links no user either.
    fresh = browser()
    assert sign_in(fresh, lwa_emulator).status_code == 303
    assert session_of(signin, session_id(fresh)).user is None
    assert body(fresh.get("/me"))["type"] == "AnonymousUser"


def test_logout_ends_the_session_under_djangos_csrf_middleware(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    client = browser()
    sign_in(client, lwa_emulator)
    sid = session_id(client)
    token = session_of(signin, sid).access_token
    assert client.get("/logout").status_code == 405
    refused = client.post("/logout", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert session_of(signin, sid) is not None
    # No Django CSRF token needed: SignIn.logout checks Origin itself.
    out = client.post("/logout", headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert out["Location"] == "/"
    assert out.cookies["lwa_session"]["max-age"] == 0
    assert session_of(signin, sid) is None
    assert client.get("/me").status_code == 401
    assert body(client.get("/"))["type"] == "AnonymousUser"
    bearer = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401  # revoked in the middleware at logout


def test_cookie_authenticated_posts_need_the_apps_origin(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    client = browser()
    sign_in(client, lwa_emulator)
    refused = client.post("/me")
    assert refused.status_code == 403
    assert body(refused)["error"] == "cross_site_request"
    assert client.post("/me", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/me", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    allowed = client.post("/me", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert body(allowed)["type"] == "User"



def test_a_cookie_websocket_handshake_needs_the_apps_origin(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    """A ``GET`` with ``Upgrade: websocket`` (how a WSGI WebSocket library
    sees a handshake) is judged by origin, as under ASGI (SECURITY.md)."""
    client = browser()
    sign_in(client, lwa_emulator)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    for refused in ({}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "same-origin"}):
        answer = client.get("/me", headers={**upgrade, **refused})
        assert answer.status_code == 403, refused
        assert body(answer)["error"] == "cross_site_request"
    assert client.get("/me").status_code == 200  # a plain GET needs no Origin
    allowed = client.get("/me", headers={**upgrade, "Origin": ORIGIN})
    assert allowed.status_code == 200
    assert body(allowed)["identity"] == ADA.user_id

def test_a_missing_scope_is_refused_for_the_session_too(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    client = browser()
    sign_in(client, lwa_emulator)  # signs in with "profile" only
    refused = client.get("/zip")
    assert refused.status_code == 403
    assert 'scope="postal_code"' in refused["WWW-Authenticate"]


def test_repeated_query_parameters_are_read_as_by_the_other_glue(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    # SignIn reads the first of repeated parameters; the Django views must hand
    # it all of them (QueryDict.items() gives only the last one).
    client = browser()
    answer = sign_in(client, lwa_emulator, lambda back: back + "&" + urlencode({"state": "x"}))
    assert answer.status_code == 303
    assert body(client.get("/me"))["type"] == "User"


# -- account links (Amazon's "Integrate with Your Existing Account System": map the
# -- user_id to the local account in a field or table of its own; an existing local
# -- account is attached only once its owner proved it, e.g. with its password)

PLANTED = "the-planters-own-password"


def test_a_user_named_after_the_user_id_is_not_taken_over(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model

    from lwa_middleware.signin.django import LWABackend

    # Before Ada ever signs in, someone registers a local user named after her
    # user_id (it is no secret: any app she used with LWA saw it) with a password.
    model = get_user_model()
    planted = model.objects.create_user(ADA.user_id, "planter@evil.example", PLANTED)
    client = browser()
    assert sign_in(client, lwa_emulator).status_code == 303
    ada = body(client.get("/me"))
    assert ada["type"] == "User"
    assert ada["pk"] != planted.pk
    assert session_of(signin, session_id(client)).user == ada["pk"]
    # The planted user is untouched and linked to nobody ...
    planted.refresh_from_db()
    assert (planted.get_username(), planted.email) == (ADA.user_id, "planter@evil.example")
    assert planted.check_password(PLANTED)
    assert not model.objects.filter(pk=planted.pk, lwa_amazon_account__isnull=False).exists()
    assert LWABackend().get_user(planted.pk) is None
    # ... and the planter's credentials open the planted user, never Ada's account.
    planter = browser()
    assert planter.login(username=ADA.user_id, password=PLANTED)
    assert body(planter.get("/"))["pk"] == planted.pk
    # Ada's next sign-in comes back to her own account.
    again = browser()
    sign_in(again, lwa_emulator)
    assert body(again.get("/me"))["pk"] == ada["pk"]


def test_the_link_survives_a_username_change(signin: SignIn, lwa_emulator: LWAEmulator) -> None:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    sign_in(browser(), lwa_emulator)
    user = model.objects.get()
    former = user.get_username()
    user.username = "ada"
    user.save()
    # Someone takes the name it had, and another named after the user_id appears.
    model.objects.create_user(former, password=PLANTED)
    model.objects.create_user(ADA.user_id, password=PLANTED)
    client = browser()
    sign_in(client, lwa_emulator)
    me = body(client.get("/me"))
    assert (me["pk"], me["username"]) == (user.pk, "ada")
    assert model.objects.filter(lwa_amazon_account__isnull=False).count() == 1


def test_two_customers_never_share_a_user(signin: SignIn, lwa_emulator: LWAEmulator) -> None:
    from django.contrib.auth import get_user_model

    grace = BUILTIN_CUSTOMERS[1]
    first = browser()
    sign_in(first, lwa_emulator)
    ada = get_user_model().objects.get()
    # Ada's app lets her choose a username: she picks Grace's user_id.
    ada.username = grace.user_id
    ada.save()
    second = browser()
    sign_in(second, lwa_emulator, customer=1)
    theirs = body(second.get("/me"))
    assert theirs["identity"] == grace.user_id
    assert theirs["pk"] != ada.pk
    assert theirs["email"] == grace.email
    assert body(first.get("/me"))["pk"] == ada.pk
    links = {u.lwa_amazon_account.amazon_user_id: u.pk for u in get_user_model().objects.all()}
    assert links == {ADA.user_id: ada.pk, grace.user_id: theirs["pk"]}


def test_unlinking_ends_the_django_sign_in(signin: SignIn, lwa_emulator: LWAEmulator) -> None:
    from django.contrib.auth import get_user_model

    from lwa_middleware.signin.django import LWABackend

    client = browser()
    sign_in(client, lwa_emulator)
    user = get_user_model().objects.get()
    assert body(client.get("/me"))["pk"] == user.pk
    user.lwa_amazon_account.delete()
    me = body(client.get("/me"))
    assert me["identity"] == ADA.user_id  # the LWA session is still good ...
    assert me["type"] == "AnonymousUser"  # ... but it no longer opens that user
    assert LWABackend().get_user(user.pk) is None


def test_an_explicit_link_attaches_an_existing_user(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.contrib.auth import get_user_model
    from django.db import IntegrityError, transaction

    from lwa_middleware.signin.django import link_amazon_account

    local = get_user_model().objects.create_user("ada-local", password=PLANTED)
    # What the app does once ada-local typed her password on its "attach Amazon" page.
    link_amazon_account(local, ADA.user_id)
    client = browser()
    sign_in(client, lwa_emulator)
    assert body(client.get("/me"))["pk"] == local.pk
    other = get_user_model().objects.create_user("someone-else")
    with pytest.raises(IntegrityError), transaction.atomic():
        link_amazon_account(other, ADA.user_id)  # a customer has one user


def test_without_the_links_app_the_setup_error_says_what_to_add(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.core.checks import run_checks
    from django.core.exceptions import ImproperlyConfigured

    from lwa_middleware import Identity
    from lwa_middleware.signin.django import LINKS_APP, link_django_user

    apps = [app for app in settings.INSTALLED_APPS if app != LINKS_APP]
    with override_settings(INSTALLED_APPS=apps):
        with pytest.raises(ImproperlyConfigured, match=re.escape(f"add {LINKS_APP!r}")):
            browser().get("/")  # the middleware refuses to load
        with pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"):
            link_django_user(Identity(user_id=ADA.user_id, client_id="app", expires_at=0.0))
        errors = [m for m in run_checks(tags=["lwa"]) if m.id == "lwa_middleware.E002"]
        assert len(errors) == 1
        assert LINKS_APP in errors[0].hint
    assert not [m for m in run_checks(tags=["lwa"]) if m.id == "lwa_middleware.E002"]


def test_signed_in_user_middleware_without_link_or_session_says_what_to_pass(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    # Issue 22 item 2, "link= left out": request.user silently stayed anonymous
    # (no link, no user to find); a missing SESSION was a bare KeyError.
    from django.core.exceptions import ImproperlyConfigured

    from tests.signin.signin_support import make_signin

    unlinked = make_signin(lwa_emulator, link=None)
    try:
        with (
            override_settings(LWA={**settings.LWA, "SESSION": unlinked}),
            pytest.raises(ImproperlyConfigured, match=r"link=link_django_user"),
        ):
            browser().get("/")
    finally:
        unlinked.close()
    no_session = {k: v for k, v in settings.LWA.items() if k != "SESSION"}
    no_session["ROUTES"] = {"/**": "optional"}
    with (
        override_settings(LWA=no_session),
        pytest.raises(ImproperlyConfigured, match=r"settings.LWA\['SESSION'\]"),
    ):
        browser().get("/")


_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
_GATE = "lwa_middleware.integrations.django.LWAMiddleware"
_USER = "lwa_middleware.signin.django.SignedInUserMiddleware"


@pytest.mark.parametrize(
    ("last", "words"),
    [
        ([_AUTH, _USER, _GATE], "before it"),  # no identity yet when it runs
        ([_GATE, _USER, _AUTH], "AuthenticationMiddleware after"),  # overwrites request.user
    ],
)
def test_signed_in_user_middleware_out_of_order_says_so(
    signin: SignIn, lwa_emulator: LWAEmulator, last: list[str], words: str
) -> None:
    # Issue 22 item 2: silently, request.user was not the session's user.
    from django.core.exceptions import ImproperlyConfigured

    middleware = [m for m in settings.MIDDLEWARE if m not in (_AUTH, _GATE, _USER)] + last
    with (
        override_settings(MIDDLEWARE=middleware),
        pytest.raises(ImproperlyConfigured, match=words),
    ):
        browser().get("/")
    client = browser()  # in order: signed in, request.user is the linked user
    sign_in(client, lwa_emulator)
    assert body(client.get("/me"))["type"] == "User"


def test_an_unmigrated_links_table_is_a_setup_error(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connection

    model = apps.get_model("lwa_signin", "AmazonAccount")
    with connection.schema_editor() as editor:
        editor.delete_model(model)
    try:
        client = browser()
        login = client.get("/login", {"next": "/me"})
        back = path_of(authorize(lwa_emulator, login["Location"]))
        migrate = re.escape("run `manage.py migrate lwa_signin`")
        with pytest.raises(ImproperlyConfigured, match=migrate):
            client.get(back)
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(model)


def test_a_custom_user_model_with_uuid_keys() -> None:
    # Django fixes AUTH_USER_MODEL once per process: a pytest run of its own, with
    # tests/signin/django_uuid's settings (a user model keyed by a UUID).
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.signin.django_uuid.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(UUID_CHECKS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # generous: a loaded 2-core machine
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout, run.stdout


def test_legacy_users_are_linked_on_request_unless_they_have_a_password(
    signin: SignIn, lwa_emulator: LWAEmulator
) -> None:
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    model = get_user_model()
    grace = BUILTIN_CUSTOMERS[1]
    # What the backend created before the links table: named after the user_id, no password.
    legacy = model(username=ADA.user_id)
    legacy.set_unusable_password()
    legacy.save()
    planted = model.objects.create_user(grace.user_id, password=PLANTED)

    def command(*args: str) -> str:
        out = StringIO()
        call_command("lwa_link_legacy_users", *args, stdout=out)
        return out.getvalue()

    listed = command()
    assert f"would link {ADA.user_id} to user {legacy.pk}" in listed
    assert f"skipped {grace.user_id}" in listed
    assert not model.objects.filter(lwa_amazon_account__isnull=False).exists()
    applied = command("--apply")
    assert f"linked {ADA.user_id} to user {legacy.pk}" in applied
    assert f"skipped {grace.user_id}" in applied
    assert command("--apply") == f"skipped {grace.user_id} (user {planted.pk}): " + (
        "it has a password; link it by hand if at all\n"
    )
    ada, grace_client = browser(), browser()
    sign_in(ada, lwa_emulator)
    sign_in(grace_client, lwa_emulator, customer=1)
    assert body(ada.get("/me"))["pk"] == legacy.pk
    assert body(grace_client.get("/me"))["pk"] not in (legacy.pk, planted.pk)
