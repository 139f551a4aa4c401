"""Settings of the LWA demo project: no database, one app, the LWA middleware.

The LWA client id and API URL come from the environment (``LWA_CLIENT_ID``,
``LWA_API_BASE_URL``), which the middleware reads itself when ``settings.LWA``
does not give ``CLIENT_ID``/``API_BASE_URL``.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-do-not-deploy")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

# LWAConfig: ``manage.py check`` reports a missing or bad settings.LWA (lwa_middleware.E001).
INSTALLED_APPS = ["lwa_demo", "lwa_middleware.integrations.django.LWAConfig"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "lwa_middleware.integrations.django.LWAMiddleware",
]
ROOT_URLCONF = "lwa_demo.urls"
WSGI_APPLICATION = "lwa_demo.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# runserver's access log prints request lines, ?access_token=... included.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.server": {"level": "ERROR"}},
}

LWA = {
    # "CLIENT_ID": "amzn1.application-oa2-client.…",  (else $LWA_CLIENT_ID)
    # "API_BASE_URL": "https://api.amazon.com",        (else $LWA_API_BASE_URL)
    "ROUTES": {"/health": "public", "/": "optional"},
    "DEFAULT": "required",
    "CACHE_TTL": 300,
    # No django.contrib.auth here, so request.user is ours to set.
    "SET_USER": True,
}
