"""Headless Chromium for the browser tests: Playwright driving Debian's
``/usr/bin/chromium`` (``playwright install`` cannot download browsers here).

Without it a browser test is skipped, or fails when ``CI`` is set, so CI
cannot go green by silently not running it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "launch_chromium", "unavailable"]

CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium's connections are refused
#: by this machine's closed network, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (required when CI is set)")
    pytest.skip(why)


def launch_chromium() -> Iterator[Any]:
    """A launched browser, for a module-scoped fixture to ``yield from``."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install 'lwa-middleware[test]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
