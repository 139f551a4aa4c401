"""Fixtures for the reliability suite: one calling convention over both middlewares.

A *caller* (:mod:`support.callers`) wraps a middleware built by the shared
``make_asgi``/``make_wsgi`` fixtures (so it talks to the real emulator) and
sends it requests the way a real server would.

Every test that takes ``caller_kind`` runs once per middleware.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.callers import AsgiCaller, Caller, Reply, WsgiCaller
from support.leaks import Secrets

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware

REPO = Path(__file__).resolve().parents[2]

#: Where ``Retry-After`` comes from when LWA itself did not send one.
RETRY_AFTER = 4




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
    Secrets(*secrets).assert_logs_clean(records, quiet=True)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger, the HTTP clients' included, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    loggers = ("aiohttp", "asyncio", "httpx2", "httpcore2", "lwa_middleware", "uvicorn")
    for name in (*loggers, "waitress"):
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
