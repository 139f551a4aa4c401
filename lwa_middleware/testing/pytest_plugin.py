"""Pytest fixtures providing an :class:`~lwa_middleware.testing.LWAEmulator`.

The package registers this module as a ``pytest11`` entry point, so the
fixtures are available as soon as ``lwa-middleware`` is installed.  Without
the entry point, load it with ``-p lwa_middleware.testing.pytest_plugin``.

``lwa_emulator_server``
    Session-scoped: one emulator started once for the whole run.
``lwa_emulator``
    Function-scoped: the same emulator, reset before and after each test
    (no tokens, faults or latency; counters and request log at zero).

For sign-in tests the emulator carries its app's registration:
``lwa_emulator.client_id``, ``lwa_emulator.client_secret`` (random per
session) and ``lwa_emulator.redirect_uris``; register your app's callback
with ``lwa_emulator.add_redirect_uri(url)`` (the reset between tests
forgets it again), and use ``lwa_emulator.authorize_url`` and
``lwa_emulator.token_url``.  ``lwa_emulator.consent(url)`` and
``lwa_emulator.deny(url)`` play the customer on the consent page of the URL
your app redirected to, and return where the browser is sent back; pages
load ``lwa_emulator.sdk_url`` in place of Amazon's JavaScript SDK.

Example::

    def test_needs_a_profile(lwa_emulator):
        token = lwa_emulator.issue_token(scopes=["profile"])
        app = make_app(api_base_url=lwa_emulator.base_url)
        ...
        assert lwa_emulator.calls["tokeninfo"] == 1
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lwa_middleware.testing._emulator import LWAEmulator

__all__ = ["lwa_emulator", "lwa_emulator_server"]


@pytest.fixture(scope="session")
def lwa_emulator_server() -> Iterator[LWAEmulator]:
    """One :class:`LWAEmulator` for the whole session, stopped at the end.

    Prefer :func:`lwa_emulator`, which also resets it between tests.
    """
    with LWAEmulator() as emulator:
        yield emulator


@pytest.fixture
def lwa_emulator(lwa_emulator_server: LWAEmulator) -> Iterator[LWAEmulator]:
    """The session emulator, clean: reset before the test and after it.

    Resetting afterwards too releases anything a test left hanging, so a
    forgotten :attr:`~lwa_middleware.testing.Fault.HANG` cannot stall the
    next test's teardown.  If a test stopped the server, it is started again
    (on the same port).
    """
    lwa_emulator_server.start()
    lwa_emulator_server.reset()
    yield lwa_emulator_server
    lwa_emulator_server.reset()
