"""A rewriting proxy on loopback, in front of the LWA emulator.

For answers in shapes the emulator does not (or no longer) produce: the
proxy forwards every request to the emulator and lets a test rewrite the
request headers on the way in and the answer on the way out. Everything
else is the emulator's real answer::

    with RewritingProxy(lwa) as proxy:
        proxy.rewrite_answer = legacy_401
        mw = LWAMiddleware(app, client_id=lwa.client_id, api_base_url=proxy.base_url)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx2

from lwa_middleware.testing import LWAEmulator

__all__ = ["Answer", "RewritingProxy", "dead_profile_token", "json_answer"]

#: (status, headers, body) of one answer, as the proxy sends it.
Answer = tuple[int, dict[str, str], bytes]

#: Answer headers passed through (hop-by-hop and length headers are not).
_KEPT = ("content-type", "content-language", "x-amzn-requestid", "retry-after", "www-authenticate")


class RewritingProxy:
    """Forwards to ``lwa``; ``rewrite_request`` / ``rewrite_answer`` bend the traffic.

    :ivar rewrite_request: ``(path, headers) -> headers`` for each request.
    :ivar rewrite_answer: ``(path, answer) -> answer`` for each answer.
    """

    def __init__(self, lwa: LWAEmulator) -> None:
        self.lwa = lwa
        self.rewrite_request: Callable[[str, dict[str, str]], dict[str, str]] | None = None
        self.rewrite_answer: Callable[[str, Answer], Answer] | None = None
        self._client = httpx2.Client(timeout=30.0, trust_env=False)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._client.close()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if self.rewrite_request is not None:
            headers = self.rewrite_request(path, headers)
        answer = self._client.request(
            method, self.lwa.base_url + path, headers=headers, content=body
        )
        kept = {name: answer.headers[name] for name in _KEPT if name in answer.headers}
        result: Answer = (answer.status_code, kept, answer.content)
        if self.rewrite_answer is not None:
            result = self.rewrite_answer(path, result)
        return result


def _handler(proxy: RewritingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # request lines may carry tokens

        def do_GET(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {
                name.lower(): value
                for name, value in self.headers.items()
                if name.lower() not in ("host", "content-length", "connection")
            }
            status, answer_headers, content = proxy.forward(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(content)

        do_POST = do_GET

    return Handler


def json_answer(answer: Answer) -> dict[str, Any]:
    data = json.loads(answer[2])
    assert isinstance(data, dict)
    return data


def dead_profile_token(path: str, headers: dict[str, str]) -> dict[str, str]:
    """A profile call's token replaced by one the emulator never issued: the
    token "dies" between tokeninfo (which saw it live) and profile, and the
    emulator answers profile with its own invalid-token error."""
    if path.startswith("/user/profile"):
        headers = {**headers, "authorization": "Bearer Atza|" + "d" * 400}
    return headers
