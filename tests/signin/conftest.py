"""Every SignIn a sign-in test builds is closed after it (its HTTP client and
the recorder transport behind it), so the suite leaves no socket behind; and
the real redis-server of the Redis tests (one a module, emptied for each test)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from lwa_middleware.signin import SignIn
from tests.shared_cache_support import RedisServer, redis_binary


@pytest.fixture(autouse=True)
def _close_signins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[SignIn] = []
    original = SignIn.__init__

    def tracked(self: SignIn, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SignIn, "__init__", tracked)
    yield
    for signin in made:
        signin.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; the Redis session tests need it on CI")
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary)
    server.start()
    yield server
    server.close()


@pytest.fixture
def rclient(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as client:
        client.flushall()
        yield client
