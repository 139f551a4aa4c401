"""Resolution: from a token to a cached :class:`~.cache.Entry`, once per process.

:class:`Resolver` owns the caches, the circuit breaker, the statistics, the
upstream drivers and the shared cache. Given a token and a route's policy it
answers with an entry or raises an :class:`~.errors.AuthError`. The order of
business for one token:

1. the in-process cache (a fresh entry that serves the policy, or a
   remembered rejection);
2. a lookup in flight for the same token, which it joins
   (:mod:`.singleflight`);
3. the shared Redis cache, when configured (on a ``revalidate()`` route only
   a shared revocation is read there: the identity always comes from LWA).
   Under asyncio, with no flight to join, Redis is read first, taking no
   lease: a hit needs no flight task; a miss then flies, reading again with
   the lease;
4. LWA, through :func:`~.flow.resolution_flow`, unless the breaker is open;
5. the answer written back: memory, and Redis.

With Redis, a :class:`~.shared_cache.Fleet` subscriber applies other workers'
``revoke()``/``invalidate()`` to this process's cache as they happen; while
it is connected local copies live ``cache_ttl``, else ``local_cache_ttl``.

Steps 3 to 5 (and ``revoke``/``invalidate``) are written once, as *plans*:
generators that yield what they need done (ask LWA, call the shared cache)
and are sent the results, in the style of :mod:`.flow`. A blocking driver
(:meth:`Resolver._drive`) and an async one (:meth:`Resolver._adrive`, on any
anyio backend) only carry them out.

Only rejections are remembered; transient failures never are. With
``stale_if_error`` an LWA failure falls back to a cached identity whose token
has not yet expired, never to one LWA rejected.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.to_thread
import sniffio

from . import _observe, _otel
from ._controls import AsyncControls, BlockingControls
from ._observe import logger
from ._plan_steps import (
    AskLWA,
    Plan,
    Share,
    advance,
    ask,
    flight_slot,
    outcome,
    sufficient,
)
from .breaker import CircuitBreaker, Throttle
from .cache import Entry, IdentityCache, token_digest
from .errors import AuthError, BreakerOpen, InvalidToken, Saturated, UpstreamUnavailable
from .flow import Flow, Lookup, Outcome, Resolved, UpstreamRequest, resolution_flow
from .routes import Policy
from .singleflight import TaskFlights, ThreadFlights
from .stats import Stats
from .tokens import looks_like_lwa_token

if TYPE_CHECKING:
    from .config import Settings
    from .shared_cache import AsyncSharedCache, Fleet, SharedHit, SyncSharedCache
    from .upstream import AsyncDriver, SyncDriver

__all__ = ["AsyncControls", "BlockingControls", "Resolver"]

_BREAKER_OPEN = "LWA is failing; not asking it for a moment."

#: LWA access tokens live 60 minutes: the longest a revocation must be kept
#: when the token's own expiry is unknown here (tokeninfo's claims are capped
#: apart, at ``flow.MAX_CLAIMED_LIFETIME``).
ACCESS_TOKEN_LIFETIME = 3600.0

#: Seconds between two "LWA unavailable" (or "saturated") warnings: an outage
#: fails every lookup, and one line per interval with a count says as much.
WARNING_INTERVAL = 10.0

_T = TypeVar("_T")
_F = TypeVar("_F")
_D = TypeVar("_D")


class Resolver:
    """Resolves tokens to identities for one middleware instance.

    :param settings: validated options (its ``clock`` is the monotonic clock
        of every deadline here).

    It never calls back into the adapter that drives it: what an adapter
    attaches per entry, it builds itself (:attr:`Entry.extra <.cache.Entry.extra>`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.clock = clock = settings.clock
        self.cache = IdentityCache(
            maxsize=settings.cache_maxsize,
            ttl=settings.cache_ttl,
            keep_stale=settings.stale_if_error,
            negative_ttl=settings.negative_cache_ttl,
            negative_maxsize=settings.negative_cache_maxsize,
            clock=clock,
        )
        self.breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown, clock=clock
        )
        self._unavailable_log = Throttle(WARNING_INTERVAL, clock=clock)
        self._saturated_log = Throttle(WARNING_INTERVAL, clock=clock)
        self._local_ttl = settings.local_cache_ttl if settings.uses_redis else None
        self._on_event = settings.on_event
        #: The application's tracer, once it has set an OpenTelemetry provider.
        self._tracer = _otel.current_tracer()
        #: Whether an ``on_event`` hook or a tracer is set: hot paths call
        #: :meth:`emit` only then (a hit is then a span too).
        self.hooked = settings.on_event is not None or self._tracer is not None
        self._threads: ThreadFlights[Entry] = ThreadFlights(
            settings.timeout * 2 + 1, settings.retry_after
        )
        self._tasks: TaskFlights[Entry] = TaskFlights()
        self._sync_driver: SyncDriver | None = None
        self._async_driver: AsyncDriver | None = None
        if settings.http_client is not None:
            from .upstream import check_http_client

            check_http_client(settings.http_client)
        self._sync_shared: SyncSharedCache | None = None
        self._async_shared: AsyncSharedCache | None = None
        self._lazy_lock = threading.Lock()
        #: With Redis: this process's subscriber to revocations (issue 14).
        self._fleet: Fleet | None = None
        if settings.uses_redis:
            from .shared_cache import Fleet

            self._fleet = Fleet(settings, self.cache, self.stats, self.emit)

    def __repr__(self) -> str:
        return (
            f"Resolver(api_base_url={self.settings.api_base_url!r}, "
            f"client_ids={sorted(self.settings.client_ids)!r})"
        )

    # -- the cache rule ------------------------------------------------------

    @staticmethod
    def digest(token: str) -> bytes:
        return token_digest(token.encode("ascii"))

    def emit(self, event: str, **data: Any) -> None:
        if event == "hit" and self._tracer is not None:
            _otel.hit_span(self._tracer)
        if self._on_event is not None:
            try:
                self._on_event(event, data)
            except Exception:  # a metrics hook must never break a request
                logger.exception(
                    "on_event hook failed for %r", event, extra=_observe.fields("hook_failed")
                )

    def _traced(self) -> Any:
        """The tracer, looked for again on each lookup that asks beyond this
        process (an application may set its provider after building the middleware)."""
        if self._tracer is None:
            self._tracer = _otel.current_tracer()
            self.hooked = self.hooked or self._tracer is not None
        return self._tracer

    def cached(self, key: bytes, policy: Policy) -> Entry | None:
        """A cached entry that serves ``policy``; raise a remembered rejection."""
        entry = self.cache.peek(key)
        if entry is not None and entry.serves(policy, self.clock()):
            self.stats.hits += 1
            if self.hooked:
                self.emit("hit")
            return entry
        rejection = self.cache.rejection(key)
        if rejection is not None:
            self.stats.rejections_cached += 1
            self.emit("rejection_cached")
            raise rejection
        return None

    # -- the plans -----------------------------------------------------------

    def _lookup_plan(self, token: str, key: bytes, policy: Policy) -> Plan[Entry]:
        """Shared cache, then LWA, then write back: the one order of business."""
        shared = self.settings.uses_redis
        if shared:
            found = yield Share(lambda tier: tier.get(token, policy.revalidate))
            entry = self._from_shared(key, found, policy)
            if entry is not None:
                return entry
        started = self.clock()
        retry = self.breaker.refusing()
        if retry is not None:
            # Open: refuse before queueing for a slot (the flow checks again
            # once it holds one, for requests that queued while it opened).
            resolved: Resolved | AuthError = BreakerOpen(_BREAKER_OPEN, retry)
        else:
            resolved = yield AskLWA(self._lookup(token, policy))
        if isinstance(resolved, AuthError):
            if shared:
                yield Share(lambda tier: tier.record_failure(token, resolved))
            return self._failed(key, resolved, policy, started)
        if shared:
            yield Share(lambda tier: tier.put(token, resolved))
        return self._succeeded(key, resolved, started)

    def _shared_hit_plan(self, token: str, key: bytes, policy: Policy) -> Plan[Entry | None]:
        """Redis alone, taking no lease: an entry, a shared rejection raised,
        or ``None`` (ask through :meth:`_lookup_plan`)."""
        found = yield Share(lambda tier: tier.get(token, lease=False))
        return self._from_shared(key, found, policy)

    def _forget_plan(self, token: str, *, revoke: bool) -> Plan[None]:
        """``revoke``: refuse the token until it expires; else forget it. Here
        first, then on every worker (the shared write may raise
        :class:`~.errors.SharedCacheError` once it took effect here)."""
        key = self.digest(token)
        if revoke:
            entry = self.cache.get(key)
            left = (
                entry.identity.expires_at - time.time()
                if entry is not None
                else ACCESS_TOKEN_LIFETIME
            )
            left = max(1.0, min(left, ACCESS_TOKEN_LIFETIME))
            self.cache.revoke(key, self.clock() + left)
            if self.settings.uses_redis:
                yield Share(lambda tier: tier.revoke(token, left))
        else:
            self.cache.discard(key)
            if self.settings.uses_redis:
                yield Share(lambda tier: tier.discard(token))

    def _lookup(self, token: str, policy: Policy) -> Lookup:
        """The LWA lookup of ``token``, with its shape, which decides its share of slots."""
        shaped = looks_like_lwa_token(token)
        return Lookup(self._resolution(token, policy, shaped), lwa_shaped=shaped)

    def _resolution(self, token: str, policy: Policy, shaped: bool) -> Flow:
        # A generator: its body, breaker check included, runs at the driver's
        # first next(), after the lookup got its in-flight slot, so requests
        # that queued for a slot while LWA went down do not call it anyway.
        retry = self.breaker.check()
        if retry is not None:
            raise BreakerOpen(_BREAKER_OPEN, retry)
        self.stats.misses += 1
        self.stats.lookups += 1
        settings = self.settings
        return (
            yield from resolution_flow(
                token,
                tokeninfo_url=settings.tokeninfo_url,
                profile_url=settings.profile_url,
                client_ids=settings.client_ids,
                want_profile=policy.needs_profile or not settings.user_id_from_tokeninfo,
                parallel=shaped,
                monotonic=self.clock,
            )
        )

    def _entry(self, key: bytes, resolved: Resolved, fresh_for: float | None = None) -> Entry:
        if self._local_ttl is not None and not self._trusted(key):
            # With a shared cache, trust this process's copy only briefly, so
            # an invalidate() or revoke() on another worker reaches this one
            # (while pushes reach it, they do that at once: no need).
            fresh_for = self._local_ttl if fresh_for is None else min(fresh_for, self._local_ttl)
        return self.cache.make_entry(
            resolved.identity, resolved.expires_mono, resolved.has_profile, fresh_for=fresh_for
        )

    def _trusted(self, key: bytes) -> bool:
        """Whether this process's copy of ``key`` may live ``cache_ttl``: another
        worker's revoke()/invalidate() reaches it at once (its subscriber is
        connected), or Redis is unusable (degraded: the no-Redis lifetime); and
        either way a push can name it (:meth:`Fleet.knows`, issue 24 item 1)."""
        fleet = self._fleet
        if fleet is None or not fleet.knows(key):
            return False
        if fleet.subscribed:
            return True
        # Redis unusable (its breaker open): nothing reaches this process
        # anyway, and re-asking every local_cache_ttl would flood LWA. Keep
        # copies as long as without Redis; the replay on reconnect catches up.
        return any(
            shared is not None and shared.degraded
            for shared in (self._async_shared, self._sync_shared)
        )

    def _succeeded(self, key: bytes, resolved: Resolved, started: float) -> Entry:
        elapsed = self.clock() - started
        self.stats.upstream_seconds += elapsed
        self.stats.lookup_latency.observe(elapsed)
        self.breaker.success()
        entry = self._entry(key, resolved)
        self.cache.put(key, entry)
        _otel.annotate(resolved=resolved)
        self.emit("resolved", seconds=elapsed, request_id=resolved.request_id)
        return entry

    def _failed(self, key: bytes, error: AuthError, policy: Policy, started: float) -> Entry:
        """Record a failed lookup; return a stale entry if allowed, else raise."""
        elapsed = self.clock() - started
        if isinstance(error, InvalidToken):
            self.breaker.success()
            self.stats.rejected += 1
            self.stats.lookup_latency.observe(elapsed)
            self.cache.reject(key, error)
            self.emit("rejected", **_observe.error_data(error, elapsed))
            raise error
        if isinstance(error, UpstreamUnavailable):
            if isinstance(error, Saturated):
                # This process is too busy, LWA is not failing: opening the
                # breaker would refuse real customers for a whole cooldown.
                self.stats.saturated += 1
                error.lwa_reason = "saturated"
                _observe.warn(
                    self._saturated_log,
                    "every LWA lookup slot stayed busy; shedding.",
                    _observe.error_fields("saturated", error, policy, elapsed),
                )
                self.emit("saturated", seconds=elapsed)
            elif not isinstance(error, BreakerOpen):
                # The breaker's own refusals must not restart its cooldown.
                if self.breaker.failure():
                    self.stats.breaker_opened += 1
                    self.emit("breaker_open")
                self.stats.upstream_error(error.lwa_reason)
                self.stats.lookup_latency.observe(elapsed)
                _observe.warn(
                    self._unavailable_log,
                    _observe.text(error),
                    _observe.error_fields("upstream_error", error, policy, elapsed),
                )
                self.emit("upstream_error", **_observe.error_data(error, elapsed))
            if error.retry_after is None:
                error.retry_after = self.settings.retry_after
            _otel.annotate(error=error)
            stale = self.stale(key, policy)
            if stale is not None:
                return stale
        raise error

    def stale(self, key: bytes, policy: Policy) -> Entry | None:
        """With stale-if-error, a cached entry whose token is still live."""
        if not self.settings.stale_if_error or policy.revalidate:
            # revalidate() promises a revoked token stops at once: no stale copy.
            return None
        entry = self.cache.get(key)
        if entry is not None and sufficient(policy, entry) and entry.expires_mono > self.clock():
            self.stats.stale_served += 1
            _otel.annotate("stale")
            self.emit("stale_served")
            return entry
        return None

    def _from_shared(
        self, key: bytes, found: SharedHit | InvalidToken | None, policy: Policy
    ) -> Entry | None:
        if found is None:
            return None
        if isinstance(found, InvalidToken):
            seconds = getattr(found, "seconds", None)  # a SharedRevocation
            if seconds is not None:
                # A revocation read is kept until the token expires.
                self.cache.revoke(key, self.clock() + seconds)
            else:
                self.cache.reject(key, found)
            raise found
        if policy.revalidate:  # never asked for: a revalidate() route asks LWA
            return None
        resolved = found.resolved
        if not resolved.has_profile and policy.needs_profile:
            return None
        self.stats.shared_hits += 1
        _otel.annotate("shared")
        self.emit("shared_hit")
        entry = self._entry(key, resolved, fresh_for=found.fresh_for)
        self.cache.put(key, entry)
        return entry

    def _joined(self) -> None:
        self.stats.coalesced += 1
        _otel.annotate("joined")
        self.emit("coalesced")

    # -- the blocking driver -------------------------------------------------

    def _sync_upstream(self) -> SyncDriver:
        """The blocking HTTP driver, built on first need: a revoke() never needs it."""
        if self._sync_driver is None:
            with self._lazy_lock:
                if self._sync_driver is None:
                    from .upstream import SyncDriver

                    self._sync_driver = SyncDriver(self.settings)
        return self._sync_driver

    def _blocking_shared(self) -> SyncSharedCache | None:
        if self._sync_shared is None and self.settings.uses_redis:
            with self._lazy_lock:
                if self._sync_shared is None:
                    from .shared_cache import SyncSharedCache

                    self._sync_shared = SyncSharedCache(self.settings, fleet=self._fleet)
        return self._sync_shared

    def _drive(self, plan: Plan[_T]) -> _T:
        shared = self._blocking_shared()
        done, step = advance(plan, None)
        while not done:
            if isinstance(step, AskLWA):
                done, step = advance(plan, outcome(self._sync_upstream().run, step.lookup))
            else:
                done, step = advance(plan, ask(shared, step))
        return cast(_T, step)

    def resolve_sync(self, token: str, policy: Policy) -> Entry:
        """The entry for ``token`` (cache, shared lookup, or LWA) from a worker thread."""
        key = self.digest(token)
        entry = self.cached(key, policy)
        if entry is not None:
            return entry
        tracer = self._traced()
        if tracer is None:
            return self._fly_sync(token, key, policy)
        with _otel.lookup_span(tracer, policy):
            return self._fly_sync(token, key, policy)

    def _fly_sync(self, token: str, key: bytes, policy: Policy) -> Entry:
        return self._threads.run(
            flight_slot(key, policy),
            lambda: self._drive(self._lookup_plan(token, key, policy)),
            functools.partial(sufficient, policy),
            self._joined,
        )

    def invalidate(self, token: str) -> None:
        """Forget ``token`` here and, blocking, in the shared cache (see
        :meth:`LWAMiddleware.invalidate <lwa_middleware.LWAMiddleware.invalidate>`)."""
        self._drive(self._forget_plan(token, revoke=False))

    def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires, here and (blocking) in the shared
        cache (see :meth:`LWAMiddleware.revoke <lwa_middleware.LWAMiddleware.revoke>`)."""
        self._drive(self._forget_plan(token, revoke=True))

    def warm_sync(self) -> None:
        """Build the blocking driver now (aiohttp imported, SSL context, its I/O
        loop's session, the first lookup's connections to LWA opened with no
        request sent), so the first token does not pay for it. It starts no
        thread (the loop's starts with the first lookup): a process forked
        after it has none, and makes its own."""
        self._sync_upstream().warm()
        self._blocking_shared()

    def send_sync(self, request: UpstreamRequest, within: float | None = None) -> Outcome:
        """One request to LWA on this middleware's blocking driver (the
        sign-in's token endpoint under WSGI): its pool, TLS and body cap, and
        ``within`` seconds (the sign-in's own deadline) or else its deadline."""
        return self._sync_upstream().send(request, within)

    def close(self) -> None:
        """Close pooled connections; a later request builds fresh ones."""
        with self._lazy_lock:
            driver, shared = self._sync_driver, self._sync_shared
            self._sync_driver = self._sync_shared = None
        if driver is not None:
            driver.close()
        if shared is not None:
            shared.close()
        if self._fleet is not None:
            self._fleet.stop()

    # -- the async driver (asyncio or trio) ----------------------------------

    def _async_upstream(self) -> AsyncDriver:
        """The async HTTP driver, built on first need: a revoke() never needs it."""
        if self._async_driver is None:
            from .upstream import AsyncDriver

            self._async_driver = AsyncDriver(self.settings)
        return self._async_driver

    def _async_shared_cache(self) -> AsyncSharedCache | None:
        """This loop's async shared cache; ``None`` without Redis, or off
        asyncio, where the blocking one (built here) serves from a worker thread."""
        if not self.settings.uses_redis:
            return None
        if sniffio.current_async_library() != "asyncio":
            # redis-py's async client is asyncio-only: elsewhere (trio) the
            # blocking client runs in a worker thread.
            self._blocking_shared()
            return None
        if self._async_shared is None:
            from .shared_cache import AsyncSharedCache

            self._async_shared = AsyncSharedCache(self.settings, fleet=self._fleet)
        return self._async_shared

    async def warm_async(self) -> None:
        """Build the async driver and this loop's clients now (lifespan startup)."""
        self._async_shared_cache()
        await self._async_upstream().start()

    async def send_async(self, request: UpstreamRequest, within: float | None = None) -> Outcome:
        """:meth:`send_sync` on the async driver (the sign-in under ASGI)."""
        return await self._async_upstream().send(request, within)

    async def _adrive(self, plan: Plan[_T]) -> _T:
        shared = self._async_shared_cache()
        done, step = advance(plan, None)
        while not done:
            reply: Any
            if isinstance(step, AskLWA):
                try:
                    reply = await self._async_upstream().run(step.lookup)
                except AuthError as error:
                    reply = error
            elif shared is None:
                reply = await anyio.to_thread.run_sync(ask, self._blocking_shared(), step)
            else:
                reply = await ask(shared, step)
            done, step = advance(plan, reply)
        return cast(_T, step)

    async def resolve_async(self, token: str, policy: Policy) -> Entry:
        """The entry for ``token`` (cache, shared lookup, or LWA) on an event loop."""
        key = self.digest(token)
        entry = self.cached(key, policy)
        if entry is not None:
            return entry
        tracer = self._traced()
        if tracer is None:
            return await self._fly_async(token, key, policy)
        with _otel.lookup_span(tracer, policy):
            return await self._fly_async(token, key, policy)

    async def _fly_async(self, token: str, key: bytes, policy: Policy) -> Entry:
        slot = flight_slot(key, policy)
        shared = self._async_shared
        if (
            shared is not None
            and not shared.degraded
            and not policy.revalidate
            and slot not in self._tasks
        ):
            # A shared hit needs no flight task (issue 23): Redis is read
            # first, taking no lease; only a miss flies, and its flight reads
            # again, taking the lease (one more round trip, before LWA's).
            # Not while Redis is skipped: the flight's read is then the probe.
            entry = await self._adrive(self._shared_hit_plan(token, key, policy))
            if entry is not None:
                return entry
        return await self._tasks.run(
            slot,
            lambda: self._adrive(self._lookup_plan(token, key, policy)),
            functools.partial(sufficient, policy),
            self._joined,
        )

    async def ainvalidate(self, token: str) -> None:
        """:meth:`invalidate`, on an event loop."""
        await self._adrive(self._forget_plan(token, revoke=False))

    async def arevoke(self, token: str) -> None:
        """:meth:`revoke`, on an event loop."""
        await self._adrive(self._forget_plan(token, revoke=True))

    async def aclose(self) -> None:
        """Close this event loop's pooled connections (and the blocking ones)."""
        if self._async_driver is not None:
            await self._async_driver.aclose()
        if self._async_shared is not None:
            await self._async_shared.aclose()
        self.close()
