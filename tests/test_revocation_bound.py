"""The in-process revocation set: bounded apart from the cache, and, when full,
it drops the revocation whose token expires soonest, loudly (review finding:
it used to be an LRU of ``cache_maxsize`` that silently undid old logouts)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from support.clock import FakeClock
from support.private import IdentityCache
from support.private import cache as cache_module

from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import LWAEmulator


def test_revocations_outlive_a_small_cache(lwa_emulator: LWAEmulator) -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = LWAMiddleware(
        ok, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url, cache_maxsize=3
    )
    tokens = [lwa_emulator.issue_token() for _ in range(6)]

    async def status(token: str) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/me",
            "query_string": b"",
            "headers": [(b"authorization", b"Bearer " + token.encode())],
        }
        await mw(scope, receive, send)
        return int(sent[0]["status"])

    async def run() -> list[int]:
        for token in tokens:
            assert await status(token) == 200
            await mw.revoke(token)
        statuses = [await status(token) for token in tokens]
        await mw.aclose()
        return statuses

    assert asyncio.run(run()) == [401] * 6


def test_a_full_revocation_set_drops_the_soonest_to_expire_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cache_module, "REVOCATIONS_MIN_SIZE", 3)
    clock = FakeClock(0.0)
    cache = IdentityCache(maxsize=3, ttl=300, clock=clock)
    for key, until in ((b"a", 100.0), (b"b", 50.0), (b"c", 200.0)):
        cache.revoke(key, until)
    with caplog.at_level(logging.WARNING, logger="lwa_middleware"):
        cache.revoke(b"d", 300.0)
    assert [k for k in (b"a", b"b", b"c", b"d") if cache.rejection(k)] == [b"a", b"c", b"d"]
    assert "revocations are held" in caplog.text
    clock.advance(150.0)  # a's token expired: its revocation goes, as it may
    assert cache.rejection(b"a") is None
    assert cache.rejection(b"c") is not None
