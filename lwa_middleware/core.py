"""The framework-neutral heart shared by the ASGI and WSGI middlewares.

:class:`Authenticator` owns the route table, the caches, the circuit breaker,
the statistics and the upstream drivers. Given a token and the route's
policy it answers with a cached :class:`~.cache.Entry` or raises an
:class:`~.errors.AuthError`. The order of business for one token is:

1. the in-process cache (fresh entry, or a remembered rejection);
2. an in-flight lookup for the same token, which it joins (single-flight,
   under asyncio and under threads alike);
3. the shared Redis cache, when configured (on a ``revalidate()`` route only
   a shared revocation is read there: the identity always comes from LWA);
4. LWA, through :func:`~.flow.resolution_flow`, unless the breaker is open.

Only rejections are remembered; transient failures never are. With
``stale_if_error`` an LWA failure falls back to a cached identity whose token
has not yet expired.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .cache import Entry, IdentityCache, token_digest
from .errors import (
    AuthError,
    BreakerOpen,
    InsufficientScope,
    InvalidToken,
    Saturated,
    UpstreamUnavailable,
)
from .flow import Flow, Lookup, Resolved, resolution_flow
from .guard import CircuitBreaker, Throttle
from .identity import Identity
from .routes import Policy
from .tokens import looks_like_lwa_token

if TYPE_CHECKING:
    from .config import Settings
    from .shared_cache import AsyncSharedCache, SharedHit, SyncSharedCache
    from .transport import AsyncDriver, SyncDriver

__all__ = ["Authenticator", "Stats", "SyncControls", "check_scopes"]

logger = logging.getLogger("lwa_middleware")

#: How many in-flight lookups one request joins before looking up itself.
_MAX_JOINS = 3

#: LWA access tokens live 60 minutes: the longest a revocation must be kept.
MAX_LIFETIME = 3600.0

#: Seconds between two "LWA unavailable" (or "saturated") warnings: an outage
#: fails every lookup, and one line per interval with a count says as much.
WARNING_INTERVAL = 10.0


@dataclass
class Stats:
    """Counters since start, for metrics. Reads are cheap; writes are unlocked
    increments, exact under asyncio and the GIL's usual scheduling."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    stale_served: int = 0
    rejections_cached: int = 0
    shared_hits: int = 0
    lookups: int = 0
    upstream_errors: int = 0
    #: Lookups shed because every in-flight slot stayed busy (not LWA's fault).
    saturated: int = 0
    #: Times the circuit breaker went from closed to open.
    breaker_opened: int = 0
    rejected: int = 0
    upstream_seconds: float = 0.0

    def snapshot(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_scopes(granted: frozenset[str], required: frozenset[str]) -> None:
    """Raise :class:`InsufficientScope` unless ``granted`` (expanded) covers ``required``.

    The one scope decision: route policies and per-view decorators both use it.
    """
    if required and not required <= granted:
        raise InsufficientScope(required, missing=required - granted)


class _Flight:
    """A lookup in progress under threads; followers wait on ``done``."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: AuthError | None = None


Decorate = Callable[[Identity], Any]


def _flight_slot(key: bytes, policy: Policy) -> bytes:
    """The single-flight slot of a lookup: a ``revalidate()`` lookup only
    joins others that also ask LWA, never one answered from Redis."""
    return key + b"\0revalidate" if policy.revalidate else key


class Authenticator:
    """Resolves tokens to identities for one middleware instance.

    :param settings: validated options.
    :param decorate: builds, once per identity, the adapter objects stored in
        :attr:`Entry.extra` (Starlette's credentials for ASGI).
    """

    def __init__(self, settings: Settings, decorate: Decorate | None = None) -> None:
        self.settings = settings
        self.routes = settings.routes
        self.stats = Stats()
        self.cache = IdentityCache(
            maxsize=settings.cache_maxsize,
            ttl=settings.cache_ttl,
            keep_stale=settings.stale_if_error,
            negative_ttl=settings.negative_cache_ttl,
            negative_maxsize=settings.negative_cache_maxsize,
        )
        self.breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown, clock=settings.clock
        )
        self._unavailable_log = Throttle(WARNING_INTERVAL, clock=settings.clock)
        self._saturated_log = Throttle(WARNING_INTERVAL, clock=settings.clock)
        self._decorate = decorate
        self._peek = self.cache.peek
        self._local_ttl = settings.local_cache_ttl if settings.redis_url else None
        self._on_event = settings.on_event
        self._sync_flights: dict[bytes, _Flight] = {}
        self._flights_lock = threading.Lock()
        self._async_flights: dict[bytes, asyncio.Task[Entry]] = {}
        self._sync_driver: SyncDriver | None = None
        self._async_driver: AsyncDriver | None = None
        self._sync_shared: SyncSharedCache | None = None
        self._async_shared: AsyncSharedCache | None = None
        self._lazy_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Authenticator(api_base_url={self.settings.api_base_url!r}, "
            f"client_ids={sorted(self.settings.client_ids)!r})"
        )

    # -- shared steps --------------------------------------------------------

    @staticmethod
    def digest(token: str) -> bytes:
        return token_digest(token.encode("ascii"))

    def emit(self, event: str, **data: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event, data)
            except Exception:  # a metrics hook must never break a request
                logger.exception("lwa_middleware: on_event hook failed for %r", event)

    def cached(self, key: bytes, policy: Policy) -> Entry | None:
        """A fresh entry good enough for ``policy``; raise a remembered rejection."""
        entry = self._peek(key)
        if (
            entry is not None
            and not policy.revalidate
            and entry.fresh_until > time.monotonic()
            and (entry.has_profile or not policy.needs_profile)
        ):
            self.stats.hits += 1
            if self._on_event is not None:
                self.emit("hit")
            return entry
        rejection = self.cache.rejection(key)
        if rejection is not None:
            self.stats.rejections_cached += 1
            self.emit("rejection_cached")
            raise rejection
        return None

    @staticmethod
    def authorize(entry: Entry, policy: Policy) -> None:
        """Raise :class:`InsufficientScope` unless the entry holds the policy's scopes."""
        check_scopes(entry.granted, policy.scopes)

    def _sufficient(self, entry: Entry | None, policy: Policy) -> Entry | None:
        if entry is not None and (entry.has_profile or not policy.needs_profile):
            return entry
        return None

    def _flow(self, token: str, policy: Policy) -> Lookup:
        """The lookup of ``token``, with its shape, which decides its share of slots."""
        shaped = looks_like_lwa_token(token)
        return Lookup(self._resolution(token, policy, shaped), lwa_shaped=shaped)

    def _resolution(self, token: str, policy: Policy, shaped: bool) -> Flow:
        # A generator: its body, breaker check included, runs at the driver's
        # first next(), after the lookup got its in-flight slot, so requests
        # that queued for a slot while LWA went down do not call it anyway.
        retry = self.breaker.check()
        if retry is not None:
            raise BreakerOpen("LWA is failing; not asking it for a moment.", retry)
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
            )
        )

    def _entry(self, resolved: Resolved, fresh_for: float | None = None) -> Entry:
        identity = resolved.identity
        extra = self._decorate(identity) if self._decorate is not None else None
        if self._local_ttl is not None:
            # With a shared cache, trust this process's copy only briefly, so
            # an invalidate() or revoke() on another worker reaches this one.
            fresh_for = self._local_ttl if fresh_for is None else min(fresh_for, self._local_ttl)
        return self.cache.make_entry(
            identity, resolved.expires_mono, resolved.has_profile, extra, fresh_for=fresh_for
        )

    def _succeeded(self, key: bytes, resolved: Resolved, started: float) -> Entry:
        elapsed = time.monotonic() - started
        self.stats.upstream_seconds += elapsed
        self.breaker.success()
        entry = self._entry(resolved)
        self.cache.put(key, entry)
        self.emit("resolved", seconds=elapsed)
        return entry

    def _failed(self, key: bytes, error: AuthError, policy: Policy, started: float) -> Entry:
        """Record a failed lookup; return a stale entry if allowed, else raise."""
        elapsed = time.monotonic() - started
        if isinstance(error, InvalidToken):
            self.breaker.success()
            self.stats.rejected += 1
            self.cache.reject(key, error)
            self.emit("rejected", seconds=elapsed)
            raise error
        if isinstance(error, UpstreamUnavailable):
            if isinstance(error, Saturated):
                # This process is too busy, LWA is not failing: opening the
                # breaker would refuse real customers for a whole cooldown.
                self.stats.saturated += 1
                self._warn(self._saturated_log, "every LWA lookup slot stayed busy; shedding.")
                self.emit("saturated", seconds=elapsed)
            elif not isinstance(error, BreakerOpen):
                # The breaker's own refusals must not restart its cooldown.
                if self.breaker.failure():
                    self.stats.breaker_opened += 1
                    self.emit("breaker_open")
                self.stats.upstream_errors += 1
                self._warn(self._unavailable_log, error.description)
                self.emit("upstream_error", seconds=elapsed, reason=error.description)
            if error.retry_after is None:
                error.retry_after = self.settings.retry_after
            stale = self.stale(key, policy)
            if stale is not None:
                return stale
        raise error

    @staticmethod
    def _warn(throttle: Throttle, description: str) -> None:
        held = throttle.allow()
        if held:
            logger.warning("lwa_middleware: %s (%d more since the last warning)", description, held)
        elif held is not None:
            logger.warning("lwa_middleware: %s", description)

    def stale(self, key: bytes, policy: Policy) -> Entry | None:
        """With stale-if-error, a cached entry whose token is still live."""
        if not self.settings.stale_if_error or policy.revalidate:
            # revalidate() promises a revoked token stops at once: no stale copy.
            return None
        entry = self._sufficient(self.cache.get(key), policy)
        if entry is not None and entry.expires_mono > time.monotonic():
            self.stats.stale_served += 1
            self.emit("stale_served")
            return entry
        return None

    def invalidate(self, token: str) -> None:
        """Forget ``token`` in this process and, blocking, in the shared cache.

        Raises :class:`~.errors.SharedCacheError` (after forgetting it here)
        if Redis could not be written within its own deadline and retries.
        """
        key = self.digest(token)
        self.cache.discard(key)
        if self.settings.redis_url:
            _, shared = self._sync_parts()
            if shared is not None:
                shared.discard(token)

    def _revocation(self, key: bytes) -> tuple[float, float]:
        """``(monotonic deadline, seconds left)`` of a token about to be revoked."""
        entry = self.cache.get(key)
        left = entry.identity.expires_at - time.time() if entry is not None else MAX_LIFETIME
        left = max(1.0, min(left, MAX_LIFETIME))
        return time.monotonic() + left, left

    def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires, here and (blocking) in the shared cache.

        Raises :class:`~.errors.SharedCacheError` (after refusing it here) if
        Redis could not be written; the revocation is then published as soon
        as Redis answers again.
        """
        key = self.digest(token)
        until, left = self._revocation(key)
        self.cache.revoke(key, until)
        if self.settings.redis_url:
            _, shared = self._sync_parts()
            if shared is not None:
                shared.revoke(token, left)

    async def arevoke(self, token: str) -> None:
        """Refuse ``token`` until it expires, here and in the shared cache."""
        key = self.digest(token)
        until, left = self._revocation(key)
        self.cache.revoke(key, until)
        if self.settings.redis_url:
            _, shared = self._async_parts()
            if shared is not None:
                await shared.revoke(token, left)

    async def ainvalidate(self, token: str) -> None:
        """Forget ``token`` in this process and in the shared cache."""
        key = self.digest(token)
        self.cache.discard(key)
        if self.settings.redis_url:
            _, shared = self._async_parts()
            if shared is not None:
                await shared.discard(token)

    # -- threads -------------------------------------------------------------

    def _sync_parts(self) -> tuple[SyncDriver, SyncSharedCache | None]:
        if self._sync_driver is None:
            with self._lazy_lock:
                if self._sync_driver is None:
                    from .transport import SyncDriver

                    if self.settings.redis_url:
                        from .shared_cache import SyncSharedCache

                        self._sync_shared = SyncSharedCache(self.settings)
                    self._sync_driver = SyncDriver(self.settings)
        return self._sync_driver, self._sync_shared

    def resolve_sync(self, token: str, policy: Policy) -> Entry:
        """The entry for ``token`` (cache, shared lookup, or LWA) from a worker thread."""
        key = self.digest(token)
        entry = self.cached(key, policy)
        if entry is not None:
            return entry
        slot = _flight_slot(key, policy)
        # A joined lookup may bring less than this route needs (tokeninfo only);
        # then the first follower leads an upgrade and the others join it.
        for _ in range(_MAX_JOINS):
            with self._flights_lock:
                flight = self._sync_flights.get(slot)
                leader = flight is None
                if flight is None:
                    flight = self._sync_flights[slot] = _Flight()
            if leader:
                return self._lead_sync(token, key, policy, flight, slot)
            self.stats.coalesced += 1
            self.emit("coalesced")
            if not flight.done.wait(self.settings.timeout * 2 + 1):
                raise UpstreamUnavailable("LWA lookup timed out.", self.settings.retry_after)
            if flight.error is not None:
                raise flight.error
            entry = self._sufficient(flight.entry, policy)
            if entry is not None:
                return entry
        return self._lookup_sync(token, key, policy)

    def _lead_sync(
        self, token: str, key: bytes, policy: Policy, flight: _Flight, slot: bytes
    ) -> Entry:
        try:
            flight.entry = self._lookup_sync(token, key, policy)
            return flight.entry
        except AuthError as error:
            flight.error = error
            raise
        finally:
            with self._flights_lock:
                self._sync_flights.pop(slot, None)
            flight.done.set()

    def _lookup_sync(self, token: str, key: bytes, policy: Policy) -> Entry:
        driver, shared = self._sync_parts()
        if shared is not None:
            entry = self._from_shared(key, shared.get(token, policy.revalidate), policy)
            if entry is not None:
                return entry
        started = time.monotonic()
        try:
            resolved = driver.run(self._flow(token, policy))
        except AuthError as error:
            if shared is not None:
                shared.record_failure(token, error)
            return self._failed(key, error, policy, started)
        if shared is not None:
            shared.put(token, resolved)
        return self._succeeded(key, resolved, started)

    # -- asyncio -------------------------------------------------------------

    def _async_parts(self) -> tuple[AsyncDriver, AsyncSharedCache | None]:
        if self._async_driver is None:
            from .transport import AsyncDriver

            if self.settings.redis_url:
                from .shared_cache import AsyncSharedCache

                self._async_shared = AsyncSharedCache(self.settings)
            self._async_driver = AsyncDriver(self.settings)
        return self._async_driver, self._async_shared

    async def resolve_async(self, token: str, policy: Policy) -> Entry:
        """The entry for ``token`` (cache, shared lookup, or LWA) on an event loop."""
        key = self.digest(token)
        entry = self.cached(key, policy)
        if entry is not None:
            return entry
        loop = asyncio.get_running_loop()
        slot = _flight_slot(key, policy)
        for _ in range(_MAX_JOINS):
            task = self._async_flights.get(slot)
            if task is None or task.get_loop() is not loop:
                task = loop.create_task(self._lookup_async(token, key, policy))
                self._async_flights[slot] = task
                task.add_done_callback(functools.partial(self._forget_flight, slot))
                # shield: a waiter whose client went away must not cancel the
                # lookup the others are waiting for.
                return await asyncio.shield(task)
            self.stats.coalesced += 1
            self.emit("coalesced")
            # The task's done-callback (which forgets the flight) runs before
            # any waiter resumes, so an upgrade started by the first waiter
            # back is the flight the others find on their next turn.
            entry = self._sufficient(await asyncio.shield(task), policy)
            if entry is not None:
                return entry
        return await self._lookup_async(token, key, policy)

    def _forget_flight(self, key: bytes, task: asyncio.Task[Entry]) -> None:
        # Runs as the task's first done-callback, before any waiter resumes.
        if self._async_flights.get(key) is task:
            del self._async_flights[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have gone away

    async def _lookup_async(self, token: str, key: bytes, policy: Policy) -> Entry:
        driver, shared = self._async_parts()
        if shared is not None:
            entry = self._from_shared(key, await shared.get(token, policy.revalidate), policy)
            if entry is not None:
                return entry
        started = time.monotonic()
        try:
            resolved = await driver.run(self._flow(token, policy))
        except AuthError as error:
            if shared is not None:
                await shared.record_failure(token, error)
            return self._failed(key, error, policy, started)
        if shared is not None:
            await shared.put(token, resolved)
        return self._succeeded(key, resolved, started)

    # -- shared cache --------------------------------------------------------

    def _from_shared(
        self, key: bytes, found: SharedHit | InvalidToken | None, policy: Policy
    ) -> Entry | None:
        if found is None:
            return None
        if isinstance(found, InvalidToken):
            self.cache.reject(key, found)
            raise found
        if policy.revalidate:  # never asked for: a revalidate() route asks LWA
            return None
        resolved = found.resolved
        if not resolved.has_profile and policy.needs_profile:
            return None
        self.stats.shared_hits += 1
        self.emit("shared_hit")
        entry = self._entry(resolved, fresh_for=found.fresh_for)
        self.cache.put(key, entry)
        return entry

    async def aclose(self) -> None:
        if self._async_driver is not None:
            await self._async_driver.aclose()
        if self._async_shared is not None:
            await self._async_shared.aclose()

    def close(self) -> None:
        # Forget the closed parts: a later request builds fresh ones rather
        # than failing on a shut-down pool.
        with self._lazy_lock:
            driver, shared = self._sync_driver, self._sync_shared
            self._sync_driver = self._sync_shared = None
        if driver is not None:
            driver.close()
        if shared is not None:
            shared.close()


class SyncControls:
    """What a blocking middleware offers its users, over its ``authenticator``.

    Shared by the WSGI middleware and the Django integration.
    """

    authenticator: Authenticator

    @property
    def stats(self) -> Stats:
        """Cache and upstream counters (hits, misses, coalesced, …)."""
        return self.authenticator.stats

    def invalidate(self, token: str) -> None:
        """Forget what is cached about ``token``; see ``LWAMiddleware.invalidate``.

        Raises :class:`~.errors.SharedCacheError` if Redis could not be written.
        """
        self.authenticator.invalidate(token)

    def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires (logout); see ``LWAMiddleware.revoke``.

        Raises :class:`~.errors.SharedCacheError` if Redis could not be written
        (the token is refused in this process all the same).
        """
        self.authenticator.revoke(token)

    def close(self) -> None:
        """Close pooled connections to LWA (and Redis)."""
        self.authenticator.close()
