"""Serving the demo with uvicorn, in the foreground (the CLI) or in a thread (tests).

uvicorn is imported lazily: it is an optional dependency (the ``demo`` extra),
and the rest of the package must import without it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["MissingUvicorn", "bind_socket", "make_server", "serve_in_thread", "url_for"]


class MissingUvicorn(RuntimeError):
    """uvicorn, needed to serve the demo, is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "the demo needs uvicorn; install it with: pip install 'lwa-middleware[demo]'"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``0``: a free port).

    Binding before uvicorn starts lets the caller know, and print, the real
    port of ``--port 0``; listening at once means a client that connects
    before the server loop runs waits in the backlog instead of being refused.

    :raises OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_for(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def make_server(app: Any, *, log_level: str = "warning") -> Any:
    """A ``uvicorn.Server`` for ``app`` with a short graceful shutdown.

    :raises MissingUvicorn: uvicorn is not installed.
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingUvicorn() from None
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        # Ctrl-C must not wait on a browser's idle keep-alive connection.
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout: float = 10.0,
    sock: socket.socket | None = None,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yield its base URL.

    The server is stopped, and the thread joined, when the block exits.

    :param app: an ASGI app, e.g. from :func:`~lwa_middleware.demo.build_demo_app`.
    :param host: the address to bind.
    :param port: the port to bind; ``0`` picks a free one.
    :param startup_timeout: seconds to wait for the server to accept requests.
    :param sock: a socket from :func:`bind_socket` to serve on instead of
        ``host``/``port``, for an app that must know its URL before it is
        served (the server-side demo's ``redirect_uri``); closed at the end.
    :raises MissingUvicorn: uvicorn is not installed.
    :raises RuntimeError: the server did not start in time.

    Example::

        with serve_in_thread(build_demo_app(lwa)) as url:
            assert httpx2.get(url + "/api/me").status_code == 401
    """
    server = make_server(app)
    sock = sock if sock is not None else bind_socket(host, port)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="lwa-demo-server", daemon=True
    )
    try:
        thread.start()
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.01)
        yield url_for(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()
