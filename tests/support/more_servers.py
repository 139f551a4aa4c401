"""Servers run as child processes, as users run them, plus cheroot in a thread.

Every server serves :mod:`support.server_apps` (``:asgi`` or ``:wsgi``),
imported by module path, with ``LWA_CLIENT_ID`` and ``LWA_API_BASE_URL``
pointing it at the test's emulator. Each context manager yields the base URL::

    with serve_process("granian-asgi", lwa) as url: ...
    with serve_cheroot(wsgi_app) as url: ...

Children are started with ``sys.executable -m <server>`` (uWSGI, which has no
module entry point, from the ``uwsgi`` binary next to ``sys.executable``),
in a session of their own: teardown ends the whole process group (masters and
workers alike), with SIGTERM and then SIGKILL, and nothing outlives the test.
Where the server takes an inherited listening socket (daphne ``--fd``,
gunicorn ``fd://``) it gets one bound here, so no port is ever free for
someone else to take; granian and uWSGI bind a port that was free a moment
ago, and a child that dies before it answers is started again on a new one.
Ready means ``GET /public/ready`` answered 200 (a public route: no LWA call).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2

from .servers import START_TIMEOUT, listening_socket

__all__ = [
    "PROCESS_SERVERS",
    "ProcessServer",
    "raw_status",
    "serve_cheroot",
    "serve_process",
]

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
ASGI_APP = "support.server_apps:asgi"
WSGI_APP = "support.server_apps:wsgi"
THREADS = "16"


def _tool(name: str) -> str:
    """A console script installed next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


def _gunicorn(app: str, *worker: str) -> Callable[[str], list[str]]:
    def argv(bind: str) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", "1", *worker,
            "--log-level", "warning", "--no-control-socket", "--graceful-timeout", "2", app,
        ]  # fmt: skip

    return argv


def _granian(interface: str) -> Callable[[str], list[str]]:
    app = WSGI_APP if interface == "wsgi" else ASGI_APP
    threads = ["--blocking-threads", THREADS] if interface == "wsgi" else []

    def argv(port: str) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", interface, "--host", "127.0.0.1",
            "--port", port, "--workers", "1", *threads, "--log-level", "warning", app,
        ]  # fmt: skip

    return argv


def _daphne(fd: str) -> list[str]:
    return [sys.executable, "-m", "daphne", "--fd", fd, "-v", "0", ASGI_APP]


def _uwsgi(port: str) -> list[str]:
    # --http11-socket: keep-alive (--http-socket answers HTTP/1.1, then closes
    # the connection unannounced). No --lazy-apps, on purpose: the master loads
    # the app and forks the worker, without Python's at-fork hooks.
    return [
        _tool("uwsgi"), "--http11-socket", f"127.0.0.1:{port}", "--module", WSGI_APP,
        "--master", "--processes", "1", "--threads", THREADS, "--enable-threads",
        "--single-interpreter", "--need-app", "--die-on-term", "--disable-logging",
        "--worker-reload-mercy", "2",
    ]  # fmt: skip


@dataclass(frozen=True)
class ProcessServer:
    """How to start one server: its module (for the skip), interface, command line.

    ``argv`` gets ``fd://N`` / ``N`` (an inherited socket) when ``takes_fd``,
    else a port number.
    """

    package: str
    interface: str  # "asgi" or "wsgi"
    argv: Callable[[str], list[str]]
    takes_fd: bool = False
    websocket: bool = False  # the test app's WebSocket routes are served

    def missing(self) -> str | None:
        """Why this server cannot run here, or ``None``."""
        if self.package == "uwsgi":  # a binary: its ``uwsgi`` module lives only inside it
            if not Path(_tool("uwsgi")).exists():
                return (
                    "uWSGI is not installed next to sys.executable "
                    "(scripts/test builds it: pip install --no-cache-dir uwsgi)"
                )
        elif importlib.util.find_spec(self.package) is None:
            return f"the {self.package} package is not installed"
        return None


