"""The apps that server *processes* import by module path.

``support.server_apps:asgi`` (the suite's Starlette app behind
``LWAMiddleware``) and ``support.server_apps:wsgi`` (its JSON echo behind
``LWAWSGIMiddleware``), both with the suite's route table. The middleware
reads its client id and the emulator's URL from ``LWA_CLIENT_ID`` and
``LWA_API_BASE_URL``, as a twelve-factor deployment would.

The ASGI app sits inside a recorder: for each WebSocket handshake it keeps
which extensions the server offered and how the middleware answered
(``websocket.accept``, ``websocket.close`` and its code, or
``websocket.http.response.start`` and its status). ``GET /_seen`` (outside
the middleware) hands that log over as JSON and empties it, so a test can
tell what the server offered, not only what its client saw.
"""

from __future__ import annotations

import json
from typing import Any

from conftest import ROUTES, starlette_app, wsgi_echo

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware

__all__ = ["asgi", "wsgi"]

SEEN: list[dict[str, Any]] = []


def _recording(app: Any) -> Any:
    async def recorder(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_seen":
            body = json.dumps(SEEN).encode()
            SEEN.clear()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        record: dict[str, Any] = {
            "path": scope["path"],
            "extensions": sorted(scope.get("extensions") or {}),
        }
        SEEN.append(record)

        async def watched(message: Any) -> None:
            kind = message["type"]
            if "answer" not in record and kind in (
                "websocket.accept",
                "websocket.close",
                "websocket.http.response.start",
            ):
                record["answer"] = kind
                record["code"] = message.get("code", message.get("status"))
            await send(message)

        await app(scope, receive, watched)

    return recorder


asgi = _recording(LWAMiddleware(starlette_app(), routes=ROUTES))
wsgi = LWAWSGIMiddleware(wsgi_echo, routes=ROUTES)
