"""A bare ASGI callable (no framework) behind LWAMiddleware.

Run it: ``python examples/asgi_app.py`` (needs ``uvicorn``). Without
``LWA_API_BASE_URL`` it starts the bundled LWA emulator and prints a token.
Against a real LWA, any ASGI server works with the factory:
``LWA_CLIENT_ID=... uvicorn --factory asgi_app:create_app``.

- ``GET /health``: public.
- ``GET /``: optional.
- ``GET /shipping``: needs ``postal_code`` (a route policy).
- anything else: needs a token.
"""

from __future__ import annotations

import json
from typing import Any

from lwa_middleware import LWAMiddleware, get_identity


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # The middleware put the identity in the scope (None when anonymous).
    identity = get_identity(scope)
    path = scope["path"]
    if path == "/health":
        payload: dict[str, Any] = {"status": "ok"}
    elif path == "/":
        payload = {"hello": identity.display_name if identity else "anonymous"}
    elif path == "/shipping" and identity is not None:
        payload = {"user_id": identity.user_id, "postal_code": identity.postal_code}
    else:
        payload = {"identity": identity.to_dict() if identity else None}
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> LWAMiddleware:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``."""
    return LWAMiddleware(
        app,
        client_id=client_id,
        api_base_url=api_base_url,
        routes={"/health": "public", "/": "optional", "/shipping": ["postal_code"]},
    )


def main() -> None:
    import uvicorn
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    application = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/shipping")
    uvicorn.run(application, host=HOST, port=port(), log_level="warning")


if __name__ == "__main__":
    main()
