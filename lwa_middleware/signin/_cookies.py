"""Cookies and return paths: building, reading and checking them.

Rules (SECURITY.md, "Sign-in sessions"): ``HttpOnly``, ``SameSite=Lax``,
``Path=/``, no ``Domain``, ``Secure`` unless the app is served over plain
http on loopback, and then the ``__Host-`` prefix (which browsers only
accept on such cookies), so a sibling subdomain cannot plant or shadow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .._engine._login_redirect import safe_next

__all__ = ["CookieJar", "read_cookie", "safe_next"]

#: What ``secrets.token_urlsafe(32)`` gives: 43 URL-safe characters.
_ID = re.compile(r"[A-Za-z0-9_-]{43}")


class CookieJar:
    """The two cookies of the sign-in component, for one app origin.

    :param secure: whether to mark them ``Secure`` (and so ``__Host-``).
    :param base: the cookie name without prefix; ``{base}`` is the session,
        ``{base}_login`` the pending login.
    """

    def __init__(self, secure: bool, base: str = "lwa_session") -> None:
        prefix = "__Host-" if secure else ""
        self.secure = secure
        self.session = prefix + base
        self.login = prefix + base + "_login"

    def __repr__(self) -> str:
        return f"CookieJar(session={self.session!r}, secure={self.secure})"

    def set(self, name: str, value: str, max_age: int) -> str:
        """A ``Set-Cookie`` value."""
        parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clear(self, name: str) -> str:
        return self.set(name, "", 0)


def read_cookie(headers: Iterable[str], name: str) -> str | None:
    """The value of cookie ``name`` if it is shaped like one of our ids.

    :param headers: the request's ``Cookie`` header values.
    Anything else (absent, malformed, too long) is ``None``: never an error,
    a cookie the app did not set must not break a request.
    """
    for header in headers:
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                value = value.strip().strip('"')
                if _ID.fullmatch(value):
                    return value
    return None


def cookie_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The ``Cookie`` values among ASGI-style ``(name, value)`` header pairs."""
    return [value.decode("latin-1") for name, value in headers if name == b"cookie"]
