"""Hostile review of the aiohttp transport and the engine move (issues 19, 23, 24):
each test is an attack or a promise that failed on main before its fix."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
from werkzeug.test import Client

from lwa_middleware import LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

_CREDENTIALS = "proxyuser:proxy-s3cret"
_HOP = ("host", "content-length", "connection", "proxy-authorization")


@contextlib.contextmanager
def _authenticating_proxy() -> Iterator[tuple[str, list[str | None]]]:
    """A forward HTTP proxy on loopback that asks for Basic credentials (407
    without them), as corporate egress proxies do; yields its address and the
    Proxy-Authorization headers it was sent."""
    seen: list[str | None] = []
    expected = "Basic " + base64.b64encode(_CREDENTIALS.encode()).decode()
    client = httpx2.Client(timeout=30.0, trust_env=False)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            seen.append(self.headers.get("proxy-authorization"))
            if seen[-1] != expected:
                self.send_response(407)
                self.send_header("proxy-authenticate", 'Basic realm="egress"')
                self.send_header("content-length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("content-length") or 0)
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _HOP
            }
            answer = client.request(
                self.command, self.path, headers=headers, content=self.rfile.read(length)
            )
            self.send_response(answer.status_code)
            self.send_header("content-type", answer.headers.get("content-type", "text/plain"))
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def test_the_credentials_of_an_environment_proxy_are_sent(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx2 (before issue 23) sent the user:password of HTTP(S)_PROXY as
    # Proxy-Authorization; aiohttp's env lookup hands them back apart, and
    # main dropped them: every lookup behind such a proxy was a 407 -> 503.
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with _authenticating_proxy() as (address, seen):
        monkeypatch.setenv("http_proxy", f"http://{_CREDENTIALS}@{address}")
        mw = make_wsgi()
        try:
            status = Client(mw).get(
                "/me", headers={"Authorization": f"Bearer {lwa_emulator.issue_token()}"}
            ).status_code
        finally:
            mw.close()
    assert seen, "the lookup never reached the proxy"
    assert status == 200
