"""Plumbing shared by the examples (not something to copy into an app).

When ``LWA_API_BASE_URL`` is unset, :func:`lwa_upstream` starts the bundled
LWA emulator on loopback, so an example runs with no Amazon account, and
:func:`announce` prints a freshly minted token and a curl line to try.
With ``LWA_API_BASE_URL`` (and ``LWA_CLIENT_ID``) set, the example talks to
that LWA instead and prints no token.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from lwa_middleware.testing import LWAEmulator

#: The client id the demo emulator issues tokens for.
DEMO_CLIENT_ID = "amzn1.application-oa2-client.example"
HOST = "127.0.0.1"


def port() -> int:
    """Where the example listens: ``$PORT``, default 8000."""
    return int(os.environ.get("PORT", "8000"))


def lwa_upstream() -> tuple[str | None, str | None, LWAEmulator | None]:
    """``(api_base_url, client_id, emulator)`` for the example to use.

    ``api_base_url``/``client_id`` are ``None`` when they come from the
    environment (the middleware reads ``LWA_API_BASE_URL`` and
    ``LWA_CLIENT_ID`` itself).
    """
    if os.environ.get("LWA_API_BASE_URL"):
        return None, None, None
    client_id = os.environ.get("LWA_CLIENT_ID") or DEMO_CLIENT_ID
    emulator = LWAEmulator(client_id=client_id).start()
    return emulator.base_url, client_id, emulator


def announce(
    emulator: LWAEmulator | None,
    url: str,
    scopes: Iterable[str] = ("profile", "postal_code"),
) -> None:
    """Print where the app listens and, with the emulator, a token and a curl line."""
    print(f"Serving on http://{HOST}:{port()}", flush=True)
    if emulator is None:
        print("LWA: " + os.environ.get("LWA_API_BASE_URL", ""), flush=True)
        return
    token = emulator.issue_token(
        scopes=list(scopes), name="Ada Lovelace", email="ada@example.com", postal_code="98109"
    )
    print(f"LWA emulator: {emulator.base_url} (client id {emulator.client_id})")
    print(f"token: {token}")
    print(f"curl -H 'Authorization: Bearer {token}' {url}", flush=True)
