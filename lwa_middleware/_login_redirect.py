"""The ``login_redirect`` option: a browser's page request without a token goes
to the sign-in page, with ``?next=`` back to it, instead of a bare 401.

Only a request that is plainly a page load is redirected: ``GET``/``HEAD``,
``Accept`` naming ``text/html``, refused for *no* token (:class:`MissingToken`,
which is also what a session cookie whose session ended gives). An API call
(``Accept: application/json``, a Bearer token, an invalid token) keeps its
401 and challenge: a script must not get an HTML page instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from .errors import AuthError, MissingToken

__all__ = ["login_location"]


def login_location(
    login_path: str | None,
    error: AuthError,
    method: str,
    headers: Iterable[tuple[bytes, bytes]],
    path: str,
    query: str,
) -> str | None:
    """The ``Location`` to send instead of ``error``'s 401, or ``None``."""
    if login_path is None or type(error) is not MissingToken or method not in ("GET", "HEAD"):
        return None
    accept = b",".join(value for name, value in headers if name == b"accept")
    if b"text/html" not in accept.lower():
        return None
    here = f"{path}?{query}" if query else path
    # /login checks next= again (same-origin paths only), so this only encodes.
    return f"{login_path}?next={quote(here, safe='/')}"


def redirect_headers(location: str) -> list[tuple[bytes, bytes]]:
    """The headers of the 303: never cached, it depends on the missing credential."""
    return [
        (b"location", location.encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"vary", b"Accept, Cookie"),
        (b"content-length", b"0"),
    ]
