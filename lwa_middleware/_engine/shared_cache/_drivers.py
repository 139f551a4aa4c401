"""The two drivers: they carry the plans' steps to redis-py, and nothing else.

:class:`SyncSharedCache` on the blocking client, :class:`AsyncSharedCache`
on the asyncio one. Each has one ``_drive`` (run a plan's calls and pauses,
throw a failed call into the plan) and one-line public methods; what to ask
Redis, when to retry and what a reply means is all in :mod:`._plans`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import types
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from .._loopbound import keep_until_shutdown
from .._redis_url import is_cluster_url, is_tls
from ._health import DURABLE_TIMEOUT, classify
from ._plans import _Plans
from ._scripts import SCRIPTS, UNFLAGGED, flags_unknown
from ._steps import _T, _Call, _Listen, _Plan, _Sleep, _Subscribe
from ._tier import Found
from ._topology import (
    Limits,
    aclose_client,
    close_client,
    is_cluster,
    make_client,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..errors import AuthError
    from ..flow import Resolved
    from ._fleet import Fleet


#: Seconds a TLS connection (TCP and handshake) may take to a ``rediss://``
#: Redis: its own budget, as a handshake needs more than a 50 ms reply
#: deadline. Connections are pooled and the breaker stops retries, so this
#: is paid rarely.
TLS_CONNECT_TIMEOUT = 0.5
#: Seconds an asyncio Cluster client may take to learn the slot map, once a
#: loop (the blocking client learns it when made, within its own deadlines).
CLUSTER_INIT_TIMEOUT = 1.0


def connect_timeout(settings: Settings, durable: bool = False) -> float:
    """The connect deadline: ``redis_timeout``, or the TLS budget for ``rediss://``."""
    timeout = DURABLE_TIMEOUT if durable else settings.redis_timeout
    tls = settings.redis_url is not None and is_tls(settings.redis_url)
    return max(timeout, TLS_CONNECT_TIMEOUT) if tls else timeout


def _make(settings: Settings, durable: bool, *, asyncio: bool) -> Any:
    """A new client (a plain URL's, Sentinel's, a Cluster's or the
    ``redis_client`` factory's) with this cache's deadlines."""
    timeout = DURABLE_TIMEOUT if durable else settings.redis_timeout
    connect = connect_timeout(settings, durable)
    if asyncio and settings.redis_url is not None and is_cluster_url(settings.redis_url):
        # Learning the slot map reads the command table (COMMAND, ~100 KB),
        # which 50 ms did not allow under load: every worker of a fresh fleet
        # then skipped Redis (issue 24, item 6). Nor did 50 ms always allow
        # its connect, under a load average of 10: that worker's first burst
        # cost a second lookup. Each asyncio round trip is bounded by
        # asyncio.timeout anyway, the socket's only by these.
        timeout = max(timeout, CLUSTER_INIT_TIMEOUT)
        connect = max(connect, CLUSTER_INIT_TIMEOUT)
    limits = Limits(
        timeout=timeout,
        connect_timeout=connect,
        max_connections=2 if durable else max(8, settings.max_concurrent_lookups),
    )
    return make_client(settings, limits, asyncio=asyncio)


