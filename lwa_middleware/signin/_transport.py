"""How :class:`~.core.SignIn` reaches LWA: on the middleware's own HTTP driver.

One HTTP stack per process kind (issue 19): the token endpoint's POSTs (the
code exchange, a refresh) and the lookup of a new access token go out on the
drivers of the middleware the ``SignIn`` is wired into, so they share its
pool, TLS settings (``verify``, ``http_client``), deadlines and body cap, and
are closed with it (``close()``, lifespan shutdown).

Under ASGI the glue runs a step in an anyio worker thread (the session store
may block); its LWA calls go back to the event loop, on the async driver, so
no blocking client is ever built. Under WSGI they use the blocking driver.
An ``http=`` client given to ``SignIn`` still sends the token POSTs itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import anyio.from_thread
import httpx2

from .._engine._http import fetch_blocking
from .._engine.errors import BreakerOpen
from .._engine.flow import Outcome, UpstreamRequest
from .._engine.identity import Identity
from .._engine.routes import Access, Policy

if TYPE_CHECKING:
    from .._engine.resolver import Resolver

__all__ = ["identity_of", "revoke", "send_token", "token_request"]

_REQUIRED = Policy(Access.REQUIRED)
_HEADERS: Mapping[str, str] = {
    "accept": "application/json",
    "content-type": "application/x-www-form-urlencoded",
}


def token_request(url: str, form: Mapping[str, str]) -> UpstreamRequest:
    """A POST of ``form`` to the token endpoint: secrets in the body, never the URL."""
    return UpstreamRequest("token", url, _HEADERS, "POST", urlencode(form).encode())


def _behind_a_loop() -> bool:
    """Whether this thread is an anyio worker thread (the ASGI glue's), whose
    event loop can run the LWA call on the middleware's async driver."""
    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:  # not an anyio worker thread
        return False
    return True


def send_token(
    client: httpx2.Client | None, resolver: Resolver, request: UpstreamRequest, within: float
) -> Outcome:
    """``request``'s answer, or why there is none: on ``client`` if the
    application gave one, else on ``resolver``'s driver (see the module),
    ``within`` seconds (SignIn's ``timeout``, not the middleware's: its refresh lease
    and waiters are sized on it).

    :raises BreakerOpen: the middleware's circuit breaker is open. LWA failed
        its lookups repeatedly; a token call now would only hold this thread
        for ``within`` and end in a 503 anyway (issue 18 review: WSGI threads
        piled up behind refreshes during an outage)."""
    wait = resolver.breaker.refusing()
    if wait is not None:
        raise BreakerOpen("LWA is failing; not asking its token endpoint for a moment.", wait)
    if client is not None:
        # No Cookie header, SignIn's deadline (not the client's own), the body cap.
        cap = resolver.settings.max_response_bytes
        return fetch_blocking(client, request, time.monotonic() + within, cap)
    if _behind_a_loop():
        return anyio.from_thread.run(resolver.send_async, request, within)
    return resolver.send_sync(request, within)


def identity_of(resolver: Resolver, token: str) -> Identity:
    """The identity of a new access token, on the middleware's driver."""
    if _behind_a_loop():
        return anyio.from_thread.run(resolver.resolve_async, token, _REQUIRED).identity
    return resolver.resolve_sync(token, _REQUIRED).identity


def revoke(resolver: Resolver, token: str) -> None:
    """``resolver.revoke(token)``; from an anyio worker thread, on its loop."""
    if _behind_a_loop():
        anyio.from_thread.run(resolver.arevoke, token)
    else:
        resolver.revoke(token)
