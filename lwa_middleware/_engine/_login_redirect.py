"""The ``login_redirect`` option: a browser's page request without a token goes
to the sign-in page, with ``?next=`` back to it, instead of a bare 401.

Only a request that is plainly a page load is redirected: ``GET``/``HEAD``,
``Accept`` naming ``text/html``, refused for *no* token (:class:`MissingToken`,
which is also what a session cookie whose session ended gives). An API call
(``Accept: application/json``, a Bearer token, an invalid token) keeps its
401 and challenge: a script must not get an HTML page instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from .errors import AuthError, MissingToken

__all__ = ["login_location", "safe_next"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_MAX_NEXT = 2048
#: Every printable ASCII character: ``quote`` leaves them as they are (and
#: ``safe_next`` judges them), encoding only the rest.
_ASCII = "".join(map(chr, range(0x21, 0x7F)))


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


def safe_next(value: object, default: str) -> str:
    """``value`` if it is a path on this origin, else ``default``; always ASCII.

    Refused: anything not starting with one ``/`` (``//evil``, ``/\\evil``,
    ``https://…``, ``javascript:``), backslashes anywhere (browsers read them
    as slashes), control characters and whitespace, anything a URL parser
    sees a scheme or host in, and anything over 2048 characters once encoded.
    Other non-ASCII characters are percent-encoded (UTF-8), as a browser
    would: a ``Location`` header carries only ASCII, so a raw ``/café``
    would make the redirect fail after the sign-in.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_NEXT:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        return default
    if not value.isascii():
        try:
            value = quote(value, safe=_ASCII)
        except UnicodeEncodeError:  # lone surrogates: no UTF-8 for them
            return default
        if len(value) > _MAX_NEXT:
            return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
