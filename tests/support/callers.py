"""One calling convention over both middlewares, in process or over a socket.

A *caller* sends requests the way a real server would and hands back a
:class:`Reply`:

* :class:`AsgiCaller`: ``httpx2.ASGITransport`` on one event loop kept for the
  caller's life (the middleware binds its pooled ``httpx2.AsyncClient`` to the
  loop it first runs on);
* :class:`WsgiCaller`: Werkzeug's test ``Client`` (a fresh one per thread when
  requests are sent concurrently);
* :class:`HttpCaller`: an ``httpx2.Client`` against a real server's URL
  (``trust_env=False``: no proxy setting can send a request off loopback).

:func:`asgi_call` and :func:`wsgi_call` call a middleware with no HTTP client
at all (no client logs what it sends, and the scope or environ is exactly
what the test wrote).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2
from werkzeug.test import Client

__all__ = [
    "AsgiCaller",
    "Caller",
    "HttpCaller",
    "Reply",
    "WsgiCaller",
    "asgi_call",
    "bearer",
    "http_client",
    "wsgi_call",
]

Headers = Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Reply:
    """What a client saw: status, lower-case headers, raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def user_id(self) -> str | None:
        identity = self.json().get("identity")
        return identity["user_id"] if identity else None


def bearer(token: str | None, scheme: str = "Bearer") -> dict[str, str]:
    return {} if token is None else {"Authorization": f"{scheme} {token}"}


def http_client(base_url: str = "", timeout: float = 30.0) -> httpx2.Client:
    """An httpx client for loopback servers, deaf to proxy settings."""
    return httpx2.Client(base_url=base_url, timeout=timeout, trust_env=False)


def _merge(token: str | None, headers: Headers | None) -> list[tuple[str, str | bytes]]:
    merged: list[tuple[str, str | bytes]] = list(bearer(token).items())
    if headers:
        merged += list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    return merged


def _url(path: str, query: str) -> str:
    return path + ("?" + query if query else "")


def _reply(status: int, headers: Any, body: bytes) -> Reply:
    return Reply(status, {k.lower(): v for k, v in headers.items()}, body)


class AsgiCaller:
    kind = "asgi"

    def __init__(self, mw: Any) -> None:
        self.mw = mw
        self.runner = asyncio.Runner()
        self.client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=mw), base_url="http://testserver"
        )

    async def _get(
        self, path: str, headers: list[tuple[str, str | bytes]], method: str, query: str = ""
    ) -> Reply:
        response = await self.client.request(method, _url(path, query), headers=headers)
        return _reply(response.status_code, response.headers, response.content)

    async def aget(self, path: str = "/me", token: str | None = None) -> Reply:
        """``get`` as a coroutine, to overlap requests on the caller's loop."""
        return await self._get(path, _merge(token, None), "GET")

    def get(
        self,
        path: str = "/me",
        token: str | None = None,
        headers: Headers | None = None,
        method: str = "GET",
        query: str = "",
    ) -> Reply:
        return self.runner.run(self._get(path, _merge(token, headers), method, query))

    def many(self, tokens: Sequence[str], path: str = "/me", spread: float = 0.0) -> list[Reply]:
        """One request per token, all at once, or one every ``spread`` seconds."""

        async def one(index: int, token: str) -> Reply:
            if spread:
                await asyncio.sleep(index * spread)
            return await self._get(path, _merge(token, None), "GET")

        async def everything() -> list[Reply]:
            return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))))

        return self.runner.run(everything())

    def invalidate(self, token: str) -> None:
        self.runner.run(self.mw.invalidate(token))

    def revoke(self, token: str) -> None:
        self.runner.run(self.mw.revoke(token))

    def close(self) -> None:
        async def shut() -> None:
            await self.client.aclose()
            await self.mw.aclose()

        self.runner.run(shut())
        self.runner.close()


class WsgiCaller:
    kind = "wsgi"

    def __init__(self, mw: Any, wrap: Any = None) -> None:
        self.mw = mw
        #: What the client calls: the middleware, or a wrapper around it
        #: (``wsgiref.validate.validator``).
        self.app = wrap(mw) if wrap is not None else mw

    def _get(
        self, path: str, headers: list[tuple[str, str | bytes]], method: str, query: str = ""
    ) -> Reply:
        environ: dict[str, Any] = {}
        plain: list[tuple[str, str]] = []
        for name, value in headers:
            if isinstance(value, bytes):  # as a server would: bytes as latin-1
                environ["HTTP_" + name.upper().replace("-", "_")] = value.decode("latin-1")
            else:
                plain.append((name, value))
        response = Client(self.app).open(
            _url(path, query),  # the path may carry its own query already
            method=method,
            headers=plain,
            environ_overrides=environ,
            buffered=True,
        )
        return _reply(response.status_code, response.headers, response.get_data())

    def get(
        self,
        path: str = "/me",
        token: str | None = None,
        headers: Headers | None = None,
        method: str = "GET",
        query: str = "",
    ) -> Reply:
        return self._get(path, _merge(token, headers), method, query)

    def many(
        self, tokens: Sequence[str], path: str = "/me", spread: float = 0.0, workers: int = 32
    ) -> list[Reply]:
        start = time.monotonic()

        def one(index: int) -> Reply:
            if spread:  # pacing arrivals, not waiting for a result
                time.sleep(max(0.0, start + index * spread - time.monotonic()))
            return self._get(path, _merge(tokens[index], None), "GET")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(tokens))))

    def invalidate(self, token: str) -> None:
        self.mw.invalidate(token)

    def revoke(self, token: str) -> None:
        self.mw.revoke(token)

    def close(self) -> None:
        self.mw.close()


class HttpCaller:
    """Requests over a loopback socket to a server at ``base_url``."""

    kind = "http"

    def __init__(self, base_url: str) -> None:
        self.client = http_client(base_url)

    def get(
        self,
        path: str = "/me",
        token: str | None = None,
        headers: Headers | None = None,
        method: str = "GET",
        query: str = "",
    ) -> Reply:
        response = self.client.request(method, _url(path, query), headers=_merge(token, headers))
        return _reply(response.status_code, response.headers, response.content)

    def close(self) -> None:
        self.client.close()


Caller = AsgiCaller | WsgiCaller


def asgi_scope(
    path: str = "/me",
    headers: Headers | None = None,
    query: str = "",
    *,
    kind: str = "http",
    method: str = "GET",
    root_path: str = "",
) -> dict[str, Any]:
    """A complete ASGI ``http`` (or ``websocket``) scope, as a server builds it."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": _url(path, query).encode(),
        "query_string": query.encode(),
        "root_path": root_path,
        "headers": [
            (k.lower().encode(), v if isinstance(v, bytes) else v.encode("latin-1"))
            for k, v in pairs
        ],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }


async def asgi_call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Call an ASGI app with ``scope`` and an empty body; return what it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    """Call a WSGI app with ``environ``; return its status line and body."""
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return seen[0], body
