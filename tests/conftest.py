"""Fixtures shared by the whole suite.

The LWA emulator fixtures (``lwa_emulator``, ``lwa_emulator_server``) come from
the package's own pytest plugin, registered through the ``pytest11`` entry
point, exactly as users get them.

Every test is sorted into its tier here (``support.tiers``): ``pytest --fast``
(``scripts/test --fast``) runs only those that need no real server, browser,
Redis or wall-clock wait.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from support.tiers import (  # noqa: F401  (the fast tier's hooks)
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_protocol,
)

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

ROUTES: dict[str, Any] = {
    "/public": "public",
    "/public/**": "public",
    "/optional": "optional",
    "/zip": ["postal_code"],
    "/users/*/orders": ["profile"],
    "/uid": ["profile:user_id"],
}


def describe(request: Any) -> dict[str, Any]:
    identity = get_identity(request)
    return {"identity": identity.to_dict() if identity is not None else None}


async def _echo(request: Request) -> JSONResponse:
    body = describe(request)
    if "user" in request.scope:
        body["user"] = {
            "is_authenticated": request.user.is_authenticated,
            "display_name": request.user.display_name,
        }
        body["auth_scopes"] = sorted(request.auth.scopes)
    body["headers"] = sorted(request.headers.keys())
    body["query"] = request.url.query
    return JSONResponse(body)


@requires("postal_code")
async def _requires_zip(request: Request) -> JSONResponse:
    return JSONResponse(describe(request))


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = get_identity(websocket)
    await websocket.send_json({"user_id": identity.user_id if identity else None})
    await websocket.close()


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/requires-zip", _requires_zip),
            WebSocketRoute("/ws", _ws),
            WebSocketRoute("/public/ws", _ws),
            Route("/{path:path}", _echo, methods=["GET", "POST", "OPTIONS"]),
        ]
    )


def wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    identity = environ.get("lwa.identity")
    body = json.dumps(
        {
            "identity": identity.to_dict() if identity is not None else None,
            "headers": sorted(k for k in environ if k.startswith("HTTP_")),
            "query": environ.get("QUERY_STRING", ""),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


@pytest.fixture
def make_asgi(lwa_emulator: LWAEmulator) -> Callable[..., LWAMiddleware]:
    """``make_asgi(**options)``: the test Starlette app behind ``LWAMiddleware``."""

    def make(app: Any = None, **options: Any) -> LWAMiddleware:
        options.setdefault("client_id", lwa_emulator.client_id)
        options.setdefault("api_base_url", lwa_emulator.base_url)
        options.setdefault("routes", ROUTES)
        return LWAMiddleware(app or starlette_app(), **options)

    return make


@pytest.fixture
def make_wsgi(lwa_emulator: LWAEmulator) -> Callable[..., LWAWSGIMiddleware]:
    """``make_wsgi(**options)``: a JSON echo WSGI app behind ``LWAWSGIMiddleware``."""

    def make(app: Any = None, **options: Any) -> LWAWSGIMiddleware:
        options.setdefault("client_id", lwa_emulator.client_id)
        options.setdefault("api_base_url", lwa_emulator.base_url)
        options.setdefault("routes", ROUTES)
        return LWAWSGIMiddleware(app or wsgi_echo, **options)

    return make


# Each directory under newcomer/ is a newcomer's project with its own
# ``pytest.ini`` and tests, run in its own process by
# ``newcomer/test_newcomer.py`` as its author would run them; the suite does not
# collect them itself (two Django projects cannot share one process). Declared
# here, not in a conftest.py of newcomer/: a second top-level ``conftest``
# module would shadow this one for ``from conftest import ...``.
collect_ignore = ["newcomer/fastapi_scopes", "newcomer/flask_signin", "newcomer/django_drf"]
