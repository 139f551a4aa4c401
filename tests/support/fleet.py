"""The Redis tier's shared parts: redis-server fixtures, helpers, a per-flavour factory.

The fleet and trust modules (``test_shared_cache``, ``test_fleet_*``,
``test_trust_*``) import what they use from here, fixtures included, so no
test module imports from another.

``redis_bin`` / ``_module_redis``
    the redis-server binary, and one server per test module;
``redis_srv`` / ``rclient``
    that server emptied for the test, and a client of it;
``own_redis``
    a redis-server of the test's own, to kill and restart;
``http``
    an HTTP client for the servers the tests start;
``make``
    ``make(**options)`` -> ``(middleware, server context manager)``, once per
    flavour (ASGI on uvicorn, WSGI on wsgiref).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
import redis
from conftest import ROUTES
from shared_cache_support import uvicorn_server, wsgi_server

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, revalidate
from lwa_middleware.testing import LWAEmulator
from support.private import STREAM, private_fleet
from support.redis_servers import RedisServer, redis_binary, wait_for

SHARED_LOGGER = "lwa_middleware.shared_cache"
#: Generous Redis deadline for tests that count exact LWA calls: the test
#: machine is shared, and a scheduling hiccup over the 50 ms default would
#: (correctly) turn a shared hit into a miss. The tests about dead and
#: black-holed Redis keep the default.
SLACK = 0.5


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_bin() -> str:
    binary = redis_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; the shared-cache tests need it on CI")
        pytest.skip("redis-server is not installed")
    return binary


@pytest.fixture(scope="module")
def _module_redis(redis_bin: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_bin)
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_srv(_module_redis: RedisServer) -> RedisServer:
    """The module's redis-server, empty."""
    with _module_redis.client() as client:
        client.flushall()
    return _module_redis


@pytest.fixture
def rclient(redis_srv: RedisServer) -> Iterator[redis.Redis]:
    with redis_srv.client() as client:
        yield client


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


# -- helpers -----------------------------------------------------------------


def call(http: httpx2.Client, base: str, path: str, token: str) -> httpx2.Response:
    return http.get(base + path, headers={"Authorization": f"Bearer {token}"})


def timed(http: httpx2.Client, base: str, path: str, token: str) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = call(http, base, path, token)
    return response, time.monotonic() - started


def user_id(response: httpx2.Response) -> str:
    return str(response.json()["identity"]["user_id"])


def all_values(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key with its value (every key we write is a plain string, but for
    the revocation log, a stream checked in ``test_fleet_revocation.py``)."""
    found: dict[bytes, bytes] = {}
    for key in client.scan_iter(count=1000):
        if key == STREAM.encode():
            continue
        assert client.type(key) == b"string", key
        value = client.get(key)
        if value is not None:
            found[key] = value
    return found


def keys_of(client: redis.Redis, kind: str) -> list[bytes]:
    # lwa:v1:{<bucket>}:<kind>:<hex>, the bucket a Redis Cluster hash tag.
    return sorted(client.scan_iter(match=f"lwa:v1:{{???}}:{kind}:*", count=1000))


def kind_of(key: bytes) -> bytes:
    """``id`` of ``lwa:v1:{<bucket>}:id:<hex>``, ``epoch`` of a bucket's own
    ``lwa:v1:{<bucket>}:epoch``; a key of the whole data set, whole."""
    found = re.fullmatch(rb"lwa:v1:\{[0-9a-f]{3}\}:(\w+)(:[0-9a-f]{64})?", key)
    return found.group(1) if found else key


def opened(value: bytes) -> Any:
    """The JSON inside a stored value: after its 64 hex characters of MAC."""
    assert len(value) > 64
    assert all(c in b"0123456789abcdef" for c in value[:64]), value[:64]
    return json.loads(value[64:])


def failure_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The shared cache's warnings about Redis failing (not the start-up one)."""
    return [
        r
        for r in caplog.records
        if r.name == SHARED_LOGGER and "cache_key_secret" not in r.getMessage()
    ]


def settle(seconds: float = 1.1) -> None:
    """Sleep past the shared cache's back-off after a Redis failure."""
    time.sleep(seconds)


def share_then_revoke(http: httpx2.Client, lwa_emulator: LWAEmulator, a: Any, w: Any) -> None:
    """ASGI ``a`` and WSGI ``w`` on one Redis, served here: a token resolved
    by one is a shared hit for the other (LWA once), and revoked on ``w`` it
    is refused by ``a`` at once (pushed); no Redis error on either."""
    token = lwa_emulator.issue_token()
    before = lwa_emulator.calls["tokeninfo"]
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        assert call(http, ua, "/me", token).status_code == 200
        assert call(http, uw, "/me", token).status_code == 200
        assert w.stats.shared_hits == 1
        assert lwa_emulator.calls["tokeninfo"] == before + 1
        wait_for(lambda: private_fleet(a).subscribed and private_fleet(w).subscribed, 20)
        w.revoke(token)
        wait_for(lambda: call(http, ua, "/me", token).status_code == 401, 5)
    for mw in (a, w):
        assert mw.stats.redis_errors == 0, mw.stats.snapshot()
    w.close()


# -- per flavour -----------------------------------------------------------------

TRUST_ROUTES: dict[str, Any] = dict(ROUTES, **{"/pay": revalidate()})


@pytest.fixture(params=["asgi", "wsgi"])
def make(
    request: pytest.FixtureRequest,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Any:
    """``make(**options)`` -> ``(middleware, server context manager)``, per flavour."""
    made: list[Any] = []

    def build(**options: Any) -> tuple[Any, Any]:
        options.setdefault("routes", TRUST_ROUTES)
        if request.param == "asgi":
            mw: Any = make_asgi(**options)
            made.append(mw)
            return mw, uvicorn_server
        mw = make_wsgi(**options)
        made.append(mw)
        return mw, wsgi_server

    yield build
    for mw in made:
        # Also the ASGI ones: a revoke() after their server shut down starts
        # their subscriber again, which would outlive the test (and answer
        # the next test's FLUSHALL within its 1 s data-loss check).
        mw.resolver.close()


@pytest.fixture
def own_redis(redis_bin: str) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill and restart."""
    server = RedisServer(redis_bin)
    server.start()
    yield server
    server.close()
