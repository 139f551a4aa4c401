"""Test helpers for code protected by Login with Amazon.

:class:`LWAEmulator` is a local HTTP server that answers like Amazon's LWA
API (tokeninfo, profile, authorize and token endpoints) and can be told to
fail in every way a remote service fails.  The pytest plugin in
:mod:`lwa_middleware.testing.pytest_plugin` provides it as the
``lwa_emulator`` fixture.

Example::

    import httpx2
    from lwa_middleware.testing import Fault, LWAEmulator

    with LWAEmulator() as lwa:
        token = lwa.issue_token(scopes=["profile"], name="Ada Lovelace")
        profile = httpx2.get(
            lwa.profile_url, headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert profile["name"] == "Ada Lovelace"

        lwa.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", times=1)
        assert httpx2.get(
            lwa.tokeninfo_url, headers={"x-amz-access-token": token}
        ).status_code == 503
"""

from typing import TYPE_CHECKING

from lwa_middleware._deprecated import moved
from lwa_middleware.testing._emulator import (
    BUILTIN_CUSTOMERS,
    DEFAULT_REDIRECT_URIS,
    Customer,
    Fault,
    LWAEmulator,
)

__all__ = [
    "BUILTIN_CUSTOMERS",
    "DEFAULT_REDIRECT_URIS",
    "Customer",
    "Fault",
    "LWAEmulator",
]

# ENDPOINTS, RecordedRequest: no longer public (issue 19), still importable with a warning.
if not TYPE_CHECKING:  # a type checker keeps refusing names that are not public
    __getattr__ = moved(__name__, "lwa_middleware.testing._emulator")
