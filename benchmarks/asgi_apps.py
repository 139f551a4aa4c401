"""Apps served by uvicorn in ``bench_uvicorn.py``: the same trivial app, bare and wrapped."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from lwa_middleware import LWAMiddleware


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


wrapped = LWAMiddleware(
    bare,
    client_id=os.environ.get("LWA_CLIENT_ID", "amzn1.application-oa2-client.emulator"),
    api_base_url=os.environ.get("LWA_API_BASE_URL", "http://127.0.0.1:9"),
)


class _Floor:
    """The least a token middleware can do (the in-process benchmark's floor)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scope["lwa.identity"] = value[7:]
                    break
        await self.app(scope, receive, send)


floor = _Floor(bare)


class _HashingFloor(_Floor):
    """The floor plus the whole-token SHA-256 and a dict probe any safe cache key costs."""

    table: dict[bytes, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scope["lwa.identity"] = self.table.get(hashlib.sha256(value[7:]).digest())
                    break
        await self.app(scope, receive, send)


hashing_floor = _HashingFloor(bare)
