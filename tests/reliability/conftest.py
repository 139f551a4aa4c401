"""Fixtures for the reliability suite: one calling convention over both middlewares.

A *caller* wraps a middleware built by the shared ``make_asgi``/``make_wsgi``
fixtures (so it talks to the real emulator) and sends it requests the way a
real server would:

* ASGI through ``httpx.ASGITransport`` on one event loop kept for the whole
  test, since the middleware binds its pooled ``httpx.AsyncClient`` to the
  loop it first runs on;
* WSGI through Werkzeug's test ``Client``, a fresh one per thread when
  requests are sent concurrently.

Every test that takes ``caller_kind`` runs once per middleware.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware

REPO = Path(__file__).resolve().parents[2]

#: Where ``Retry-After`` comes from when LWA itself did not send one.
RETRY_AFTER = 4


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


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class AsgiCaller:
    kind = "asgi"

    def __init__(self, mw: LWAMiddleware) -> None:
        self.mw = mw
        self.runner = asyncio.Runner()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://testserver"
        )

    async def _get(self, path: str, headers: dict[str, str], method: str) -> Reply:
        response = await self.client.request(method, path, headers=headers)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    async def aget(self, path: str = "/me", token: str | None = None) -> Reply:
        """``get`` as a coroutine, to overlap requests on the caller's loop."""
        return await self._get(path, bearer(token), "GET")

    def get(
        self,
        path: str = "/me",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Reply:
        return self.runner.run(self._get(path, {**bearer(token), **(headers or {})}, method))

    def many(self, tokens: Sequence[str], path: str = "/me", spread: float = 0.0) -> list[Reply]:
        """One request per token, all at once, or one every ``spread`` seconds."""

        async def one(index: int, token: str) -> Reply:
            if spread:
                await asyncio.sleep(index * spread)
            return await self._get(path, bearer(token), "GET")

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

    def __init__(self, mw: LWAWSGIMiddleware) -> None:
        self.mw = mw

    def _get(self, path: str, headers: dict[str, str], method: str) -> Reply:
        response = Client(self.mw).open(path, method=method, headers=headers)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )

    def get(
        self,
        path: str = "/me",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Reply:
        return self._get(path, {**bearer(token), **(headers or {})}, method)

    def many(
        self, tokens: Sequence[str], path: str = "/me", spread: float = 0.0, workers: int = 32
    ) -> list[Reply]:
        start = time.monotonic()

        def one(index: int) -> Reply:
            if spread:
                time.sleep(max(0.0, start + index * spread - time.monotonic()))
            return self._get(path, bearer(tokens[index]), "GET")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(tokens))))

    def invalidate(self, token: str) -> None:
        self.mw.invalidate(token)

    def revoke(self, token: str) -> None:
        self.mw.revoke(token)

    def close(self) -> None:
        self.mw.close()


Caller = AsgiCaller | WsgiCaller


@pytest.fixture(params=["asgi", "wsgi"])
def caller_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_caller(
    caller_kind: str,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Callable[..., Caller]]:
    """``make_caller(**options)``: the shared echo app behind this test's middleware."""
    made: list[Caller] = []

    def make(**options: Any) -> Caller:
        options.setdefault("retry_after", RETRY_AFTER)
        caller: Caller
        if caller_kind == "asgi":
            caller = AsgiCaller(make_asgi(**options))
        else:
            caller = WsgiCaller(make_wsgi(**options))
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.close()


# -- assertions ----------------------------------------------------------------


def assert_unavailable(reply: Reply, retry_after: int | None = None) -> None:
    """The contract's 503: JSON ``temporarily_unavailable``, ``Retry-After``, no challenge."""
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["error"] == "temporarily_unavailable"
    assert "www-authenticate" not in reply.headers
    value = reply.headers.get("retry-after", "")
    assert value.isdigit(), value
    assert int(value) >= 1
    if retry_after is not None:
        assert int(value) == retry_after


def assert_invalid_token(reply: Reply) -> None:
    assert reply.status == 401, (reply.status, reply.body)
    assert reply.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


def assert_clean_logs(records: Sequence[logging.LogRecord], *secrets: str) -> None:
    """No ERROR, no traceback, and no secret in any message, argument or traceback."""
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    for record in records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record.exc_info is None, record.getMessage()
        text = handler.format(record) + repr(record.args) + (record.exc_text or "")
        for secret in secrets:
            assert secret not in text, f"a token leaked into log record {record.name}"
            # Half a token is still a leak: the fragment a log line cuts off.
            assert secret[-40:] not in text, f"a token fragment leaked into {record.name}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger, httpx's and httpcore's included, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "lwa_middleware", "uvicorn", "waitress"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# -- the shared soak engine ------------------------------------------------------


def load_soak() -> ModuleType:
    """``benchmarks/soak.py``, which the soak tests run CI-sized."""
    name = "lwa_benchmarks_soak"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "soak.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
