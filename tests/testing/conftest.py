"""The ``client`` fixture of the emulator's tests.

The ``lwa_emulator`` / ``lwa_emulator_server`` fixtures are not loaded here:
they come from the pytest plugin ``lwa_middleware.testing.pytest_plugin``
through its ``pytest11`` entry point once the package is installed.  Naming
the plugin in ``pytest_plugins`` as well would load it twice, which makes
pytest fail; before installing, run::

    PYTHONPATH=. python -m pytest tests/testing -p lwa_middleware.testing.pytest_plugin
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from lwa_middleware.testing import LWAEmulator

from .emulator_support import REDIRECT, make_client


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client() as c:
        yield c


@pytest.fixture
def signin(lwa_emulator: LWAEmulator) -> LWAEmulator:
    """The clean emulator with :data:`REDIRECT` registered as a return URL."""
    lwa_emulator.add_redirect_uri(REDIRECT)
    return lwa_emulator
