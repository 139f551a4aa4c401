"""Where the shared cache's connections come from: a plain Redis URL,
Sentinel, a Redis Cluster, or the application's own ``redis_client`` factory.

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

A ``redis+cluster://`` (``rediss+cluster://`` for TLS) URL names one or more
nodes of a Redis Cluster::

    redis+cluster://[[user]:password@]host:port[,host:port...][/0][?ssl_ca_certs=...]

and builds redis-py's :class:`redis.cluster.RedisCluster` (asyncio: its
:mod:`redis.asyncio.cluster` twin), which learns the slot map from any node
it reaches and follows ``MOVED``/``ASK`` redirections. The cache's keys are
hash-tagged (:mod:`._codec`), so each script touches one slot. The deadlines
are the same; redis-py's cluster retries are off, but on a connection error
it refreshes its slot map before the failure is reported (each node asked
within the connect deadline).

``redis_client`` is a factory the application gives instead of a URL; it is
called as ``redis_client(asyncio=False)`` for a :class:`redis.Redis` or
:class:`redis.cluster.RedisCluster`, and ``redis_client(asyncio=True)`` for
their :mod:`redis.asyncio` twins, each call returning a new client that the
cache then owns (and closes). Its deadlines are the application's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

from .._observe import fields
from .._redis_url import is_cluster_url, is_sentinel, parse_cluster, parse_sentinel

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger("lwa_middleware.shared_cache")

#: The longest ``socket_timeout`` of a ``redis_client`` blocking client not
#: warned about: a WSGI request waits that long (per attempt) on a dead Redis.
SLOW_SOCKET_TIMEOUT: Final = 1.0
_warned_slow = False
_warn_lock = threading.Lock()


class WrongClient(TypeError):
    """``redis_client`` returned something that is not a redis-py client of
    the kind asked for (never echoing it: its repr may hold a password)."""


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is one of redis-py's Redis Cluster clients."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel pool whose ``disconnect()`` also closes its Sentinel clients'
    connections: redis-py leaves them open, to be reported by the garbage
    collector (a ``ResourceWarning``) long after the cache was closed. Only
    the idle ones when only the pool's idle connections go (redis-py does that
    when it learns a primary): another thread may be asking a Sentinel."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.connection_pool.disconnect(inuse_connections)


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """:class:`_SentinelPool` for asyncio."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect(inuse_connections)


@dataclass(frozen=True, slots=True)
class Limits:
    """The deadlines and size of what :func:`make_client` builds.

    :param timeout: each reply (and a blocking pool's wait for a connection).
    :param connect_timeout: each connect (TCP, and TLS handshake).
    :param blocking: a blocking pool (a burst waits up to ``timeout``).
    """

    timeout: float
    connect_timeout: float
    max_connections: int
    blocking: bool = True


def _no_retry(asyncio: bool) -> Any:
    # One attempt only (redis-py retries by default): a retry would multiply
    # the deadline, and a miss is cheap.
    return (
        redis.asyncio.retry.Retry(NoBackoff(), 0) if asyncio else redis.retry.Retry(NoBackoff(), 0)
    )


def _pool(url: str, asyncio: bool, limits: Limits) -> Any:
    """A connection pool (a plain URL's, or Sentinel's) with these limits."""
    options: dict[str, Any] = {
        "retry": _no_retry(asyncio),
        "max_connections": limits.max_connections,
        "socket_timeout": limits.timeout,
        "socket_connect_timeout": limits.connect_timeout,
        # RESP2 keeps the connection handshake to what every Redis speaks.
        "protocol": 2,
    }
    if is_sentinel(url):
        nodes, service, db, credentials = parse_sentinel(url)
        asked = {"socket_timeout": limits.timeout, "socket_connect_timeout": limits.connect_timeout}
        # redis-py's Sentinel classes are untyped.
        module: Any = redis.asyncio.sentinel if asyncio else redis.sentinel
        manager = module.Sentinel(nodes, sentinel_kwargs=asked)
        sentinel_pool: Any = _AsyncSentinelPool if asyncio else _SentinelPool
        return sentinel_pool(service, manager, db=db, **credentials, **options)
    if limits.blocking:
        options["timeout"] = limits.timeout  # the wait for a free connection
        pool_class: Any = (
            redis.asyncio.BlockingConnectionPool if asyncio else redis.BlockingConnectionPool
        )
    else:
        pool_class = redis.asyncio.ConnectionPool if asyncio else redis.ConnectionPool
    return pool_class.from_url(url, **options)


