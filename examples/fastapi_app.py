"""FastAPI behind LWAMiddleware, with identity dependencies and OpenAPI security.

Run it: ``python examples/fastapi_app.py`` (needs ``uvicorn``), then open
``/docs``: protected operations show a lock, and *Authorize* takes the
printed token. Without ``LWA_API_BASE_URL`` it starts the bundled LWA
emulator.

- ``GET /health``, ``/docs``, ``/openapi.json``: public.
- ``GET /``: optional; ``Depends(optional_identity)`` gives ``None`` when anonymous.
- ``GET /me``: ``Depends(current_identity)``.
- ``GET /shipping``: ``Depends(require_scopes("postal_code"))``.
- ``GET /orders``: ``Security(current_identity, scopes=["profile"])``.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security

from lwa_middleware import Identity, LWAMiddleware
from lwa_middleware.integrations.fastapi import (
    current_identity,
    install_error_handlers,
    optional_identity,
    require_scopes,
)


def create_api() -> FastAPI:
    """The FastAPI app alone, without the middleware."""
    api = FastAPI(title="LWA example")
    # Errors raised by the dependencies get the middleware's exact JSON body.
    install_error_handlers(api)

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/")
    def home(identity: Annotated[Identity | None, Depends(optional_identity)]) -> dict[str, str]:
        return {"hello": identity.display_name if identity else "anonymous"}

    @api.get("/me")
    def me(identity: Annotated[Identity, Depends(current_identity)]) -> dict[str, Any]:
        return identity.to_dict()

    @api.get("/shipping")
    def shipping(
        identity: Annotated[Identity, Depends(require_scopes("postal_code"))],
    ) -> dict[str, str | None]:
        return {"user_id": identity.user_id, "postal_code": identity.postal_code}

    @api.get("/orders")
    async def orders(
        identity: Annotated[Identity, Security(current_identity, scopes=["profile"])],
    ) -> dict[str, Any]:
        return {"customer": identity.display_name, "orders": []}

    return api


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> LWAMiddleware:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``.

    The route table resolves tokens everywhere but the public pages; the
    dependencies decide what each operation needs.
    """
    return LWAMiddleware(
        create_api(),
        client_id=client_id,
        api_base_url=api_base_url,
        routes={
            "/health": "public",
            "/docs": "public",
            "/docs/**": "public",
            "/openapi.json": "public",
        },
        default="optional",
    )


def main() -> None:
    import uvicorn
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    app = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/shipping")
    print(f"OpenAPI docs: http://{HOST}:{port()}/docs", flush=True)
    uvicorn.run(app, host=HOST, port=port(), log_level="warning")


if __name__ == "__main__":
    main()
