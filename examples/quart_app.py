"""Quart behind LWAMiddleware, scopes from the route table.

Run it: ``python examples/quart_app.py`` (needs ``quart`` and ``uvicorn``).
Without ``LWA_API_BASE_URL`` it starts the bundled LWA emulator and prints a
token.

- ``GET /health``: public, no token read.
- ``GET /``: optional, greets the caller or "anonymous".
- ``GET /me``: needs a token (the route table's default).
- ``GET /shipping``: needs the ``postal_code`` scope (a route policy).

Quart is an ASGI app: wrap it whole in ``LWAMiddleware`` (not
``app.asgi_app``, so the middleware sees lifespan and websockets too).
Views read the identity with ``get_identity(request)``, which looks in
``request.scope``. (The Flask extension is for Flask's WSGI app, not Quart.)
"""

from __future__ import annotations

from typing import Any

from quart import Quart, request

from lwa_middleware import LWAMiddleware, get_identity


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> LWAMiddleware:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``."""
    app = Quart(__name__)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def home() -> dict[str, str]:
        identity = get_identity(request)
        return {"hello": identity.display_name if identity else "anonymous"}

    @app.get("/me")
    async def me() -> dict[str, Any]:
        identity = get_identity(request)
        assert identity is not None  # the route is "required"
        return identity.to_dict()

    @app.get("/shipping")
    async def shipping() -> dict[str, Any]:
        identity = get_identity(request)
        assert identity is not None  # the route needs postal_code
        return {"user_id": identity.user_id, "postal_code": identity.postal_code}

    return LWAMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        routes={"/health": "public", "/": "optional", "/shipping": ["postal_code"]},
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
