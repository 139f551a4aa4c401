"""The in-process cache of resolved tokens, and of tokens LWA rejected.

Keys are the SHA-256 digest of the *whole* token (never a prefix, never the
token itself), so a memory dump holds nothing that can be turned back into a
token, and two tokens sharing a long prefix never share an entry. SHA-256 is
the cheapest whole-token cryptographic digest here (hardware-accelerated on
current CPUs: about 0.6 µs for a 400-byte token), and it is computed straight
from the header bytes, before any decoding.

Positive entries live in an :class:`_Expiring` map whose per-item deadline is
the token's own expiry, and also ``cache_ttl`` unless stale entries are kept
for *stale-if-error* (then an entry is *fresh* for ``cache_ttl`` and kept,
stale, until the token expires). Rejections and revocations live in maps of
the same kind. They are not thread-safe, so every write takes one lock, which
is never held across I/O.

Reads on the hot path take no lock: the map's items are a plain dict, and a
``dict.get`` is atomic. A hit does not change what is evicted: a full map
drops the item whose deadline comes soonest. Every read still checks the
entry's own deadline, so an entry is never served past ``cache_ttl`` or its
token's expiry.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, ItemsView, Iterator
from typing import Any, Generic, TypeVar

from ._observe import fields
from .errors import InvalidToken
from .identity import Identity, expand_scopes
from .routes import PROFILE_FETCHED, Policy

Clock = Callable[[], float]
V = TypeVar("V")

logger = logging.getLogger("lwa_middleware")

__all__ = ["Entry", "IdentityCache", "token_digest"]


def token_digest(raw: bytes) -> bytes:
    """The digest of a whole token (its ASCII bytes): the only form a token is kept in."""
    return hashlib.sha256(raw).digest()


class _Expiring(Generic[V]):
    """A bounded map whose items leave at their own deadline.

    Hand-written rather than :class:`cachetools.TLRUCache` for memory, the
    measured target (``benchmarks/bench_memory.py``): the TLRU keeps, per
    item, a node object, a linked-list link, a size entry and a heap tuple on
    top of its dict, and the lock-free read needed a mirror dict as well:
    about 250 of the 920 bytes a cached identity cost at 100k entries. Here
    an item is its dict slot plus one slot in a list of keys per whole
    second of deadline (a per-item heap tuple would cost 64 bytes more, a
    deque per second about 600 bytes, whatever few keys it holds).

    ``data`` is the plain dict of the items (lock-free reads with
    ``data.get``; the reader checks the deadline). Each key also waits in the
    queue of the second its deadline rounds up to, and the seconds in a heap:
    once a second has passed, every item queued in it has expired. A queued
    key whose item was removed, or stored again with another deadline, is
    stale and skipped. Full, the map drops the item whose deadline comes
    soonest (the one that would leave first anyway; among those of the same
    second, the last stored: an O(1) pop). Not thread-safe: the owner locks
    writes.

    :param deadline: the deadline (on ``clock``) of a value.
    :param dropped: called with each live item dropped to make room.
    """

    __slots__ = (
        "_deadline",
        "_dropped",
        "_queued",
        "_queues",
        "_seconds",
        "clock",
        "data",
        "maxsize",
    )

    def __init__(
        self,
        maxsize: int,
        clock: Clock,
        deadline: Callable[[V], float],
        dropped: Callable[[bytes, V], None] | None = None,
    ) -> None:
        self.maxsize = maxsize
        self.clock = clock
        self.data: dict[bytes, V] = {}
        self._deadline = deadline
        self._dropped = dropped
        #: Deadline second -> the keys stored with a deadline in it, in order.
        self._queues: dict[int, list[bytes]] = {}
        #: The seconds of ``_queues``, a heap.
        self._seconds: list[int] = []
        #: Keys in all queues, stale ones included.
        self._queued = 0

    def __repr__(self) -> str:  # never a key
        return f"{type(self).__name__}({len(self.data)} items, maxsize={self.maxsize})"

    def __len__(self) -> int:
        self.expire()
        return len(self.data)

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def items(self) -> ItemsView[bytes, V]:
        return self.data.items()

    def get(self, key: bytes) -> V | None:
        """The value of ``key`` before its deadline, else ``None``."""
        value = self.data.get(key)
        if value is None or self._deadline(value) <= self.clock():
            return None
        return value

    def pop(self, key: bytes, default: V | None = None) -> V | None:
        # Its queued key goes stale, skipped when its second comes.
        return self.data.pop(key, default)

    def clear(self) -> None:
        self.data.clear()
        self._queues.clear()
        self._seconds.clear()
        self._queued = 0

    def __setitem__(self, key: bytes, value: V) -> None:
        self.expire()
        data = self.data
        if data.pop(key, None) is None and len(data) >= self.maxsize:
            self._drop_soonest()
        if self.maxsize <= 0:
            return
        data[key] = value
        self._enqueue(key, value)
        if self._queued > 2 * len(data) + 64:
            # Stale keys (removed, or stored again) outnumber the live ones:
            # queue the live ones afresh, so the queues stay within twice the items.
            self._queues.clear()
            self._seconds.clear()
            self._queued = 0
            for live_key, live in data.items():
                self._enqueue(live_key, live)

    def _enqueue(self, key: bytes, value: V) -> None:
        second = math.ceil(self._deadline(value))
        queue = self._queues.get(second)
        if queue is None:
            queue = self._queues[second] = []
            heapq.heappush(self._seconds, second)
        queue.append(key)
        self._queued += 1

    def _live(self, key: bytes, second: int) -> V | None:
        value = self.data.get(key)
        if value is None or math.ceil(self._deadline(value)) != second:
            return None  # removed, or stored again with another deadline
        return value

    def expire(self) -> None:
        """Drop every item whose deadline's second has passed."""
        now, seconds = self.clock(), self._seconds
        while seconds and seconds[0] <= now:
            second = heapq.heappop(seconds)
            queue = self._queues.pop(second)
            self._queued -= len(queue)
            for key in queue:
                if self._live(key, second) is not None:
                    del self.data[key]

    def _drop_soonest(self) -> None:
        seconds = self._seconds
        while seconds:
            queue = self._queues[seconds[0]]
            while queue:
                key = queue.pop()
                self._queued -= 1
                value = self._live(key, seconds[0])
                if value is not None:
                    del self.data[key]
                    if self._dropped is not None:
                        self._dropped(key, value)
                    return
            del self._queues[heapq.heappop(seconds)]


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


