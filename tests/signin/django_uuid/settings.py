"""Settings of the UUID-keyed user project (sign-in glue, links app, in-memory SQLite)."""

from __future__ import annotations

SECRET_KEY = "uuid-user-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "tests.signin.django_uuid",
    "lwa_middleware.integrations.django.LWAConfig",
    "lwa_middleware.signin.django_app",
]
AUTH_USER_MODEL = "django_uuid.User"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "lwa_middleware.integrations.django.LWAMiddleware",
    "lwa_middleware.signin.django.SignedInUserMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "lwa_middleware.signin.django.LWABackend",
    "django.contrib.auth.backends.ModelBackend",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# settings.LWA and ROOT_URLCONF: set by uuid_checks.py around each test (the emulator's URL).
