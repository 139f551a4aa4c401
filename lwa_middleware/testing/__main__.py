"""Run the LWA emulator from the command line, for demos and non-Python tests.

Usage::

    python -m lwa_middleware.testing --port 8765 --client-id amzn1.application-oa2-client.demo

Then mint a token with ``curl -X POST http://127.0.0.1:8765/_emulator/tokens
-d '{"scopes": ["profile"]}'`` or open ``/ap/oa?...`` in a browser.  Stop
with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from lwa_middleware.testing.emulator import LWAEmulator


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; prints the base URL (never a token)."""
    parser = argparse.ArgumentParser(
        prog="python -m lwa_middleware.testing",
        description="Serve a local Login with Amazon emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--client-id",
        default="amzn1.application-oa2-client.emulator",
        help="default aud of minted tokens",
    )
    args = parser.parse_args(argv)
    with LWAEmulator(client_id=args.client_id, host=args.host, port=args.port) as emulator:
        print(emulator.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
