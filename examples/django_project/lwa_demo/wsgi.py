"""WSGI entry point: ``gunicorn --chdir examples/django_project lwa_demo.wsgi``.

:func:`create_app` builds the app in-process (tests, embedding); the
``application`` attribute servers look for is built on first access.
"""

from __future__ import annotations

import os
from typing import Any


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> Any:
    """The project's WSGI app, with ``settings.LWA`` pointed at ``api_base_url``/``client_id``.

    Django is configured from :mod:`lwa_demo.settings` unless it already is;
    ``None`` arguments keep the environment's ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``.
    The middleware reads ``settings.LWA`` when the handler is built, so each
    call gives an app with the given upstream.
    """
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from lwa_demo import settings as project

        settings.configure(**{k: getattr(project, k) for k in dir(project) if k.isupper()})
    django.setup()
    lwa = dict(getattr(settings, "LWA", {}))
    if api_base_url is not None:
        lwa["API_BASE_URL"] = api_base_url
    if client_id is not None:
        lwa["CLIENT_ID"] = client_id
    settings.LWA = lwa
    return get_wsgi_application()


def __getattr__(name: str) -> Any:
    if name == "application":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")
        global application
        application = create_app()
        return application
    raise AttributeError(name)
