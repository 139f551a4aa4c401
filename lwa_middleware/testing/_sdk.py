"""The stand-in for Amazon's JavaScript SDK, and the frame it talks through.

``GET /sdk/login1.js`` serves ``pages/login1.js``: ``amazon.Login`` with the
API of Amazon's "Login with Amazon SDK for JavaScript Reference Guide" (the
file's header says what is implemented and what is left out).  A page loads
it instead of ``https://assets.loginwithamazon.com/sdk/na/login1.js``.

``GET /sdk/relay?client_id=…&origin=…`` is the hidden frame through which
the SDK calls the token and profile endpoints.  Amazon documents no CORS on
its token endpoint, so the emulator's SDK does not use any: the frame runs
on the emulator's origin (same-origin requests) and answers
``postMessage`` calls from one page origin only, which must be an Allowed
Origin of the app (the origin of one of its return URLs).  Any other
origin gets an error page that posts nothing, and the page's CSP
(``frame-ancestors``) keeps anyone else from framing it.

``GET /sdk/popup?origin=…`` is where the SDK's popups end (``authorize``
with ``popup: true``, Amazon's default): ``/ap/oa`` accepts it as a return
URL for the app's own origins (see ``_authorize._is_sdk_popup_return``), and
the page posts the answer to its opener on that origin only, then closes.
"""

from __future__ import annotations

import html
import json
import secrets
from typing import Final

from lwa_middleware.testing._authorize import _error_page, _template
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _HTML_TYPE,
    PROFILE_PATH,
    TOKEN_PATH,
    _first,
    _Response,
)

_PAGES_SCRIPT: Final = "login1.js"
_SCRIPT_TYPE: Final = "text/javascript;charset=UTF-8"


def _sdk_script() -> _Response:
    body = _template(_PAGES_SCRIPT).template + "\n"
    headers = [
        # Short, like a CDN's: a test run never sees a stale copy for long.
        ("Cache-Control", "max-age=60"),
        ("X-Content-Type-Options", "nosniff"),
        # Loaded by pages of other origins, as Amazon's CDN copy is.
        ("Cross-Origin-Resource-Policy", "cross-origin"),
    ]
    return _Response(200, body.encode(), _SCRIPT_TYPE, headers)


def _sdk_relay(state: _State, query: list[tuple[str, str]]) -> _Response:
    client_id = _first(query, "client_id") or ""
    origin = _first(query, "origin") or ""
    with state.lock:
        client = state.clients.get(client_id)
        allowed = client is not None and bool(origin) and client.allows_origin(origin)
    if not allowed:
        return _error_page(
            "This page's origin is not an Allowed Origin of that app (the origin of one of its "
            "registered return URLs), or the client_id is unknown."
        )
    return _scripted_page("relay.html", origin, f"frame-ancestors {origin}")


def _sdk_popup(state: _State, query: list[tuple[str, str]]) -> _Response:
    """Where the SDK's popups end: the answer goes to the opener, on ``origin`` only.

    ``/ap/oa`` redirects here only for an origin of the app it signed in to;
    this page checks the origin again (any registered app's) before naming
    it as the only receiver of ``postMessage``.
    """
    origin = _first(query, "origin") or ""
    with state.lock:
        allowed = bool(origin) and any(c.allows_origin(origin) for c in state.clients.values())
    if not allowed:
        return _error_page("This popup was not opened for an Allowed Origin of a registered app.")
    return _scripted_page("popup.html", origin, "frame-ancestors 'none'")


def _scripted_page(name: str, origin: str, framing: str) -> _Response:
    """A page of one nonce'd script that talks to ``origin`` (already vetted) only."""
    nonce = secrets.token_urlsafe(16)
    # JSON is a JavaScript literal; "<" escaped so it cannot close the script.
    app_origin = json.dumps(origin).replace("<", "\\u003c")
    document = _template(name).substitute(
        nonce=html.escape(nonce),
        app_origin=app_origin,
        token_path=TOKEN_PATH,
        profile_path=PROFILE_PATH,
    )
    headers = [
        ("Cache-Control", "no-store"),
        # The origin was matched against registered return URLs, which hold
        # no spaces or quotes, so it is safe in the header.
        (
            "Content-Security-Policy",
            f"default-src 'none'; script-src 'nonce-{nonce}'; connect-src 'self'; {framing}",
        ),
        ("Referrer-Policy", "no-referrer"),
    ]
    return _Response(200, f"{document}\n".encode(), _HTML_TYPE, headers)
