"""The in-process cache of resolved tokens, and of tokens LWA rejected.

Keys are the SHA-256 digest of the *whole* token (never a prefix, never the
token itself), so a memory dump holds nothing that can be turned back into a
token, and two tokens sharing a long prefix never share an entry. SHA-256 is
the cheapest whole-token cryptographic digest here (hardware-accelerated on
current CPUs: about 0.6 µs for a 400-byte token), and it is computed straight
from the header bytes, before any decoding.

Positive entries live in a :class:`cachetools.TLRUCache` whose per-item
expiry is the token's own expiry, and also ``cache_ttl`` unless stale entries
are kept for *stale-if-error* (then an entry is *fresh* for ``cache_ttl`` and
kept, stale, until the token expires). Rejections live in a short
:class:`cachetools.TTLCache`. cachetools caches are not thread-safe, so every
write takes one lock, which is never held across I/O.

Reads on the hot path take no lock: the TLRU cache keeps a plain dict
mirror of its live items (kept in step through the documented subclassing
hooks), and a ``dict.get`` is atomic. The price is that a hit does not
refresh the item's LRU position, so under ``maxsize`` pressure eviction is in
insertion order. Every read still checks the entry's own deadline, so an
entry is never served past ``cache_ttl`` or its token's expiry.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import Cache, TLRUCache, TTLCache

from ._observe import fields
from .errors import InvalidToken
from .identity import Identity, expand_scopes
from .routes import PROFILE_FETCHED, Policy

Clock = Callable[[], float]

logger = logging.getLogger("lwa_middleware")

__all__ = ["Entry", "IdentityCache", "token_digest"]


def token_digest(raw: bytes) -> bytes:
    """The digest of a whole token (its ASCII bytes): the only form a token is kept in."""
    return hashlib.sha256(raw).digest()


class _MirroredTLRU(TLRUCache[bytes, "Entry"]):
    """A TLRU cache that keeps ``mirror``, a plain dict of its items, in step."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        super().__init__(maxsize, ttu=_expiry, timer=clock)
        self.mirror: dict[bytes, Entry] = {}

    def __setitem__(self, key: bytes, value: Entry) -> None:
        super().__setitem__(key, value)  # may evict (popitem -> __delitem__) or expire
        if super().__contains__(key):
            self.mirror[key] = value
        else:
            self.mirror.pop(key, None)

    def __delitem__(self, key: bytes) -> None:
        self.mirror.pop(key, None)
        super().__delitem__(key)

    def clear(self) -> None:
        # cachetools' clear() does not go through __delitem__.
        super().clear()
        self.mirror.clear()

    def expire(self, time: float | None = None) -> Any:
        expired = super().expire(time)
        for key, _ in expired:
            self.mirror.pop(key, None)
        return expired


class Entry:
    """A resolved token, with what a policy check needs precomputed.

    :param fresh_until: monotonic time until which the entry may be served
        without asking LWA again.
    :param expires_mono: monotonic time at which the cache drops the entry:
        the token's expiry when stale entries are kept, else ``fresh_until``.
        Never later than the token's expiry.

    :attr:`extra` is the adapter's slot, which the core never sets nor reads:
    it stays unset (reading it raises ``AttributeError``) until the adapter
    serving the entry fills it, on first use, with what it attaches per
    identity (ASGI: Starlette's ``AuthCredentials``). So a hit builds nothing,
    and the core never calls back into an adapter. Two threads filling it at
    once store equal values: the adapter memoises what it builds.
    """

    __slots__ = (
        "expires_mono",
        "extra",
        "fresh_until",
        "granted",
        "has_profile",
        "holds",
        "identity",
    )

    def __init__(
        self,
        identity: Identity,
        *,
        expires_mono: float,
        fresh_until: float,
        has_profile: bool,
    ) -> None:
        self.identity = identity
        #: The identity's scopes plus those they imply, for policy checks.
        self.granted = expand_scopes(identity.scopes)
        #: ``granted`` plus the profile marker: what ``Policy.hot`` is tested against.
        self.holds = _holds(self.granted, has_profile)
        self.expires_mono = expires_mono
        self.fresh_until = fresh_until
        self.has_profile = has_profile

    #: The adapter's slot (see above): unset until the adapter fills it.
    extra: Any

    def serves(self, policy: Policy, now: float) -> bool:
        """Whether this entry may answer a request under ``policy`` at ``now``.

        The one cache-hit rule: fresh, holding the profile when the policy
        needs it, and never on a ``revalidate()`` route (whose marker no entry
        holds). Whether it also holds the policy's scopes is the next, separate
        question (:meth:`~.gate.Gate.admit`: 403, not a lookup). The ASGI hot
        path inlines both at once, ``fresh_until > now and policy.hot <=
        holds``; a property test ties it to this method.
        """
        return self.fresh_until > now and policy.needs <= self.holds

    def __repr__(self) -> str:
        return f"Entry({self.identity!r}, has_profile={self.has_profile})"


