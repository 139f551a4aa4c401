"""A bare PEP 3333 app behind LWAWSGIMiddleware, served by ``wsgiref``.

Run it: ``python examples/wsgi_app.py``. Without ``LWA_API_BASE_URL`` it
starts the bundled LWA emulator and prints a token. ``wsgiref`` is for
demos; in production use gunicorn, uWSGI or waitress with the same app.

- ``GET /health``: public.
- ``GET /``: optional.
- ``GET /shipping``: needs ``postal_code`` (a route policy).
- anything else: needs a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lwa_middleware import LWAWSGIMiddleware, get_identity


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    identity = get_identity(environ)
    path = environ.get("PATH_INFO") or "/"
    if path == "/health":
        payload: dict[str, Any] = {"status": "ok"}
    elif path == "/":
        payload = {"hello": identity.display_name if identity else "anonymous"}
    elif path == "/shipping" and identity is not None:
        payload = {"user_id": identity.user_id, "postal_code": identity.postal_code}
    else:
        payload = {"identity": identity.to_dict() if identity else None}
    body = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> LWAWSGIMiddleware:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``."""
    return LWAWSGIMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        routes={"/health": "public", "/": "optional", "/shipping": ["postal_code"]},
    )


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref`` serving each request in a thread (concurrent lookups coalesce)."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # The default access log prints the request line, which may carry
        # ?access_token=...; a real server should redact it.
        pass


def make_wsgi_server(wsgi_app: Any, host: str, port: int) -> WSGIServer:
    """A threaded ``wsgiref`` server for ``wsgi_app`` (port ``0``: any free port)."""
    return make_server(
        host, port, wsgi_app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )


def main() -> None:
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    server = make_wsgi_server(create_app(api_base_url, client_id), HOST, port())
    announce(emulator, f"http://{HOST}:{port()}/shipping")
    server.serve_forever()


if __name__ == "__main__":
    main()
