"""Origins compared as origins (RFC 6454): scheme, lower-cased host, port
left out when it is the scheme's default.

``https://App.example.com:443/callback`` (a configured redirect URI) and a
browser's ``Origin: https://app.example.com`` are the same origin; compared
as strings they were not, and every signed-in ``POST`` and logout was
refused. Light on imports: the gate uses it for WebSocket handshakes.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

import idna

__all__ = ["canonical_origin", "origin_matches", "request_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@functools.lru_cache(maxsize=256)
def canonical_origin(url: str, *, bare: bool = False) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-cased, without a default
    port; ``None`` when it has no such origin (``null``, no host, a bad port).

    :param bare: ``url`` must be an origin and nothing more (an ``Origin``
        header: no path, query, fragment or credentials).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port, an unclosed "[", ...
        return None
    host = parts.hostname
    if not parts.scheme or not host or "@" in parts.netloc:
        return None
    if bare and (parts.path or parts.query or parts.fragment or "?" in url or "#" in url):
        return None
    host = _ascii_host(host)
    if host is None:
        return None
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def _ascii_host(host: str) -> str | None:
    """``host`` as an origin spells it (``None``: no valid name)."""
    if not host.isascii():
        # As browsers do (WHATWG URL "domain to ASCII": UTS #46, non-transitional),
        # not Python's "idna" codec (IDNA 2003), which maps faß.example to
        # fass.example: another name, anyone's to register.
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:  # idna.IDNAError is one
            return None
    if ":" in host:  # IPv6: urlsplit dropped the brackets
        return f"[{host}]"
    return host


def request_origin(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
    """``(present, canonical origin)`` of the request's ``Origin`` header.

    ``Origin: null`` (an opaque origin, or one the browser withheld),
    several ``Origin`` headers, or anything malformed give ``(True, None)``:
    present, and no origin.
    """
    values = [value for name, value in headers if name == b"origin"]
    if not values:
        return False, None
    if len(values) != 1:
        return True, None
    try:
        text = values[0].decode("ascii")
    except UnicodeDecodeError:
        return True, None
    if not text.isprintable() or text.strip() != text:
        return True, None
    return True, canonical_origin(text, bare=True)


def origin_matches(
    headers: Iterable[tuple[bytes, bytes]], origin: str, *, require_origin: bool = False
) -> bool:
    """Whether the request comes from ``origin`` (the app's).

    A real ``Origin`` decides: the app's, compared as origins, or no;
    malformed, no. ``Origin: null`` alone is a no; but browsers also send it
    on a same-origin form ``POST`` from a page with ``Referrer-Policy:
    no-referrer`` (Fetch standard, "append a request Origin header"), so,
    as without ``Origin``, ``Sec-Fetch-Site: same-origin`` (which they send
    truthfully, and which no other site can make them send) lets it through.
    ``require_origin`` (WebSocket handshakes, on which browsers always send
    the real origin): no such fallback.
    """
    headers = list(headers)
    present, theirs = request_origin(headers)
    withheld = [value for name, value in headers if name == b"origin"] == [b"null"]
    if require_origin or (present and not withheld):
        ours = canonical_origin(origin)
        return (
            theirs is not None
            and ours is not None
            and hmac.compare_digest(theirs.encode(), ours.encode())
        )
    sites = [value for name, value in headers if name == b"sec-fetch-site"]
    return sites == [b"same-origin"]