@functools.lru_cache(maxsize=64)
def _holds(granted: frozenset[str], has_profile: bool) -> frozenset[str]:
    # Memoised: a handful of distinct sets shared by every entry.
    return granted | {PROFILE_FETCHED} if has_profile else granted


def _expiry(_key: bytes, entry: Entry, _now: float) -> float:
    return entry.expires_mono


def _until(_key: bytes, until: float, _now: float) -> float:
    return until


#: Revocations kept at least (each about 150 bytes): a logout must outlive
#: many cache evictions, so they get a bound of their own.
REVOCATIONS_MIN_SIZE = 100_000


class _Revocations(TLRUCache[bytes, float]):
    """Revoked digests until their token's expiry. Full, it drops the one
    whose token expires soonest (the least harm), and counts it: an evicted
    revocation that had not expired is a logout undone, never silently."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        super().__init__(maxsize, ttu=_until, timer=clock)
        self.evicted = 0

    def popitem(self) -> tuple[bytes, float]:
        # The value is the expiry; read it raw (no LRU touch, no expiry check).
        key = min(self, key=functools.partial(Cache.__getitem__, self))
        until = self.pop(key)
        self.evicted += 1
        logger.warning(
            "%d revocations are held, the most kept: the one expiring "
            "soonest was dropped (raise cache_maxsize, or shorten token lifetimes)",
            self.maxsize,
            extra=fields("revocation_dropped"),
        )
        return key, until


#: What a revoked token is told.
REVOKED = "The access token was revoked."


class IdentityCache:
    """Thread-safe positive and negative caches.

    :param maxsize: resolved tokens kept.
    :param ttl: seconds an entry is fresh.
    :param keep_stale: keep entries past ``ttl`` until the token expires, for
        stale-if-error; otherwise they are dropped at ``ttl``.
    :param negative_ttl: seconds a rejection is remembered (0 disables).
    :param negative_maxsize: rejections kept.
    :param clock: the monotonic clock every deadline is read on.
    """

    def __init__(
        self,
        *,
        maxsize: int,
        ttl: float,
        keep_stale: bool = False,
        negative_ttl: float = 30.0,
        negative_maxsize: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.keep_stale = keep_stale
        self._lock = threading.Lock()
        self._entries = _MirroredTLRU(maxsize, clock)
        #: Lock-free read of a possibly stale entry; callers check its deadlines.
        self.peek = self._entries.mirror.get
        # Revocations live apart from rejections: a flood of garbage tokens
        # filling the negative cache must not be able to evict them.
        self._revoked = _Revocations(max(maxsize, REVOCATIONS_MIN_SIZE), clock)
        self._rejections: TTLCache[bytes, InvalidToken] | None = (
            TTLCache(negative_maxsize, ttl=negative_ttl, timer=clock)
            if negative_ttl > 0
            else None
        )

    def get(self, key: bytes) -> Entry | None:
        """The live entry for ``key`` (within its cache lifetime), refreshing its LRU rank."""
        with self._lock:
            return self._entries.get(key)

    def rejection(self, key: bytes) -> InvalidToken | None:
        """A remembered verdict against ``key``: revoked here, or rejected by LWA."""
        with self._lock:
            if key in self._revoked:
                return InvalidToken(REVOKED)
            if self._rejections is None:
                return None
            remembered = self._rejections.get(key)
        # A fresh exception each time: raising one stored instance again and
        # again would chain every request's frames (and their locals) onto it.
        return None if remembered is None else InvalidToken(remembered.description)

    def revoke(self, key: bytes, until: float) -> None:
        """Refuse ``key`` until the monotonic time ``until`` (its token's expiry)."""
        with self._lock:
            self._entries.pop(key, None)
            self._revoked[key] = until

    def make_entry(
        self,
        identity: Identity,
        expires_mono: float,
        has_profile: bool,
        *,
        fresh_for: float | None = None,
    ) -> Entry:
        """An entry fresh for ``cache_ttl`` (or less: ``fresh_for``), never past expiry."""
        ttl = self.ttl if fresh_for is None else min(self.ttl, fresh_for)
        fresh_until = min(self.clock() + ttl, expires_mono)
        return Entry(
            identity,
            expires_mono=expires_mono if self.keep_stale else fresh_until,
            fresh_until=fresh_until,
            has_profile=has_profile,
        )

    def put(self, key: bytes, entry: Entry) -> None:
        if self.ttl <= 0 and not self.keep_stale:
            return
        with self._lock:
            if key in self._revoked:
                # A lookup that was in flight when revoke() ran must not bring
                # the identity back.
                return
            self._entries[key] = entry
            if self._rejections is not None:
                self._rejections.pop(key, None)

    def reject(self, key: bytes, error: InvalidToken) -> None:
        """LWA rejected ``key``: drop its identity (always, so that not even
        stale-if-error serves it again) and remember the verdict if allowed."""
        with self._lock:
            self._entries.pop(key, None)
            if self._rejections is not None and error.remember:
                # Only the verdict is kept, never the raised exception (and its frames).
                self._rejections[key] = InvalidToken(error.description)

    def discard(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)
            if self._rejections is not None:
                self._rejections.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            if self._rejections is not None:
                self._rejections.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
