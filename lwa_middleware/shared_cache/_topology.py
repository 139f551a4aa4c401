"""Where the shared cache's connections come from: a plain Redis URL, or Sentinel.

``redis://``, ``rediss://`` and ``unix://`` URLs build a blocking connection
pool (``BlockingConnectionPool.from_url``). A ``redis+sentinel://`` URL names
the Sentinels and the monitored service::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]

and builds a :class:`redis.sentinel.SentinelConnectionPool` (asyncio: its
``redis.asyncio`` twin), which asks the Sentinels for the current primary on
every new connection and drops its connections when the primary changes, so
a failover is a few misses, not an outage. The password (and user) are the
data nodes'; Sentinels are asked without credentials. Every deadline is
still this library's (the same socket and connect timeouts, no retries).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

SENTINEL_SCHEME = "redis+sentinel"


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int, dict[str, str]]:
    """``(sentinels, service, db, credentials)`` of a ``redis+sentinel://`` URL;
    ``ValueError`` (never echoing the URL, which may hold a password) if malformed."""
    parts = urlsplit(url)
    netloc = parts.netloc
    credentials: dict[str, str] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            credentials["username"] = unquote(user)
        if password:
            credentials["password"] = unquote(password)
    nodes: list[tuple[str, int]] = []
    for node in netloc.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("each Sentinel must be host:port")
        nodes.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /service or /service/db")
    return nodes, path[0], int(path[1]) if len(path) == 2 else 0, credentials


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel pool whose ``disconnect()`` also closes its Sentinel clients'
    connections: redis-py leaves them open, to be reported by the garbage
    collector (a ``ResourceWarning``) long after the cache was closed."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.connection_pool.disconnect()


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """:class:`_SentinelPool` for asyncio."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect()


def make_pool(
    url: str,
    *,
    asyncio: bool,
    timeout: float,
    connect_timeout: float,
    max_connections: int,
    blocking: bool = True,
) -> Any:
    """A connection pool for ``url`` with these deadlines and no retries."""
    retry: Any = (
        redis.asyncio.retry.Retry(NoBackoff(), 0) if asyncio else redis.retry.Retry(NoBackoff(), 0)
    )
    options: dict[str, Any] = {
        "retry": retry,
        "max_connections": max_connections,
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        # RESP2 keeps the connection handshake to what every Redis speaks.
        "protocol": 2,
    }
    if is_sentinel(url):
        nodes, service, db, credentials = parse_sentinel(url)
        asked = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout}
        # redis-py's Sentinel classes are untyped.
        module: Any = redis.asyncio.sentinel if asyncio else redis.sentinel
        manager = module.Sentinel(nodes, sentinel_kwargs=asked)
        sentinel_pool: Any = _AsyncSentinelPool if asyncio else _SentinelPool
        return sentinel_pool(service, manager, db=db, **credentials, **options)
    if blocking:
        options["timeout"] = timeout  # the wait for a free connection
        pool_class: Any = (
            redis.asyncio.BlockingConnectionPool if asyncio else redis.BlockingConnectionPool
        )
    else:
        pool_class = redis.asyncio.ConnectionPool if asyncio else redis.ConnectionPool
    return pool_class.from_url(url, **options)
