"""The contract's error table and its success path, once per transport:
the ASGI and WSGI middlewares in process (the WSGI one between two
``wsgiref.validate`` validators), and over loopback sockets behind uvicorn
and waitress. The rows are data: :data:`support.contract.CASES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.validate import validator

import pytest
from support.callers import AsgiCaller, HttpCaller, Reply, WsgiCaller
from support.contract import CASES, Case, check_error, check_success
from support.servers import serve_uvicorn, serve_waitress

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

TRANSPORTS = ["asgi", "wsgi", "uvicorn", "waitress"]


class Spy:
    """Records the path of every request that reached the app behind the middleware."""

    def __init__(self, mw: Any, asgi: bool) -> None:
        self.paths: list[str] = []
        inner = mw.app
        if asgi:

            async def spy(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http":
                    self.paths.append(scope["path"])
                await inner(scope, receive, send)

            mw.app = spy
        else:

            def wsgi_spy(environ: Any, start_response: Any) -> Any:
                self.paths.append(environ["PATH_INFO"])
                return inner(environ, start_response)

            mw.app = validator(wsgi_spy)


@pytest.fixture(params=TRANSPORTS)
def transport(
    request: pytest.FixtureRequest,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Callable[..., tuple[Any, Spy]]]:
    """``transport(**options)``: a caller for a fresh middleware, and its spy."""
    kind = str(request.param)
    stack = contextlib.ExitStack()

    def make(**options: Any) -> tuple[Any, Spy]:
        caller: Any
        if kind in ("asgi", "uvicorn"):
            mw: Any = make_asgi(**options)
            spy = Spy(mw, asgi=True)
            if kind == "asgi":
                caller = AsgiCaller(mw)
            else:
                caller = HttpCaller(stack.enter_context(serve_uvicorn(mw, close_on_shutdown=True)))
        else:
            mw = make_wsgi(**options)
            spy = Spy(mw, asgi=False)
            stack.callback(mw.close)
            if kind == "wsgi":
                caller = WsgiCaller(mw, wrap=validator)
            else:
                caller = HttpCaller(stack.enter_context(serve_waitress(mw)))
        stack.callback(caller.close)
        return caller, spy

    with stack:
        yield make


@pytest.mark.parametrize("case", CASES, ids=str)
def test_error_table(
    case: Case, lwa_emulator: LWAEmulator, transport: Callable[..., tuple[Any, Spy]]
) -> None:
    caller, spy = transport()
    request = case.build(lwa_emulator)
    reply: Reply = caller.get(request.path, headers=request.headers, query=request.query)
    check_error(case, reply, lwa_emulator)
    assert spy.paths == [], "a refused request reached the app"


def test_success_cache_public_and_recovery(
    lwa_emulator: LWAEmulator, transport: Callable[..., tuple[Any, Spy]]
) -> None:
    caller, spy = transport()
    check_success(caller, lwa_emulator)
    assert len(spy.paths) == 11