def _cluster_client(url: str, asyncio: bool, limits: Limits) -> Any:
    nodes, first = parse_cluster(url)
    # redis-py's cluster classes are untyped here.
    module: Any = redis.asyncio.cluster if asyncio else redis.cluster
    return module.RedisCluster.from_url(
        first,
        startup_nodes=[module.ClusterNode(host, port) for host, port in nodes],
        retry=_no_retry(asyncio),
        socket_timeout=limits.timeout,
        socket_connect_timeout=limits.connect_timeout,
        max_connections=limits.max_connections,
        protocol=2,
    )


def make_client(settings: Settings, limits: Limits, *, asyncio: bool) -> Any:
    """A new client for the shared cache: the ``redis_client`` factory's, or
    one built for ``redis_url`` with these limits and no retries. A sync
    Cluster client reaches a node now (to learn the slot map): call this
    where a failure counts as Redis failing."""
    factory = settings.redis_client
    if factory is not None:
        client = factory(asyncio=asyncio)
        kinds: Any = (
            (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
            if asyncio
            else (redis.Redis, redis.cluster.RedisCluster)
        )
        if not isinstance(client, kinds):
            flavour = "redis.asyncio" if asyncio else "redis"
            raise WrongClient(
                f"redis_client(asyncio={asyncio}) returned a {type(client).__name__}, not a "
                f"{flavour}.Redis or {flavour}.cluster.RedisCluster"
            )
        if not asyncio:
            _warn_if_slow_to_fail(client)
        if client.get_encoder().decode_responses:
            # Replies would be str: values would read as corrupt and be
            # deleted, revocations included (a revoked token let through).
            if not asyncio:
                close_client(client)
            raise WrongClient(
                f"redis_client(asyncio={asyncio}) returned a client with "
                "decode_responses=True; the shared cache needs bytes replies"
            )
        return client
    url = settings.redis_url
    assert url is not None
    if is_cluster_url(url):
        return _cluster_client(url, asyncio, limits)
    return (redis.asyncio.Redis if asyncio else redis.Redis)(
        connection_pool=_pool(url, asyncio, limits)
    )


def _slow_to_fail(client: Any) -> list[str]:
    """What makes a blocking client of ``redis_client`` wait long on a dead
    Redis: no (or a long) ``socket_timeout``, redis-py's retries left on."""
    if is_cluster(client):
        options = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", {})
        retry = getattr(client, "retry", None)
    else:
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        retry = options.get("retry")
    found = []
    timeout = options.get("socket_timeout", 5.0) if isinstance(options, dict) else None
    if timeout is None or timeout > SLOW_SOCKET_TIMEOUT:
        found.append(f"socket_timeout={timeout}")
    retries = getattr(retry, "get_retries", None)
    if callable(retries) and retries() > 0:
        found.append(f"{retries()} redis-py retries")
    return found


def _warn_if_slow_to_fail(client: Any) -> None:
    """Warn once a process: the deadlines of the factory's clients are the
    application's, and a blocking call (WSGI, the revocation subscriber) has
    no other bound."""
    global _warned_slow
    try:
        found = _slow_to_fail(client)
    except Exception:  # an advisory look only: never fail on it
        return
    if not found:
        return
    with _warn_lock:
        if _warned_slow:
            return
        _warned_slow = True
    logger.warning(
        "redis_client(asyncio=False) returned a client with %s: a dead or "
        "black-holed Redis then holds a WSGI request (and the revocation subscriber) for "
        "every attempt; set socket_timeout and socket_connect_timeout (0.05 to 0.5 s) and "
        "retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)",
        " and ".join(found),
        extra=fields("config_warning"),
    )


def close_client(client: Any) -> None:
    """Close a blocking client this cache made, and its pool."""
    client.close()
    pool = getattr(client, "connection_pool", None)  # a Cluster client has one a node
    if pool is not None:
        pool.disconnect()


async def aclose_client(client: Any) -> None:
    """Close an asyncio client this cache made, and its pool."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()
