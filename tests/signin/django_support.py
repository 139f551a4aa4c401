"""The Django sign-in set-up that the Django and DRF sign-in tests share.

Django is configured once per process (by whichever test gets there first,
see ``tests/integrations/django_support.py``); :data:`django_with_auth_fixture`
lays what sign-in needs over it with ``override_settings`` (apps, middleware,
backends) and points the default database connection at a SQLite file of
its own for the module's duration (a file, so real servers' threads see the
same database). :func:`signed_in_project` wires a ``SignIn`` linked to Django
users into ``settings.LWA`` with the given urls.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.local import Local
from django.conf import settings
from django.test import Client, override_settings

from lwa_middleware.signin import SignIn
from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import authorize, make_signin, path_of

__all__ = [
    "AUTH_MIDDLEWARE",
    "body",
    "browser",
    "django_with_auth_fixture",
    "session_id",
    "sign_in",
    "signed_in_project",
]

ROOT = Path(__file__).resolve().parents[2]
DJANGO_PROJECT = ROOT / "examples" / "django_project"

AUTH_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "lwa_middleware.integrations.django.LWAMiddleware",
    "lwa_middleware.signin.django.SignedInUserMiddleware",
]


def _django_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Django with ``contrib.auth``, sessions, CSRF and a SQLite file database."""
    import django
    from django.core.management import call_command
    from django.db import connections

    sys.path.insert(0, str(DJANGO_PROJECT))
    if not settings.configured:
        from lwa_demo import settings as project

        settings.configure(**{k: getattr(project, k) for k in dir(project) if k.isupper()})
    django.setup()
    override = override_settings(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "lwa_demo",
            "lwa_middleware.integrations.django.LWAConfig",
            "lwa_middleware.signin.django_app",  # the Amazon account links
        ],
        MIDDLEWARE=AUTH_MIDDLEWARE,
        AUTHENTICATION_BACKENDS=[
            "lwa_middleware.signin.django.LWABackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        # The planter's password: hashed cheaply, this is no test of hashing.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        ALLOWED_HOSTS=["127.0.0.1"],
    )
    override.enable()
    # The default connection, whatever it was (the project has no database), is
    # a SQLite file while this module runs; restored afterwards.
    database = tmp_path_factory.mktemp("django-auth") / "db.sqlite3"
    saved = (connections.__dict__.pop("settings", None), connections._connections)
    connections._settings = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}}
    )
    connections._connections = Local(connections.thread_critical)
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        connections["default"].close()
        connections._connections = saved[1]
        connections.__dict__.pop("settings", None)
        connections._settings = None
        if saved[0] is not None:
            connections.__dict__["settings"] = saved[0]
        override.disable()
        sys.path.remove(str(DJANGO_PROJECT))


#: Bind in a test module as ``django_with_auth = django_with_auth_fixture``.
django_with_auth_fixture = pytest.fixture(scope="module", name="django_with_auth")(
    _django_with_auth
)


@contextlib.contextmanager
def signed_in_project(
    lwa: LWAEmulator, urlconf: str, urlpatterns: list[Any], routes: dict[str, Any], **lwa_extra: Any
) -> Iterator[SignIn]:
    """A SignIn linked to Django users, wired into ``settings.LWA``, with
    its views and ``urlpatterns`` as ``ROOT_URLCONF`` (no user in the database)."""
    from django.contrib.auth import get_user_model

    from lwa_middleware.signin.django import link_django_user, signin_urls

    get_user_model().objects.all().delete()
    signin = make_signin(lwa, link=link_django_user)
    urls = types.ModuleType(urlconf)
    urls.urlpatterns = [*signin_urls(signin), *urlpatterns]  # type: ignore[attr-defined]
    sys.modules[urlconf] = urls
    config = {
        "CLIENT_ID": lwa.client_id,
        "API_BASE_URL": lwa.base_url,
        "SESSION": signin,
        "ROUTES": {**signin.route_policies(), **routes},
        **lwa_extra,
    }
    try:
        with override_settings(LWA=config, ROOT_URLCONF=urlconf):
            yield signin
    finally:
        sys.modules.pop(urlconf, None)
        signin.close()


def browser() -> Client:
    """A Django test client on the app's origin, enforcing CSRF as a browser meets it."""
    return Client(enforce_csrf_checks=True, SERVER_NAME="127.0.0.1", SERVER_PORT="8000")


def sign_in(
    client: Client,
    lwa: LWAEmulator,
    query: Callable[[str], str] | None = None,
    customer: int = 0,
) -> Any:
    login = client.get("/login", {"next": "/me"})
    assert login.status_code == 302, login.content
    back = path_of(authorize(lwa, login["Location"], customer))
    return client.get(query(back) if query else back)


def body(response: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(response.content)
    return result


def session_id(client: Client) -> str:
    return client.cookies["lwa_session"].value
