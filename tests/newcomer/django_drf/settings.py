"""A Django + DRF project where customers sign in with Amazon and mobile clients send Bearer
tokens; both reach the same linked Django user. Written from docs/how-to/sign-in.md
("Django"), docs/how-to/frameworks.md ("Django REST framework") and docs/how-to/testing.md
("Testing a Django project") alone."""

import os

from lwa_middleware.signin import SignIn
from lwa_middleware.signin.django import link_django_user

CLIENT_ID = os.environ.get("LWA_CLIENT_ID", "amzn1.application-oa2-client.emulator")
SIGNIN = SignIn(
    client_id=CLIENT_ID,
    client_secret=os.environ.get("LWA_CLIENT_SECRET", ""),
    session_secret=os.environ.get("SESSION_SECRET", "change-me-to-32-random-bytes-or-more!!"),
    redirect_uri=os.environ.get("LWA_REDIRECT_URI", "https://shop.example/callback"),
    link=link_django_user,
)
LWA = {"CLIENT_ID": CLIENT_ID, "SESSION": SIGNIN,
       "ROUTES": {**SIGNIN.route_policies(), "/": "optional", "/api/**": "optional"}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                  "rest_framework", "lwa_middleware.signin.django_app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
AUTHENTICATION_BACKENDS = ["lwa_middleware.signin.django.LWABackend"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "lwa_middleware.integrations.django.LWAMiddleware",
    "lwa_middleware.signin.django.SignedInUserMiddleware",
]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "lwa_middleware.integrations.drf.LWAAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "lwa_middleware.integrations.drf.exception_handler",
}
ROOT_URLCONF = "urls"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "change-me")
ALLOWED_HOSTS = ["shop.example", "testserver", "127.0.0.1"]
USE_TZ = True
