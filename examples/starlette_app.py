"""Starlette behind LWAMiddleware, with a per-endpoint scope check.

Run it: ``python examples/starlette_app.py`` (needs ``uvicorn``). Without
``LWA_API_BASE_URL`` it starts the bundled LWA emulator and prints a token.

- ``GET /health``: public, no token read.
- ``GET /``: optional, greets the caller or "anonymous".
- ``GET /me``: needs a token (the route table's default).
- ``GET /shipping``: needs the ``postal_code`` scope (``@require_scopes``).
- ``WS /ws``: a WebSocket needing the ``profile`` scope.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lwa_middleware import LWAMiddleware, get_identity
from lwa_middleware.integrations.starlette import require_scopes


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def home(request: Request) -> JSONResponse:
    # request.user is set by the middleware, as Starlette's AuthenticationMiddleware would.
    name = request.user.display_name if request.user.is_authenticated else "anonymous"
    return JSONResponse({"hello": name})


async def me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None  # the route is "required"
    return JSONResponse(identity.to_dict())


@require_scopes("postal_code")
def shipping(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"user_id": identity.user_id, "postal_code": identity.postal_code})


@require_scopes("profile")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    identity = get_identity(websocket)
    assert identity is not None
    await websocket.send_json({"hello": identity.display_name})
    await websocket.close()


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> LWAMiddleware:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``."""
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/", home),
            Route("/me", me),
            Route("/shipping", shipping),
            WebSocketRoute("/ws", ws),
        ]
    )
    return LWAMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        routes={"/health": "public", "/": "optional"},
        default="required",
    )


def main() -> None:
    import uvicorn
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    app = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/shipping")
    uvicorn.run(app, host=HOST, port=port(), log_level="warning")


if __name__ == "__main__":
    main()