def _expiry(entry: Entry) -> float:
    return entry.expires_mono


def _until(until: float) -> float:
    return until


class _Rejected(InvalidToken):
    """A remembered verdict: only its description, and until when it is kept."""

    def __init__(self, description: str, until: float) -> None:
        super().__init__(description)
        self.until = until


def _kept_until(rejected: _Rejected) -> float:
    return rejected.until


#: Revocations kept at least (each about 150 bytes): a logout must outlive
#: many cache evictions, so they get a bound of their own.
REVOCATIONS_MIN_SIZE = 100_000


class _Revocations(_Expiring[float]):
    """Revoked digests until their token's expiry. Full, it drops the one
    whose token expires soonest (the least harm), and counts it: an evicted
    revocation that had not expired is a logout undone, never silently."""

    __slots__ = ("evicted",)

    def __init__(self, maxsize: int, clock: Clock) -> None:
        super().__init__(maxsize, clock, _until, self._warn)
        self.evicted = 0

    def _warn(self, _key: bytes, _until: float) -> None:
        self.evicted += 1
        logger.warning(
            "%d revocations are held, the most kept: the one expiring "
            "soonest was dropped (raise cache_maxsize, or shorten token lifetimes)",
            self.maxsize,
            extra=fields("revocation_dropped"),
        )


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
        self.negative_ttl = negative_ttl
        self._entries: _Expiring[Entry] = _Expiring(maxsize, clock, _expiry)
        #: Lock-free read of a possibly stale entry; callers check its deadlines.
        self.peek = self._entries.data.get
        # Revocations live apart from rejections: a flood of garbage tokens
        # filling the negative cache must not be able to evict them.
        self._revoked = _Revocations(max(maxsize, REVOCATIONS_MIN_SIZE), clock)
        self._rejections: _Expiring[_Rejected] | None = (
            _Expiring(negative_maxsize, clock, _kept_until) if negative_ttl > 0 else None
        )

    def get(self, key: bytes) -> Entry | None:
        """The live entry for ``key`` (within its cache lifetime)."""
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
                until = self.clock() + self.negative_ttl
                self._rejections[key] = _Rejected(error.description, until)

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