def _subscribed(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "subscribe"


def _published(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "message"


def _unflag(conn: _Client | _LoopClient, name: str, exc: Exception) -> bool:
    """A Redis < 7 refused flagged script ``name``: use it unflagged from now on."""
    if name not in UNFLAGGED or not flags_unknown(exc):
        return False
    conn.scripts[name] = conn.client.register_script(UNFLAGGED[name])
    return True


def _script(conn: _Client, name: str, keys: Any, args: Any) -> Any:
    """Run registered script ``name``. On a Cluster, one a node lacks is
    loaded on the keys' node only: redis-py would load it on every primary,
    which fails while one is dead (a revoke() on a healthy node raised during
    a failover). SCRIPT LOAD, not EVAL: the documented ACL grants
    ``+script|load +evalsha`` and no ``+eval``."""
    script = conn.scripts[name]
    if not conn.cluster:
        return script(keys=keys, args=args)
    try:
        return conn.client.evalsha(script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        node = conn.client.get_node_from_key(keys[0])
        conn.client.execute_command("SCRIPT LOAD", script.script, target_nodes=node)
        return conn.client.evalsha(script.sha, len(keys), *keys, *args)


def _reconnect(client: Any) -> Any:
    """The pool to drop after READONLY (a failover), if the client has one."""
    return getattr(client, "connection_pool", None)


@dataclass(slots=True)
class _Wait:
    """A plan's lease wait: the client it subscribed through, and its pub/sub."""

    conn: _Client | None = None
    pubsub: Any = None  # redis-py's pubsub is untyped


class _Client:
    """A blocking client and its registered scripts; lease waits subscribe
    through a client of their own, made on the first wait (a wait lasts up
    to the holder's deadline, and must not hold a connection requests need)."""

    __slots__ = ("_durable", "_lock", "_settings", "_waits", "client", "cluster", "scripts")

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        self._settings, self._durable = settings, durable
        self.client = _make(settings, durable, asyncio=False)
        self.cluster = is_cluster(self.client)
        self.scripts = {name: self.client.register_script(s) for name, s in SCRIPTS.items()}
        self._waits: Any = None
        self._lock = threading.Lock()

    def waits(self) -> Any:
        with self._lock:
            if self._waits is None:
                self._waits = _make(self._settings, self._durable, asyncio=False)
            return self._waits

    def drop_waits(self) -> None:
        """A wait failed: make the next one on a new client. A Cluster client
        keeps the slot map it learnt, dead node included, for good: after a
        failover its subscribe would fail (and reopen the breaker) forever."""
        with self._lock:
            waits, self._waits = self._waits, None
        if waits is not None:
            with contextlib.suppress(Exception):
                close_client(waits)

    def close(self) -> None:
        close_client(self.client)
        if self._waits is not None:
            close_client(self._waits)


class SyncSharedCache(_Plans):
    """The shared cache for threads, on redis-py's blocking client.

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(
        self, settings: Settings, *, lease: bool = True, fleet: Fleet | None = None
    ) -> None:
        super().__init__(settings, lease=lease, fleet=fleet)
        # Made on first use (a Cluster client reaches a node when made, and
        # that may fail like any call): the request path's, and (True) those
        # of revoke() and invalidate(), with the longer DURABLE_TIMEOUT.
        self._conns: dict[bool, _Client] = {}
        self._conns_lock = threading.Lock()

    def _connection(self, durable: bool) -> _Client:
        conn = self._conns.get(durable)
        if conn is None:
            with self._conns_lock:
                conn = self._conns.get(durable)
                if conn is None:
                    conn = self._connect(durable)
        return conn

    def _connect(self, durable: bool) -> _Client:
        """A new client for ``durable`` (under ``_conns_lock``)."""
        conn = self._conns[durable] = _Client(self.settings, durable)
        self.cluster = is_cluster(conn.client)
        if self.cluster and not durable and True not in self._conns:
            # revoke()'s client too, while the Cluster answers: made later,
            # it reads the command table from a node that may be dead by
            # then (a failover), and every revoke() raised until the
            # promotion. Else, later.
            with contextlib.suppress(redis.RedisError):
                self._conns[True] = _Client(self.settings, True)
        return conn

    def _drive(self, plan: _Plan[_T], durable: bool = False) -> _T:
        wait = _Wait()
        try:
            step = next(plan)
            while True:
                reply: Any = None
                failure: Exception | None = None
                try:
                    reply = self._step(step, durable, wait)
                except Exception as exc:
                    failure = exc
                # The plan decides what a failure means (a miss, a retry). It
                # is thrown in outside the handler, so an error the plan
                # raises is not chained to it.
                step = plan.send(reply) if failure is None else plan.throw(failure)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        finally:
            if wait.pubsub is not None:
                wait.pubsub.close()

    def _step(self, step: _Call | _Sleep | _Subscribe | _Listen, durable: bool, wait: _Wait) -> Any:
        """Carry out one step of a plan: its reply (``None`` but for a round
        trip or a listen), or raise its failure."""
        if isinstance(step, _Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, _Call):
            return self._call(step, durable)
        try:
            if isinstance(step, _Subscribe):
                wait.conn = conn = self._connection(durable)
                self._subscribe(conn, wait, step.channel)
                return None
            return self._listen(wait.pubsub, step.seconds)
        except Exception:
            if wait.conn is not None:
                wait.conn.drop_waits()
            raise

    def _subscribe(self, conn: _Client, wait: _Wait, channel: str) -> None:
        waits: Any = conn.waits()  # redis-py's pubsub() is untyped
        if wait.pubsub is not None:  # a new holder: one channel at a time
            with contextlib.suppress(Exception):
                wait.pubsub.close()
        wait.pubsub = waits.pubsub()
        wait.pubsub.subscribe(channel)
        # Confirmed before the plan reads again, so no publish is missed.
        if not _subscribed(wait.pubsub.get_message(timeout=self.settings.redis_timeout)):
            raise redis.TimeoutError("SUBSCRIBE was not confirmed in time")

    def _call(self, step: _Call, durable: bool) -> Any:
        """One round trip; after READONLY (a failover: the old primary is a
        replica now) the pool is dropped, so the next one finds the new primary."""
        conn: _Client | None = None
        try:
            conn = self._connection(durable)
            if step.name not in conn.scripts:
                return conn.client.delete(*step.keys)
            try:
                return _script(conn, step.name, step.keys, step.args)
            except redis.ResponseError as exc:
                if not _unflag(conn, step.name, exc):
                    raise
                return _script(conn, step.name, step.keys, step.args)
        except Exception as exc:
            pool = _reconnect(conn.client) if conn is not None else None
            if classify(exc) == "readonly" and pool is not None:
                pool.disconnect()
                self._emit("redis_reconnect")
            raise

    @staticmethod
    def _listen(pubsub: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if _published(pubsub.get_message(timeout=left)):
                return True
        return False

    def get(self, token: str, revocation_only: bool = False, lease: bool = True) -> Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA).

        With ``revocation_only`` (a ``revalidate()`` route) only a revocation
        is read: the identity must come from LWA. Without ``lease`` a miss
        neither takes the lease nor waits on another worker's.
        """
        return self._drive(self._get(token, revocation_only, lease))

    def put(self, token: str, resolved: Resolved) -> None:
        """Share a resolved token and release this worker's lease on it."""
        self._drive(self._put(token, resolved))

    def record_failure(self, token: str, error: AuthError) -> None:
        """Drop the identity of a rejected token and share a remembered
        rejection; for anything else only release the lease."""
        self._drive(self._record_failure(token, error))

    def discard(self, token: str) -> None:
        """Forget ``token`` for every worker. Tried even while backing off, with
        retries; raise :class:`SharedCacheError` if Redis could not be written."""
        self._drive(self._discard(token), durable=True)

    def revoke(self, token: str, seconds: float) -> None:
        """Refuse ``token`` on every worker for ``seconds`` (see :meth:`discard`).

        The revocation is also remembered by this process, and published again
        after Redis lost its data.
        """
        self._drive(self._revoke(token, seconds), durable=True)

    def close(self) -> None:
        """Close the pooled Redis connections (a later call makes new ones)."""
        with self._conns_lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()


class _LoopClient:
    """The asyncio client of one event loop: its connections belong to it."""

    __slots__ = ("_durable", "_settings", "_waits", "client", "keeper", "scripts")

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        self._settings, self._durable = settings, durable
        self.client = _make(settings, durable, asyncio=True)
        self.scripts = {name: self.client.register_script(s) for name, s in SCRIPTS.items()}
        self._waits: Any = None
        #: Closes the client when its loop shuts down, if aclose() did not.
        self.keeper: types.AsyncGeneratorType[None, None] | None = None

    async def waits(self) -> Any:
        if self._waits is None:
            waits = _make(self._settings, self._durable, asyncio=True)
            if is_cluster(waits):
                # Its pub/sub needs the slot map: learnt within the Cluster's
                # own budget, not a reply's (a fresh fleet's first waits
                # failed on it, and every worker then asked LWA).
                try:
                    async with asyncio.timeout(CLUSTER_INIT_TIMEOUT):
                        await waits.initialize()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await aclose_client(waits)
                    raise
            if self._waits is None:
                self._waits = waits
            else:  # another task of this loop made one meanwhile
                await aclose_client(waits)
        return self._waits

    async def drop_waits(self) -> None:
        """:meth:`_Client.drop_waits`, on this loop."""
        waits, self._waits = self._waits, None
        if waits is not None:
            with contextlib.suppress(Exception):
                await aclose_client(waits)

    async def aclose(self) -> None:
        await aclose_client(self.client)
        if self._waits is not None:
            await aclose_client(self._waits)


class AsyncSharedCache(_Plans):
    """The shared cache for asyncio, on redis-py's asyncio client.

    Connections are kept per event loop, so an app driven by several loops
    in turn (Starlette's ``TestClient`` makes one per request) keeps working.
    Each Redis round trip is also bounded as a whole by ``asyncio.timeout``
    (pool wait, connect and reply: twice ``redis_timeout`` plus the connect
    deadline, the TLS budget for ``rediss://``).

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(
        self, settings: Settings, *, lease: bool = True, fleet: Fleet | None = None
    ) -> None:
        super().__init__(settings, lease=lease, fleet=fleet)
        self._deadline = 2 * settings.redis_timeout + connect_timeout(settings)
        url = settings.redis_url
        self._cluster_url = url is not None and is_cluster_url(url)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        # revoke() and invalidate(): connections of their own, longer deadline.
        self._durable_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    async def _loop_client(self, durable: bool = False) -> _LoopClient:
        loop = asyncio.get_running_loop()
        loops = self._durable_loops if durable else self._loops
        found = loops.get(loop)
        if found is None:
            made = _LoopClient(self.settings, durable)
            if is_cluster(made.client):
                self.cluster = True
                try:
                    # The slot map, learnt once, within a budget of its own.
                    async with asyncio.timeout(max(self._deadline, CLUSTER_INIT_TIMEOUT)):
                        await made.client.initialize()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await made.aclose()
                    raise
            found = loops[loop] = made
            found.keeper = await keep_until_shutdown(found.aclose)
        return found

    async def _drop_waits(self, durable: bool) -> None:
        found = (self._durable_loops if durable else self._loops).get(asyncio.get_running_loop())
        if found is not None:
            await found.drop_waits()

    def _step_deadline(self, durable: bool) -> float:
        """Seconds a round trip may take. A process's first contact with a
        Cluster (until COLD_START seconds after its first success) takes the
        Cluster's own budget: its first calls also connect to each node, load
        the scripts there and agree on the key secret, which the reply
        deadline did not allow under load (a fresh fleet's first bursts cost
        2 to 4 lookups a token, issue 24, item 6). Once warm, the reply
        deadline: a failover costs no more."""
        if durable:
            return DURABLE_TIMEOUT
        if not self.warm and self._cluster_url:
            return max(self._deadline, CLUSTER_INIT_TIMEOUT)
        return self._deadline

    async def _drive(self, plan: _Plan[_T], durable: bool = False) -> _T:
        wait = _Wait()
        try:
            step = next(plan)
            while True:
                reply: Any = None
                failure: Exception | None = None
                try:
                    reply = await self._step(step, durable, wait)
                except Exception as exc:
                    failure = exc
                # As in SyncSharedCache._drive.
                step = plan.send(reply) if failure is None else plan.throw(failure)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        finally:
            if wait.pubsub is not None:
                with contextlib.suppress(Exception):  # a broken connection
                    await wait.pubsub.aclose()

    async def _step(
        self, step: _Call | _Sleep | _Subscribe | _Listen, durable: bool, wait: _Wait
    ) -> Any:
        """As :meth:`SyncSharedCache._step`, each bounded by ``asyncio.timeout``."""
        deadline = self._step_deadline(durable)
        if isinstance(step, _Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, _Call):
            return await self._call(step, durable, deadline)
        try:
            if isinstance(step, _Subscribe):
                await self._subscribe(wait, step.channel, durable, deadline)
                return None
            async with asyncio.timeout(step.seconds + deadline):
                return await self._listen(wait.pubsub, step.seconds)
        except Exception:
            await self._drop_waits(durable)
            raise

    async def _subscribe(self, wait: _Wait, channel: str, durable: bool, deadline: float) -> None:
        conn = await self._loop_client(durable)
        waits = await conn.waits()
        async with asyncio.timeout(deadline):
            if wait.pubsub is not None:  # a new holder: one channel at a time
                with contextlib.suppress(Exception):
                    await wait.pubsub.aclose()
            wait.pubsub = waits.pubsub()
            await wait.pubsub.subscribe(channel)
            confirmed = await wait.pubsub.get_message(
                timeout=self.settings.redis_timeout if self.warm else deadline
            )
        if not _subscribed(confirmed):
            raise redis.TimeoutError("SUBSCRIBE was not confirmed in time")

    async def _call(self, step: _Call, durable: bool, deadline: float) -> Any:
        """As :meth:`SyncSharedCache._call`."""
        try:
            conn = await self._loop_client(durable)
            async with asyncio.timeout(deadline):
                if step.name not in conn.scripts:
                    return await conn.client.delete(*step.keys)
                try:
                    return await conn.scripts[step.name](keys=step.keys, args=step.args)
                except redis.ResponseError as exc:
                    if not _unflag(conn, step.name, exc):
                        raise
                    return await conn.scripts[step.name](keys=step.keys, args=step.args)
        except Exception as exc:
            if classify(exc) == "readonly":
                pool = _reconnect((await self._loop_client(durable)).client)
                if pool is not None:
                    await pool.disconnect()
                    self._emit("redis_reconnect")
            raise

    @staticmethod
    async def _listen(pubsub: Any, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if _published(await pubsub.get_message(timeout=left)):
                return True
        return False

    async def get(self, token: str, revocation_only: bool = False, lease: bool = True) -> Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA); see
        :meth:`SyncSharedCache.get`."""
        return await self._drive(self._get(token, revocation_only, lease))

    async def put(self, token: str, resolved: Resolved) -> None:
        """Share a resolved token and release this worker's lease on it."""
        await self._drive(self._put(token, resolved))

    async def record_failure(self, token: str, error: AuthError) -> None:
        """As :meth:`SyncSharedCache.record_failure`."""
        await self._drive(self._record_failure(token, error))

    async def discard(self, token: str) -> None:
        """As :meth:`SyncSharedCache.discard`."""
        await self._drive(self._discard(token), durable=True)

    async def revoke(self, token: str, seconds: float) -> None:
        """As :meth:`SyncSharedCache.revoke`."""
        await self._drive(self._revoke(token, seconds), durable=True)

    async def aclose(self) -> None:
        """Close this loop's Redis connections; other loops close theirs as they shut down."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        clients = [*self._loops.items(), *self._durable_loops.items()]
        self._loops.clear()
        self._durable_loops.clear()
        for owner, conn in clients:
            if owner is loop and conn.keeper is not None:
                await conn.keeper.aclose()  # closes conn
