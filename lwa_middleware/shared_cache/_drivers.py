"""The two drivers: they carry the plans' steps to redis-py, and nothing else.

:class:`SyncSharedCache` on the blocking client, :class:`AsyncSharedCache`
on the asyncio one. Each has one ``_drive`` (run a plan's calls and pauses,
throw a failed call into the plan) and one-line public methods; what to ask
Redis, when to retry and what a reply means is all in :mod:`._plans`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
import weakref
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry

from .._loopbound import keep_until_shutdown
from ._health import DURABLE_TIMEOUT, classify
from ._plans import _Found, _Plans
from ._scripts import SCRIPTS
from ._steps import _T, _Listen, _Plan, _Sleep, _Subscribe
from ._topology import make_pool

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


def connect_timeout(settings: Settings, durable: bool = False) -> float:
    """The connect deadline: ``redis_timeout``, or the TLS budget for ``rediss://``."""
    timeout = DURABLE_TIMEOUT if durable else settings.redis_timeout
    url = settings.redis_url or ""
    return max(timeout, TLS_CONNECT_TIMEOUT) if url.startswith("rediss:") else timeout


def _pool(settings: Settings, durable: bool = False, *, asyncio: bool = False) -> Any:
    """A pool (a plain URL's, or Sentinel's) with this cache's deadlines."""
    url = settings.redis_url
    assert url is not None
    timeout = DURABLE_TIMEOUT if durable else settings.redis_timeout
    return make_pool(
        url,
        asyncio=asyncio,
        timeout=timeout,
        connect_timeout=connect_timeout(settings, durable),
        max_connections=2 if durable else max(8, settings.max_concurrent_lookups),
    )