PROCESS_SERVERS: dict[str, ProcessServer] = {
    "granian-asgi": ProcessServer("granian", "asgi", _granian("asgi"), websocket=True),
    "granian-wsgi": ProcessServer("granian", "wsgi", _granian("wsgi")),
    "daphne": ProcessServer("daphne", "asgi", _daphne, takes_fd=True, websocket=True),
    "gunicorn-sync": ProcessServer("gunicorn", "wsgi", _gunicorn(WSGI_APP), takes_fd=True),
    "gunicorn-gthread": ProcessServer(
        "gunicorn", "wsgi", _gunicorn(WSGI_APP, "-k", "gthread", "--threads", THREADS), True
    ),
    # gunicorn's own asyncio ASGI worker (gunicorn >= 24), WebSockets included.
    "gunicorn-asgi": ProcessServer(
        "gunicorn", "asgi", _gunicorn(ASGI_APP, "-k", "asgi"), takes_fd=True, websocket=True
    ),
    "gunicorn-uvicorn": ProcessServer(
        "uvicorn_worker", "asgi", _gunicorn(ASGI_APP, "-k", "uvicorn_worker.UvicornWorker"), True
    ),
    "uwsgi": ProcessServer("uwsgi", "wsgi", _uwsgi),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the child's whole process group: SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; workers it left behind go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def _ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Poll ``/public/ready`` until 200; ``False`` if the child exited first."""
    with httpx2.Client(base_url=url, timeout=2, trust_env=False) as client:
        while proc.poll() is None:
            try:
                if client.get("/public/ready").status_code == 200:
                    return True
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.args[:4]} did not answer within {START_TIMEOUT} s")
            time.sleep(0.05)  # polling a child's readiness, not waiting for a result
    return False


def _child_env(client_id: str, api_base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")) if p
    )
    env["LWA_CLIENT_ID"] = client_id
    env["LWA_API_BASE_URL"] = api_base_url
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("LWA_REDIS_URL", "LWA_REGION", "LWA_CACHE_TTL", "LWA_CACHE_MAXSIZE"):
        env.pop(name, None)  # the child's middleware is configured here, not by the caller
    return env


@contextlib.contextmanager
def serve_process(name: str, lwa: Any, attempts: int = 3) -> Iterator[str]:
    """Run server ``name`` (a key of :data:`PROCESS_SERVERS`) against emulator ``lwa``."""
    spec = PROCESS_SERVERS[name]
    env = _child_env(lwa.client_id, lwa.base_url)
    deadline = time.monotonic() + START_TIMEOUT
    with tempfile.TemporaryFile() as log:
        for _attempt in range(attempts):
            log.seek(0)
            log.truncate()
            sock = listening_socket() if spec.takes_fd else None
            if sock is not None:
                fd, port = sock.fileno(), sock.getsockname()[1]
                where = f"fd://{fd}" if spec.package in ("gunicorn", "uvicorn_worker") else str(fd)
                pass_fds: tuple[int, ...] = (fd,)
            else:
                port = _free_port()
                where, pass_fds = str(port), ()
            proc = subprocess.Popen(
                spec.argv(where),
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,
            )
            if sock is not None:
                sock.close()  # the child holds its own copy
            url = f"http://127.0.0.1:{port}"
            try:
                up = _ready(url, proc, deadline)
            except RuntimeError as error:
                _stop(proc)
                raise RuntimeError(f"{error}:\n{_tail(log)}") from None
            except BaseException:
                _stop(proc)
                raise
            if not up:
                if sock is None:  # a port lost to a parallel server: another one
                    continue
                break
            try:
                yield url
            finally:
                _stop(proc)
            return
        raise RuntimeError(f"{name} exited before it answered:\n{_tail(log)}")


@contextlib.contextmanager
def serve_cheroot(app: Callable[..., Any], *, threads: int = 8) -> Iterator[str]:
    """cheroot's WSGI server in a thread, bound to an ephemeral port before it starts."""
    from cheroot.wsgi import Server

    server = Server(("127.0.0.1", 0), app, numthreads=threads)
    server.prepare()  # binds and listens; bind_addr is now the real port
    url = f"http://127.0.0.1:{server.bind_addr[1]}"
    thread = threading.Thread(target=server.serve, name="cheroot-test", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.stop()
        thread.join(timeout=15)


def raw_status(url: str, head: bytes, timeout: float = 10.0) -> int | None:
    """Send one raw HTTP/1.1 request (``head``: its header lines, no blank line)
    and return the status the server answered, or ``None`` if it closed the
    connection without one. For headers no HTTP client would send."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(
            b"GET /me HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n"
            + head + b"\r\n\r\n"
        )  # fmt: skip
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in answer and (chunk := conn.recv(4096)):
                answer += chunk
    if not answer.startswith(b"HTTP/"):
        return None
    return int(answer.split(b" ", 2)[1])
