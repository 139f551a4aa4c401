"""The aiohttp transport (issue 23): which HTTP stack runs where, and the life of
the WSGI driver's I/O loop thread (started late, per process, closed with the driver)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx2
import pytest
from conftest import starlette_app, wsgi_echo
from support.private import Transport, _Seats, private_async_driver
from support.servers import serve_uvicorn
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

#: The WSGI driver's I/O thread.
IO_THREAD = "lwa-upstream"


def _io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == IO_THREAD]


def _wsgi_status(mw: LWAWSGIMiddleware, token: str) -> int:
    return Client(mw).get("/me", headers={"Authorization": f"Bearer {token}"}).status_code


async def _asgi_status(mw: LWAMiddleware, token: str) -> int:
    statuses: list[int] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    mw.app = app
    await mw(scope, receive, send)
    return statuses[0]


@pytest.mark.parametrize(("backend", "stack"), [("asyncio", Transport), ("trio", _Seats)])
def test_asyncio_calls_lwa_with_aiohttp_and_trio_with_httpx2(
    backend: str, stack: type, make_asgi: Callable[..., LWAMiddleware], lwa_emulator: LWAEmulator
) -> None:
    mw = make_asgi()

    async def main() -> None:
        try:
            assert await _asgi_status(mw, lwa_emulator.issue_token()) == 200
            driver = private_async_driver(mw)
            assert driver is not None
            assert isinstance(driver._seats, stack)
        finally:
            await mw.aclose()

    anyio.run(main, backend=backend)
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_the_io_thread_starts_with_the_first_lookup_and_ends_with_close(
    make_wsgi: Callable[..., LWAWSGIMiddleware], lwa_emulator: LWAEmulator
) -> None:
    before = len(_io_threads())
    mw = make_wsgi()  # warm: the driver is built, no thread started
    assert len(_io_threads()) == before
    assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200
    assert len(_io_threads()) == before + 1
    mw.close()
    assert len(_io_threads()) == before
    # Closed is not broken: a later request starts afresh.
    assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200
    mw.close()
    assert len(_io_threads()) == before


def test_close_ends_a_lookup_in_flight_at_once(
    make_wsgi: Callable[..., LWAWSGIMiddleware], lwa_emulator: LWAEmulator
) -> None:
    mw = make_wsgi(timeout=60.0)
    assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200
    lwa_emulator.inject(Fault.HANG)
    statuses: list[int] = []
    caller = threading.Thread(
        target=lambda: statuses.append(_wsgi_status(mw, lwa_emulator.issue_token()))
    )
    caller.start()
    give_up = time.monotonic() + 10
    while lwa_emulator.calls["tokeninfo"] < 2 and time.monotonic() < give_up:
        time.sleep(0.01)
    assert lwa_emulator.calls["tokeninfo"] == 2, "the lookup never reached LWA"
    mw.close()
    # Far sooner than the 60 s deadline: a bound, not a measurement.
    caller.join(timeout=20)
    assert not caller.is_alive()
    assert statuses == [503]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# The fork is the point (a prefork server's master forks its workers); the
# threads it warns about are the test's emulator's, which the child never uses.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_starts_its_own_io_thread(
    make_wsgi: Callable[..., LWAWSGIMiddleware], lwa_emulator: LWAEmulator
) -> None:
    mw = make_wsgi()
    assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200  # the parent's thread runs
    token = lwa_emulator.issue_token()
    pid = os.fork()
    if pid == 0:  # the child: the parent's I/O thread does not exist here
        code = 1
        try:
            code = 0 if _wsgi_status(mw, token) == 200 and len(_io_threads()) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lwa_emulator.calls["tokeninfo"] == 2
    mw.close()


def test_the_proxy_of_the_environment_is_used(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
    lwa_emulator: LWAEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As httpx2 did: HTTP(S)_PROXY and NO_PROXY. Port 9 refuses: no answer,
    # and LWA never sees the request.
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    mw = make_wsgi()
    try:
        assert _wsgi_status(mw, lwa_emulator.issue_token()) == 503
        assert lwa_emulator.calls["tokeninfo"] == 0
    finally:
        mw.close()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    mw = make_wsgi()
    try:
        assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200
    finally:
        mw.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_fork_while_another_thread_starts_the_io_thread_leaves_the_child_free(
    make_wsgi: Callable[..., LWAWSGIMiddleware], lwa_emulator: LWAEmulator
) -> None:
    """Review finding 9: the parent forks while one of its threads holds the
    I/O thread's start lock; the child's first lookup must not wait forever."""
    from support.private import private_loop_thread

    mw = make_wsgi()
    assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200  # the parent's thread runs
    loop_thread = private_loop_thread(mw)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread of the parent, mid-start
        with loop_thread._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    token = lwa_emulator.issue_token()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # Bounded by the lookup's own deadline: the child has no holder.
            code = 0 if _wsgi_status(mw, token) == 200 else 2
        finally:
            os._exit(code)
    release.set()
    holder.join()
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if done == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child's first lookup waited for a lock no thread of it holds")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    mw.close()


# -- the warm start (issue 23, target 3) --------------------------------------


def _connections(lwa: LWAEmulator, n: int) -> int:
    """``lwa.connections`` once it reaches ``n`` (the emulator counts a
    connection in its own thread, after the client sees it open), or what it
    is after a bound."""
    give_up = time.monotonic() + 10
    while lwa.connections < n and time.monotonic() < give_up:
        time.sleep(0.01)
    return lwa.connections


def _options(lwa: LWAEmulator) -> dict[str, Any]:
    return {"client_id": lwa.client_id, "api_base_url": lwa.base_url, "verify": lwa.ca_file}


@pytest.fixture
def tls_lwa() -> Iterator[LWAEmulator]:
    with LWAEmulator(tls=True) as lwa:
        yield lwa


def test_the_wsgi_warm_start_opens_the_connections_the_first_token_uses(
    tls_lwa: LWAEmulator,
) -> None:
    before = set(_io_threads())  # other tests' middlewares, in this worker
    mw = LWAWSGIMiddleware(wsgi_echo, **_options(tls_lwa))
    try:
        # TCP and TLS done at construction; not one request sent.
        assert _connections(tls_lwa, 2) == 2
        assert tls_lwa.requests == []
        # And still no thread of its own: a server may fork next.
        assert set(_io_threads()) - before == set()
        assert _wsgi_status(mw, tls_lwa.issue_token(scopes=["profile"])) == 200
        # tokeninfo and profile went over those two: none was opened for them.
        assert dict(tls_lwa.calls) == {"tokeninfo": 1, "profile": 1}
        assert tls_lwa.connections == 2
    finally:
        mw.close()


def test_a_warmed_middleware_closes_without_a_lookup(tls_lwa: LWAEmulator) -> None:
    before = len(_io_threads())
    mw = LWAWSGIMiddleware(wsgi_echo, **_options(tls_lwa))
    assert _connections(tls_lwa, 2) == 2
    mw.close()  # its loop ran here only to close: no thread left
    assert len(_io_threads()) == before
    assert tls_lwa.requests == []


def test_the_lifespan_warm_start_under_uvicorn_opens_them_too(tls_lwa: LWAEmulator) -> None:
    mw = LWAMiddleware(starlette_app(), **_options(tls_lwa))
    with serve_uvicorn(mw, lifespan="on") as url:  # startup warms, shutdown closes
        assert _connections(tls_lwa, 2) == 2
        assert tls_lwa.requests == []
        token = tls_lwa.issue_token(scopes=["profile"])
        with httpx2.Client(base_url=url, trust_env=False) as client:
            response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert dict(tls_lwa.calls) == {"tokeninfo": 1, "profile": 1}
        assert tls_lwa.connections == 2


def test_the_warm_start_resolves_a_host_name_and_leaves_no_thread(
    lwa_emulator: LWAEmulator,
) -> None:
    # aiohttp resolves a name (not an IP address) in a thread of the loop's
    # executor: a thread a server forking next would find held mid-call.
    before = set(threading.enumerate())
    base_url = f"http://localhost:{lwa_emulator.port}"
    mw = LWAWSGIMiddleware(wsgi_echo, client_id=lwa_emulator.client_id, api_base_url=base_url)
    try:
        assert _connections(lwa_emulator, 2) == 2
        made = set(threading.enumerate()) - before
        assert {t for t in made if "process_request" not in t.name} == set()
        assert _wsgi_status(mw, lwa_emulator.issue_token()) == 200
        assert lwa_emulator.connections == 2
    finally:
        mw.close()


def test_warm_connections_off_opens_nothing_at_construction(tls_lwa: LWAEmulator) -> None:
    """``warm_connections=False``: construction reaches no network (a test or a
    tool); the first lookup opens what it needs and still answers."""
    mw = LWAWSGIMiddleware(wsgi_echo, warm_connections=False, **_options(tls_lwa))
    try:
        assert tls_lwa.connections == 0
        assert _wsgi_status(mw, tls_lwa.issue_token(scopes=["profile"])) == 200
        assert tls_lwa.connections == 2
    finally:
        mw.close()
