"""CORS preflights are never a way past the middleware.

A browser sends ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``
before a cross-origin request that carries ``Authorization``, and never
attaches credentials to it. The recommended layout puts the CORS middleware
*outside* this one (``CORSMiddleware(LWAMiddleware(app))``): it answers
preflights itself, and decorates our refusals so the page can read them.

By default (``allow_preflight=False``) a preflight reaching this middleware is
judged like any request: without a token it never reaches a ``required``
view. ``allow_preflight=True`` is an opt-in for a CORS layer placed *inside*
(flask-cors in ``app.wsgi_app``): then only a real preflight (``OPTIONS`` with
both ``Origin`` and ``Access-Control-Request-Method``) passes, and LWA is never
asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

ORIGIN = "https://app.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def _me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    return JSONResponse({"user_id": identity.user_id if identity else None})


def _starlette() -> Starlette:
    return Starlette(
        routes=[Route("/me", _me, methods=["GET", "POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[ORIGIN],
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            )
        ],
    )


def _flask(lwa: LWAEmulator, **options: Any) -> Any:
    flask = pytest.importorskip("flask")
    flask_cors = pytest.importorskip("flask_cors")
    app = flask.Flask(__name__)
    flask_cors.CORS(app, origins=[ORIGIN], allow_headers=["authorization", "content-type"])

    @app.route("/me", methods=["GET", "POST"])
    def me() -> Any:
        identity = get_identity(flask.request)
        return {"user_id": identity.user_id if identity else None}

    app.wsgi_app = LWAWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, client_id=lwa.client_id, api_base_url=lwa.base_url, **options
    )
    return app


class _Send:
    """One call convention over Starlette-in-ASGI and Flask-in-WSGI."""

    def __init__(self, kind: str, lwa: LWAEmulator, **options: Any) -> None:
        self.kind = kind
        if kind == "asgi":
            self.mw = LWAMiddleware(
                _starlette(), client_id=lwa.client_id, api_base_url=lwa.base_url, **options
            )
            self.runner = asyncio.Runner()
        else:
            self.app = _flask(lwa, **options)

    def __call__(self, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.kind == "asgi":

            async def go() -> httpx2.Response:
                transport = httpx2.ASGITransport(app=self.mw)
                async with httpx2.AsyncClient(transport=transport, base_url="http://t") as c:
                    return await c.request(method, "/me", headers=headers)

            response = self.runner.run(go())
            return response.status_code, dict(response.headers), response.content
        reply = Client(self.app).open("/me", method=method, headers=headers)
        return reply.status_code, {k.lower(): v for k, v in reply.headers.items()}, reply.data

    def close(self) -> None:
        if self.kind == "asgi":
            self.runner.run(self.mw.aclose())
            self.runner.close()
        else:
            self.app.wsgi_app.close()


@pytest.fixture(params=["asgi", "wsgi"])
def send(request: pytest.FixtureRequest, lwa_emulator: LWAEmulator) -> Iterator[Any]:
    made: list[_Send] = []

    def make(**options: Any) -> _Send:
        made.append(_Send(request.param, lwa_emulator, **options))
        return made[-1]

    yield make
    for sender in made:
        sender.close()


def _viewed(lwa: LWAEmulator, **options: Any) -> tuple[LWAMiddleware, list[str]]:
    """A ``required`` view that records every method it was called with."""
    seen: list[str] = []

    async def view(request: Request) -> JSONResponse:
        seen.append(request.method)
        return JSONResponse({"reached": True})

    app = Starlette(routes=[Route("/me", view, methods=["GET", "POST", "OPTIONS"])])
    return LWAMiddleware(app, client_id=lwa.client_id, api_base_url=lwa.base_url, **options), seen


def _request(app: Any, method: str, headers: dict[str, str]) -> httpx2.Response:
    async def go() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, "/me", headers=headers)

    return asyncio.run(go())


def test_by_default_a_preflight_never_reaches_a_required_view(lwa_emulator: LWAEmulator) -> None:
    mw, seen = _viewed(lwa_emulator)
    reply = _request(mw, "OPTIONS", PREFLIGHT)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer realm=")
    assert seen == []
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_by_default_a_wsgi_preflight_never_reaches_a_required_view(
    lwa_emulator: LWAEmulator,
) -> None:
    seen: list[str] = []

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reached"]

    mw = LWAWSGIMiddleware(
        view, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    reply = Client(mw).open("/me", method="OPTIONS", headers=PREFLIGHT)
    assert reply.status_code == 401
    assert seen == []


def test_cors_outside_answers_preflights_and_lets_the_page_read_refusals(
    lwa_emulator: LWAEmulator,
) -> None:
    """The layout the README recommends: ``CORSMiddleware(LWAMiddleware(app))``."""
    mw, seen = _viewed(lwa_emulator)
    app = CORSMiddleware(
        mw,
        allow_origins=[ORIGIN],
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
        expose_headers=["WWW-Authenticate", "Retry-After"],
    )
    preflight = _request(app, "OPTIONS", PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert seen == []  # answered by CORS, never by the view

    refused = _request(app, "POST", {"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
    token = lwa_emulator.issue_token()
    ok = _request(app, "POST", {"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert seen == ["POST"]
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_opted_in_preflight_passes_without_a_token(send: Any, lwa_emulator: LWAEmulator) -> None:
    call = send(allow_preflight=True)
    status, headers, _ = call("OPTIONS", PREFLIGHT)
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert lwa_emulator.calls["tokeninfo"] == 0

    # The real request that follows still needs its token, and gets CORS headers.
    token = lwa_emulator.issue_token()
    status, headers, body = call("POST", {"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert lwa_emulator.customer_for(token).user_id in body.decode()
    status, _, _ = call("POST", {"Origin": ORIGIN})
    assert status == 401


def test_opted_in_preflight_with_a_bad_token_does_not_call_lwa(
    send: Any, lwa_emulator: LWAEmulator
) -> None:
    """Browsers never send credentials on a preflight; one that does is not checked."""
    call = send(allow_preflight=True)
    status, _, _ = call("OPTIONS", {**PREFLIGHT, "Authorization": "Bearer not-a-token"})
    assert status == 200
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_preflight_refused_by_default(send: Any, lwa_emulator: LWAEmulator) -> None:
    call = send()
    status, headers, body = call("OPTIONS", PREFLIGHT)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer realm=")
    assert b"access-control" not in body
    assert "access-control-allow-origin" not in headers


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("OPTIONS", {"Origin": ORIGIN}),
        ("OPTIONS", {"Access-Control-Request-Method": "POST"}),
        ("OPTIONS", {}),
        ("GET", PREFLIGHT),
        ("POST", PREFLIGHT),
    ],
    ids=["options-without-acrm", "options-without-origin", "bare-options", "get", "post"],
)
def test_only_a_real_preflight_skips_the_token(
    method: str, headers: dict[str, str], send: Any, lwa_emulator: LWAEmulator
) -> None:
    call = send(allow_preflight=True)
    status, response_headers, _ = call(method, headers)
    assert status == 401
    assert "error=" not in response_headers["www-authenticate"]  # missing, not invalid