def _subscribed(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "subscribe"


def _published(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "message"


class _Client:
    """A blocking client, its pool and its registered scripts; lease waits
    subscribe through a pool of their own (a wait lasts up to the holder's
    deadline, and must not hold a connection requests need)."""

    __slots__ = ("client", "keeper", "pool", "scripts", "waits")

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        # One attempt only (redis-py retries by default): a retry would
        # multiply the deadline, and a miss is cheap.
        self.pool = _pool(settings, durable)
        self.client = redis.Redis(connection_pool=self.pool)
        self.scripts = {name: self.client.register_script(s) for name, s in SCRIPTS.items()}
        self.waits = redis.Redis(connection_pool=_pool(settings, durable))

    def close(self) -> None:
        self.client.close()
        self.pool.disconnect()
        self.waits.connection_pool.disconnect()


class SyncSharedCache(_Plans):
    """The shared cache for threads, on redis-py's blocking client.

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(
        self, settings: Settings, *, lease: bool = True, fleet: Fleet | None = None
    ) -> None:
        super().__init__(settings, lease=lease, fleet=fleet)
        self._conn = _Client(settings)
        # revoke() and invalidate() have connections of their own, with the
        # longer DURABLE_TIMEOUT deadline.
        self._durable_conn = _Client(settings, durable=True)

    def _drive(self, plan: _Plan[_T], durable: bool = False) -> _T:
        conn = self._durable_conn if durable else self._conn
        pubsub: Any = None
        try:
            step = next(plan)
            while True:
                reply: Any = None
                failure: Exception | None = None
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                elif isinstance(step, _Subscribe):
                    try:
                        waits: Any = conn.waits  # redis-py's pubsub() is untyped
                        if pubsub is not None:  # a new holder: one channel at a time
                            with contextlib.suppress(Exception):
                                pubsub.close()
                        pubsub = waits.pubsub()
                        pubsub.subscribe(step.channel)
                        # Confirmed before the plan reads again, so no publish is missed.
                        if not _subscribed(pubsub.get_message(timeout=self.settings.redis_timeout)):
                            raise redis.TimeoutError("SUBSCRIBE was not confirmed in time")
                    except Exception as exc:
                        failure = exc
                elif isinstance(step, _Listen):
                    try:
                        reply = self._listen(pubsub, step.seconds)
                    except Exception as exc:
                        failure = exc
                else:
                    try:
                        if step.name in conn.scripts:
                            reply = conn.scripts[step.name](keys=step.keys, args=step.args)
                        else:
                            reply = conn.client.delete(*step.keys)
                    except Exception as exc:
                        failure = exc
                        if classify(exc) == "readonly":
                            # A failover: the old primary is a replica now.
                            conn.pool.disconnect()
                            self._emit("redis_reconnect")
                # The plan decides what a failure means (a miss, a retry). It
                # is thrown in outside the handler, so an error the plan
                # raises is not chained to it.
                step = plan.send(reply) if failure is None else plan.throw(failure)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        finally:
            if pubsub is not None:
                pubsub.close()

    @staticmethod
    def _listen(pubsub: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if _published(pubsub.get_message(timeout=left)):
                return True
        return False

    def get(self, token: str, revocation_only: bool = False) -> _Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA).

        With ``revocation_only`` (a ``revalidate()`` route) only a revocation
        is read: the identity must come from LWA.
        """
        return self._drive(self._get(token, revocation_only))

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
        """Close the pooled Redis connections."""
        self._conn.close()
        self._durable_conn.close()


class _LoopClient:
    """The asyncio client of one event loop: its connections belong to it."""

    __slots__ = ("client", "keeper", "pool", "scripts", "waits")

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        self.pool = _pool(settings, durable, asyncio=True)
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.scripts = {name: self.client.register_script(s) for name, s in SCRIPTS.items()}
        self.waits = redis.asyncio.Redis(connection_pool=_pool(settings, durable, asyncio=True))
        #: Closes the client when its loop shuts down, if aclose() did not.
        self.keeper: types.AsyncGeneratorType[None, None] | None = None

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.pool.disconnect()
        await self.waits.aclose()
        await self.waits.connection_pool.disconnect()


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
            found = loops[loop] = _LoopClient(self.settings, durable)
            found.keeper = await keep_until_shutdown(found.aclose)
        return found

    async def _drive(self, plan: _Plan[_T], durable: bool = False) -> _T:
        deadline = DURABLE_TIMEOUT if durable else self._deadline
        pubsub: Any = None
        try:
            step = next(plan)
            while True:
                reply: Any = None
                failure: Exception | None = None
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, _Subscribe):
                    try:
                        conn = await self._loop_client(durable)
                        async with asyncio.timeout(deadline):
                            if pubsub is not None:  # a new holder: one channel at a time
                                with contextlib.suppress(Exception):
                                    await pubsub.aclose()
                            pubsub = conn.waits.pubsub()
                            await pubsub.subscribe(step.channel)
                            confirmed = await pubsub.get_message(
                                timeout=self.settings.redis_timeout
                            )
                        if not _subscribed(confirmed):
                            raise redis.TimeoutError("SUBSCRIBE was not confirmed in time")
                    except Exception as exc:
                        failure = exc
                elif isinstance(step, _Listen):
                    try:
                        async with asyncio.timeout(step.seconds + deadline):
                            reply = await self._listen(pubsub, step.seconds)
                    except Exception as exc:
                        failure = exc
                else:
                    try:
                        conn = await self._loop_client(durable)
                        async with asyncio.timeout(deadline):
                            if step.name in conn.scripts:
                                script = conn.scripts[step.name]
                                reply = await script(keys=step.keys, args=step.args)
                            else:
                                reply = await conn.client.delete(*step.keys)
                    except Exception as exc:
                        failure = exc
                        if classify(exc) == "readonly":
                            conn = await self._loop_client(durable)
                            await conn.pool.disconnect()
                            self._emit("redis_reconnect")
                # As in SyncSharedCache._drive.
                step = plan.send(reply) if failure is None else plan.throw(failure)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):  # a broken connection
                    await pubsub.aclose()

    @staticmethod
    async def _listen(pubsub: Any, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if _published(await pubsub.get_message(timeout=left)):
                return True
        return False

    async def get(self, token: str, revocation_only: bool = False) -> _Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA); see
        :meth:`SyncSharedCache.get`."""
        return await self._drive(self._get(token, revocation_only))

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
