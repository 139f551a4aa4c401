import os

import django
import pytest

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture(scope="session", autouse=True)
def django_on_the_emulator(lwa_emulator_server):
    os.environ["LWA_API_BASE_URL"] = lwa_emulator_server.base_url
    os.environ["LWA_AUTHORIZE_URL"] = lwa_emulator_server.authorize_url
    os.environ["LWA_CLIENT_SECRET"] = lwa_emulator_server.client_secret
    os.environ["LWA_REDIRECT_URI"] = f"{ORIGIN}/callback"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    yield
    from django.conf import settings
    settings.SIGNIN.close()


@pytest.fixture
def lwa(lwa_emulator):
    lwa_emulator.add_redirect_uri(f"{ORIGIN}/callback")
    return lwa_emulator
