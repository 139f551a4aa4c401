#!/usr/bin/env python
"""Django's command-line utility for the LWA demo project.

``python examples/django_project/manage.py runserver`` serves on
127.0.0.1:$PORT (8000). Without ``LWA_API_BASE_URL`` it first starts the
bundled LWA emulator, exports its URL and client id (``LWA_API_BASE_URL``,
``LWA_CLIENT_ID``) so the autoreloaded server process uses the same one,
and prints a token and a curl line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _start_demo_lwa(argv: list[str]) -> None:
    # _demo.py lives in examples/, one level up.
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    assert api_base_url is not None
    assert client_id is not None
    os.environ["LWA_API_BASE_URL"] = api_base_url
    os.environ["LWA_CLIENT_ID"] = client_id
    address = next((a for a in argv[2:] if not a.startswith("-")), None)
    if address is None:
        address = f"{HOST}:{port()}"
        argv.append(address)
    announce(emulator, f"http://{address}/shipping")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lwa_demo.settings")
    from django.core.management import execute_from_command_line

    if sys.argv[1:2] == ["runserver"] and not os.environ.get("LWA_API_BASE_URL"):
        # sys.argv itself: the autoreloader restarts the server with it.
        _start_demo_lwa(sys.argv)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
