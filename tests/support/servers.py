"""One way to serve an app over loopback: each server in a thread, on a socket
bound (and listening) before the server starts, so there is no ``free_port()``
race and no start-up race: a connection made as soon as the URL is known
waits in the listen backlog.

Every function is a context manager yielding the base URL::

    with serve("uvicorn", asgi_app) as url: ...
    with serve_waitress(wsgi_app) as url: ...

ASGI: ``uvicorn``, ``hypercorn`` (asyncio worker), ``hypercorn-trio``.
WSGI: ``waitress``, ``werkzeug`` (threaded), ``wsgiref`` (a thread per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = [
    "ASGI_SERVERS",
    "WSGI_SERVERS",
    "closing_on_shutdown",
    "listening_socket",
    "serve",
    "serve_hypercorn",
    "serve_uvicorn",
    "serve_waitress",
    "serve_werkzeug",
    "serve_wsgiref",
]

#: Generous: a loaded 2-core machine can take seconds to start a thread's loop.
START_TIMEOUT = 30.0


def listening_socket() -> socket.socket:
    """A TCP socket bound to an ephemeral loopback port and already listening."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def closing_on_shutdown(app: Any) -> Any:
    """Answer lifespan messages, calling ``app.aclose()`` at shutdown, so the
    middleware's Redis and LWA connections close on the loop that owns them."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if hasattr(app, "aclose"):
                    await app.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


def _wait(started: Callable[[], bool], thread: threading.Thread, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not started():
        if not thread.is_alive():
            raise RuntimeError(f"{name} exited before it started")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start within {START_TIMEOUT} s")
        time.sleep(0.01)  # polling a thread's start-up flag, not waiting for a result


@contextlib.contextmanager
def serve_uvicorn(
    app: Any,
    *,
    lifespan: str = "off",
    root_path: str = "",
    ws: str = "websockets-sansio",
    log_level: str | None = "error",
    log_config: Any = None,
    close_on_shutdown: bool = False,
) -> Iterator[str]:
    """uvicorn in a thread. ``close_on_shutdown`` wraps the app in
    :func:`closing_on_shutdown` (and turns lifespan on)."""
    import uvicorn

    if close_on_shutdown:
        app, lifespan = closing_on_shutdown(app), "on"
    sock = listening_socket()
    # log_config=None: uvicorn must not reconfigure logging for the whole run;
    # its records propagate to the root logger, where caplog sees them.
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        root_path=root_path,
        ws=ws,
        log_level=log_level,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True
    )
    thread.start()
    try:
        _wait(lambda: server.started, thread, "uvicorn")
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def serve_hypercorn(app: Any, *, worker: str = "asyncio", root_path: str = "") -> Iterator[str]:
    """hypercorn in a thread, with its ``asyncio`` or ``trio`` worker."""
    import hypercorn

    sock = listening_socket()
    url = _url(sock)
    fd = sock.detach()  # hypercorn owns (and closes) the listening socket
    config = hypercorn.Config()
    config.bind = [f"fd://{fd}"]
    config.root_path = root_path
    config.loglevel = "ERROR"
    config.accesslog = None
    started = threading.Event()
    stop: dict[str, Callable[[], None]] = {}

    if worker == "asyncio":
        from hypercorn.asyncio import serve as asyncio_serve

        async def run_asyncio() -> None:
            loop, event = asyncio.get_running_loop(), asyncio.Event()
            stop["now"] = lambda: loop.call_soon_threadsafe(event.set)
            started.set()
            await asyncio_serve(app, config, shutdown_trigger=event.wait)

        def target() -> None:
            asyncio.run(run_asyncio())

    elif worker == "trio":
        import trio
        from hypercorn.trio import serve as trio_serve

        async def run_trio() -> None:
            token, event = trio.lowlevel.current_trio_token(), trio.Event()
            stop["now"] = lambda: trio.from_thread.run_sync(event.set, trio_token=token)
            started.set()
            await trio_serve(app, config, shutdown_trigger=event.wait)

        def target() -> None:
            trio.run(run_trio)

    else:
        raise ValueError(f"no hypercorn worker {worker!r}")
    thread = threading.Thread(target=target, name=f"hypercorn-{worker}-test", daemon=True)
    thread.start()
    try:
        _wait(started.is_set, thread, f"hypercorn ({worker})")
        # The socket listens already: requests queue until hypercorn accepts.
        yield url
    finally:
        if "now" in stop:
            with contextlib.suppress(RuntimeError):
                stop["now"]()
        thread.join(timeout=15)


@contextlib.contextmanager
def serve_waitress(app: Callable[..., Any], *, threads: int = 8, **options: Any) -> Iterator[str]:
    """waitress in a thread (``threads`` worker threads)."""
    from waitress.server import create_server

    sock = listening_socket()
    url = _url(sock)
    server = create_server(app, sockets=[sock], threads=threads, **options)
    stopping = threading.Event()

    def run() -> None:
        # waitress's own run() loops until its sockets close under it (a
        # select() on a closed fd): loop here, and close once it stopped.
        while not stopping.is_set():
            server.asyncore.loop(
                timeout=0.05, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1
            )

    thread = threading.Thread(target=run, name="waitress-test", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stopping.set()
        thread.join(timeout=15)
        server.close()
        sock.close()


@contextlib.contextmanager
def serve_werkzeug(app: Callable[..., Any]) -> Iterator[str]:
    """Werkzeug's threaded development server in a thread."""
    from werkzeug.serving import make_server

    sock = listening_socket()
    url = _url(sock)
    server = make_server("127.0.0.1", 0, app, threaded=True, fd=sock.fileno())
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=15)
        sock.close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 1024


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_wsgiref(app: Callable[..., Any]) -> Iterator[str]:
    """The standard library's ``wsgiref`` with a thread per request."""
    server = _ThreadingWSGIServer(
        ("127.0.0.1", 0), _QuietHandler, bind_and_activate=True
    )  # bound and listening from here on
    server.set_app(app)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=15)


ASGI_SERVERS: dict[str, Callable[..., contextlib.AbstractContextManager[str]]] = {
    "uvicorn": serve_uvicorn,
    "hypercorn": serve_hypercorn,
    "hypercorn-trio": lambda app, **kw: serve_hypercorn(app, worker="trio", **kw),
}
WSGI_SERVERS: dict[str, Callable[..., contextlib.AbstractContextManager[str]]] = {
    "waitress": serve_waitress,
    "werkzeug": serve_werkzeug,
    "wsgiref": serve_wsgiref,
}


def serve(kind: str, app: Any, **options: Any) -> contextlib.AbstractContextManager[str]:
    """Serve ``app`` with the server named ``kind`` (a key of the two tables)."""
    table = {**ASGI_SERVERS, **WSGI_SERVERS}
    return table[kind](app, **options)
