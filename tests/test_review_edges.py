"""A hostile review of the edges after the redesign (issues 18, 20, 21, 22):
each test here is an attack that worked on ``main`` before its fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from support.lwa_proxy import Answer, RewritingProxy
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator


class _CookieWatch:
    """An LWA that sets a cookie on every answer, and the cookies it is sent back."""

    def __init__(self, proxy: RewritingProxy) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()
        proxy.rewrite_request = self._request
        proxy.rewrite_answer = self._answer

    def _request(self, path: str, headers: dict[str, str]) -> dict[str, str]:
        if "cookie" in headers:
            with self._lock:
                self.sent.append(headers["cookie"])
        return headers

    @staticmethod
    def _answer(path: str, answer: Answer) -> Answer:
        status, headers, body = answer
        # A load balancer's or a session cookie of LWA's: bound to the customer asked about.
        return status, {**headers, "set-cookie": "amz-session=first-customer; Path=/"}, body


async def _asgi_status(mw: LWAMiddleware, token: str) -> int:
    statuses: list[int] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/me",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await mw(scope, receive, send)
    return statuses[0]


@pytest.mark.parametrize("backend", ["asyncio", "trio", "wsgi"])
def test_a_cookie_lwa_sets_never_travels_with_another_customers_lookup(
    backend: str,
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    """The aiohttp transport keeps no cookie jar; the httpx2 clients (trio, and
    any fallback) kept one per client, so a ``Set-Cookie`` in the answer about
    one customer's token went back to LWA with the next customer's lookups."""
    ada, grace = (lwa_emulator.issue_token(customer=c) for c in BUILTIN_CUSTOMERS[:2])
    with RewritingProxy(lwa_emulator) as proxy:
        watch = _CookieWatch(proxy)
        if backend == "wsgi":
            wsgi = make_wsgi(api_base_url=proxy.base_url)
            try:
                for token in (ada, grace):
                    answer = Client(wsgi).get("/me", headers={"Authorization": f"Bearer {token}"})
                    assert answer.status_code == 200
            finally:
                wsgi.close()
        else:
            asgi = make_asgi(api_base_url=proxy.base_url)

            async def main() -> None:
                try:
                    assert [await _asgi_status(asgi, t) for t in (ada, grace)] == [200, 200]
                finally:
                    await asgi.aclose()

            anyio.run(main, backend=backend)
    assert lwa_emulator.calls["tokeninfo"] == 2
    assert watch.sent == []
