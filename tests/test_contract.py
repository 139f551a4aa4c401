"""The contract's error table and its success path, once per transport:
the ASGI and WSGI middlewares in process (the WSGI one between two
``wsgiref.validate`` validators), and over loopback sockets behind uvicorn
and waitress. The rows are data: :data:`support.contract.CASES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote
from wsgiref.validate import validator

import pytest
from support.callers import AsgiCaller, HttpCaller, Reply, WsgiCaller, bearer
from support.contract import CASES, Case, check_error
from support.servers import serve_uvicorn, serve_waitress

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

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
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"], name="Ada Lovelace", email="ada@example.com"
    )
    customer = lwa_emulator.customer_for(token)
    first = caller.get("/me", token)
    assert first.status == 200, first.body
    identity = first.json()["identity"]
    assert identity["user_id"] == customer.user_id
    assert identity["name"] == "Ada Lovelace"
    assert identity["email"] == "ada@example.com"
    assert identity["postal_code"] == customer.postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert identity["client_id"] == lwa_emulator.client_id
    # Cached: every route and every token source, no further LWA call.
    for path in ("/me", "/zip", "/uid", "/users/1/orders", "/optional"):
        again = caller.get(path, token)
        assert again.status == 200, path
        assert again.json()["identity"] == identity
    assert caller.get("/me", query="access_token=" + quote(token, safe="")).status == 200
    assert caller.get("/me", headers={"x-amz-access-token": token}).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    # Public: no credential is read, whatever the request carries.
    public = caller.get("/public/x", headers={"Authorization": "Bearer a b"})
    assert public.status == 200
    assert public.json()["identity"] is None
    # Optional: anonymous without a token.
    assert caller.get("/optional").json()["identity"] is None
    # Down, then back: fail closed, then resolve.
    lwa_emulator.inject(Fault.DOWN)
    fresh = lwa_emulator.issue_token()
    assert caller.get("/me", headers=bearer(fresh)).status == 503
    lwa_emulator.clear_faults()
    assert caller.get("/me", headers=bearer(fresh)).status == 200
    assert lwa_emulator.token_in_url == 0
    assert len(spy.paths) == 11
