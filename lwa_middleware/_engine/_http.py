"""What every HTTP stack of the lookups shares (httpx2 in :mod:`.upstream`,
aiohttp in :mod:`._aio`): the pool's shape, the user agent, the body cap and
its deadline, LWA's request id, and transport errors turned into fixed
phrases. Both import it; neither imports the other at module level.
"""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import httpx2

from .flow import Outcome, UpstreamFailure, UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from .config import Settings

USER_AGENT = "lwa-middleware (+https://pypi.org/project/lwa-middleware/)"

#: Connections per pooled client. The connection pool's bookkeeping grows with
#: the requests and connections it juggles (httpcore scans them all on every
#: request and release, asking each connection's stream whether it expired),
#: so one big pool under 100 lookups in flight spends more CPU on itself than
#: on HTTP; several small ones stay cheap. Measured over TLS with 50 clients
#: (bench_scale.py), CPU per cold lookup: 16 -> ~1.9-2.1 ms, 4 -> ~1.7 ms,
#: 2 -> ~1.65 ms; 4 keeps the client count (each sync Client costs ~1 ms to
#: build) at 50 for the default 100 lookups in flight.
SHARD_CONNECTIONS = 4


def no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing, for our own httpx2 clients, as the aiohttp
    transport has none: a cookie LWA sets in answer about one customer must
    not travel with the next customer's call (an application's client keeps
    its jar: see :func:`cookieless`)."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def cookieless(
    client: httpx2.Client | httpx2.AsyncClient, request: UpstreamRequest, timeout: float
) -> httpx2.Request:
    """``request`` built on an application's httpx2 client (``http_client``'s,
    ``SignIn(http=)``) with no ``Cookie`` header: its jar is left alone (the
    application may share the client with code that needs its cookies), but
    none of it, nor a cookie LWA set about another customer, goes to LWA."""
    built = client.build_request(
        request.method, request.url, headers=request.headers, content=request.body, timeout=timeout
    )
    built.headers.pop("cookie", None)
    return built


def pool_shape(settings: Settings) -> tuple[int, int]:
    """``(clients, connections each)``: room for every lookup in flight to send
    both its requests at once, in clients of at most :data:`SHARD_CONNECTIONS`.

    Every connection may stay alive (keep-alive = the pool's maximum), so a
    steady load opens each connection once instead of churning TLS handshakes.
    """
    total = settings.max_concurrent_lookups * 2
    clients = -(-total // SHARD_CONNECTIONS)
    return clients, -(-total // clients)

TIMED_OUT = UpstreamFailure("timed out", "timeout")


def certificate_failed(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a peer certificate that did not verify
    (untrusted CA, wrong host name, expired): httpx2 wraps the ``ssl`` error."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def failure(exc: Exception) -> UpstreamFailure:
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return TIMED_OUT
    if certificate_failed(exc):
        return UpstreamFailure("certificate verification failed", "certificate")
    if isinstance(exc, httpx2.ConnectError):
        return UpstreamFailure("connection failed", "connection")
    return UpstreamFailure("transport error: " + type(exc).__name__)


#: What a request id of LWA may look like (a UUID, as Amazon's examples show):
#: anything else is dropped, so an answer cannot put text of its choosing in logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class Headed(Protocol):
    """An HTTP answer of httpx2 or aiohttp: what is read of its headers."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def request_id(response: Headed) -> str | None:
    """LWA's ``x-amzn-RequestId`` of ``response``, or ``None`` if absent or oddly shaped."""
    value = response.headers.get("x-amzn-requestid")
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


class Body:
    """Accumulates a response body under a size cap and a deadline."""

    __slots__ = ("chunks", "deadline", "limit", "size")

    def __init__(self, response: Headed, limit: int, deadline: float) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.deadline = deadline
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge
        if time.monotonic() > self.deadline:
            raise TimeoutError
        self.chunks.append(chunk)

    def outcome(self, response: httpx2.Response) -> UpstreamResponse:
        return UpstreamResponse(
            response.status_code,
            b"".join(self.chunks),
            response.headers.get("retry-after"),
            request_id(response),
        )


class TooLarge(Exception):
    pass


TOO_LARGE = UpstreamFailure("response too large", "too_large")


def fetch_blocking(
    client: httpx2.Client, request: UpstreamRequest, deadline: float, cap: int
) -> Outcome:
    """``request``'s answer on a blocking httpx2 client (ours, or an
    application's: see :func:`cookieless`), its body capped at ``cap`` bytes
    and read by ``deadline``; or why there is none."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return TIMED_OUT
    try:
        sent = cookieless(client, request, remaining)
        response = client.send(sent, stream=True, follow_redirects=False)
        try:
            body = Body(response, cap, deadline)
            for chunk in response.iter_bytes():
                body.feed(chunk)
            return body.outcome(response)
        finally:
            response.close()
    except TooLarge:
        return TOO_LARGE
    except Exception as exc:  # an application's client may raise anything
        # (OpenTelemetry's httpx instrumentor on an httpx2 client: IndexError).
        # LWA was not reached: a transport failure named by type, not "unusable".
        return failure(exc)
