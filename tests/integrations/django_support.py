"""The Django tests' shared parts: the example project's app, and LWA settings.

``test_django`` and ``test_drf`` both take the ``django_app`` fixture (Django
configured once per process from the example project) and build ``LWA``
settings with :func:`lwa_settings`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from integration_support import DJANGO_PROJECT

from lwa_middleware.testing import LWAEmulator


@pytest.fixture(scope="module")
def django_app(lwa_emulator_server: LWAEmulator) -> Iterator[Any]:
    """The example project's WSGI app, Django configured from its settings.

    If another test configured Django first, the project's settings are laid
    over it for this module with ``override_settings``.
    """
    from django.conf import settings

    sys.path.insert(0, str(DJANGO_PROJECT))
    override = None
    if settings.configured:
        import django
        from lwa_demo import settings as project

        django.setup()
        # What serving the project needs; not SECRET_KEY or DATABASES, whose
        # change signals would re-validate the other test's bare settings.
        names = ("ALLOWED_HOSTS", "MIDDLEWARE", "ROOT_URLCONF", "LWA")
        override = override_settings(**{name: getattr(project, name) for name in names})
        override.enable()
    from lwa_demo.wsgi import create_app

    try:
        yield create_app(lwa_emulator_server.base_url, lwa_emulator_server.client_id)
    finally:
        if override is not None:
            override.disable()
        sys.path.remove(str(DJANGO_PROJECT))


def lwa_settings(lwa: LWAEmulator, **extra: Any) -> dict[str, Any]:
    config = {
        "CLIENT_ID": lwa.client_id,
        "API_BASE_URL": lwa.base_url,
        "ROUTES": {
            "/opt/**": "optional",
            "/public": "public",
            "/policy-zip": ["postal_code"],
            "/policy-both": ["profile", "postal_code"],
        },
        "DEFAULT": "required",
    }
    config.update(extra)
    return config
