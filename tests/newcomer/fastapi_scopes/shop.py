"""A FastAPI shop API: anyone may browse, a signed-in customer sees their profile, and only a
token granted ``postal_code`` gets a shipping quote. Written from docs/tutorial.md and
docs/how-to/frameworks.md ("FastAPI") alone."""

from typing import Annotated

from fastapi import Depends, FastAPI

from lwa_middleware import Identity, LWAMiddleware
from lwa_middleware.integrations.fastapi import (
    current_identity,
    install_error_handlers,
    optional_identity,
    require_scopes,
)


def create_app(**lwa_options: object) -> LWAMiddleware:
    api = FastAPI()
    install_error_handlers(api)

    @api.get("/products")
    def products(identity: Annotated[Identity | None, Depends(optional_identity)]) -> dict:
        greeting = f"Hello {identity.name}" if identity else "Hello"
        return {"greeting": greeting, "products": ["tea", "scones"]}

    @api.get("/me")
    def me(identity: Annotated[Identity, Depends(current_identity)]) -> dict:
        return identity.to_dict()

    @api.get("/shipping/quote")
    def quote(identity: Annotated[Identity, Depends(require_scopes("postal_code"))]) -> dict:
        return {"postal_code": identity.postal_code, "price": 4.5}

    lwa_options.setdefault("client_id", "amzn1.application-oa2-client.0123")
    return LWAMiddleware(api, default="optional", **lwa_options)  # type: ignore[arg-type]
