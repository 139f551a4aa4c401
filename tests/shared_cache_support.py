"""Old name of the shared-cache helpers, kept for the modules (and the
benchmark) that import it: everything lives in the ``support`` package now."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from support.redis_servers import (
    WORKER_APP,
    BlackHole,
    RedisServer,
    Workers,
    free_port,
    redis_binary,
)
from support.servers import closing_on_shutdown, serve_uvicorn, serve_wsgiref

__all__ = [
    "WORKER_APP",
    "BlackHole",
    "RedisServer",
    "Workers",
    "closing_on_shutdown",
    "free_port",
    "redis_binary",
    "uvicorn_server",
    "wsgi_server",
]


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """uvicorn in a thread, closing the middleware at lifespan shutdown."""
    with serve_uvicorn(app, close_on_shutdown=True, log_level="warning") as url:
        yield url


def wsgi_server(app: Callable[..., Any]) -> contextlib.AbstractContextManager[str]:
    """A threaded ``wsgiref`` server."""
    return serve_wsgiref(app)
