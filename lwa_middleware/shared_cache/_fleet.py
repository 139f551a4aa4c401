"""Revocations and invalidations pushed to every worker, with a replayable log.

A ``revoke()`` or ``invalidate()`` on one worker writes Redis (``lwa:v1:rev:<hex>``
or a ``DEL``) and then *announces* it: one Lua script appends a sealed message
to the capped stream :data:`STREAM` (``XADD MAXLEN ~`` :data:`STREAM_MAXLEN`)
and publishes it, with its stream id, on :data:`CHANNEL`. Each process runs
one subscriber (:class:`Fleet`, a daemon thread on redis-py's blocking client,
whatever the middleware: the in-process cache is thread-safe, and a thread
outlives the short event loops of test clients and works under trio too). It
applies a message to the in-process cache at once: a revoked token is refused
here until it expires, an invalidated one is forgotten.

Push is at-most-once, so it is paired with replay. The subscriber remembers
the stream id of the last message it applied; when it (re)connects it first
subscribes and then reads the stream *after* that id, so nothing published
while it was away is missed. If that id is no longer in the stream (trimmed
past it, ``FLUSHALL``, a restart without persistence), the gap cannot be
replayed: the process drops every identity it holds in memory (never its
revocations) and asks Redis or LWA again. While the subscriber is not
connected, new local entries are trusted only ``local_cache_ttl``
(:attr:`Fleet.subscribed`); while it is, for ``cache_ttl``, as without Redis.

Messages carry only keyed digests (the Redis hex of the token) and an epoch
expiry, sealed with the shared cache's MAC key, so whoever can ``PUBLISH``
without the secret cannot log users out. The subscriber maps a digest to the
in-process key through :attr:`Fleet` aliases noted when a token was looked up
here; a digest this process never looked up has nothing to drop (its next
lookup reads the revocation from Redis, and keeps it until the token expires).

Revocations this process made are remembered (:class:`RevocationMemory`,
digest and expiry, never the token) and *re-asserted* by the subscriber: on
each (re)connect (and then also announced again, for a ``revoke()`` whose
write failed) and every :data:`REASSERT_INTERVAL` seconds, so a revocation key
evicted under ``allkeys-lru`` comes back, besides the replay after data loss
in :mod:`._plans`.

Every monotonic reading is of ``settings.clock``; the real-time waits are the
socket's (a heartbeat :data:`HEARTBEAT` and the reconnect pause).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import redis
import redis.retry

from .._observe import fields as log_fields
from ..cache import IdentityCache, token_digest
from ._codec import PREFIX, REPLAY_BATCH, SECRET_KEY, Codec, replay_batches
from ._scripts import SCRIPTS
from ._topology import Limits, close_client, is_cluster, make_client

if TYPE_CHECKING:
    from ..config import Settings
    from ..stats import Stats

logger = logging.getLogger("lwa_middleware.shared_cache")

#: The channel revocations and invalidations are published on.
CHANNEL: Final = PREFIX + "events"
#: The capped stream they are also appended to, for replay.
STREAM: Final = PREFIX + "events:log"
#: About how many messages the stream keeps (``XADD MAXLEN ~``).
STREAM_MAXLEN: Final = 100_000
#: Seconds between two PINGs on the subscriber's connection; three missed
#: answers and it reconnects (a black-holed Redis is noticed in ~3 s).
HEARTBEAT: Final = 1.0
#: Seconds between two re-assertions of the revocations this process made.
REASSERT_INTERVAL: Final = 30.0
#: Jitter of its own: the global generator is the application's (and its
#: tests', which may seed it or, like hypothesis, watch who draws from it).
_JITTER: Final = random.Random()
#: Reconnect pauses: first, and the cap of the doubling (with full jitter).
RECONNECT_MIN: Final = 0.05
RECONNECT_MAX: Final = 2.0
#: Stream entries read per round trip when catching up.
_BATCH: Final = 500
_EVENTS_LABEL: Final = b"lwa:v1:events\n"

#: This process's id, kept current across forks without a syscall per request.
_PID = [os.getpid()]


def _forked() -> None:
    _PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _run(client: Any, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
    """Run script ``name`` by EVALSHA (loaded on NOSCRIPT), as the plans do:
    the ACL user needs no EVAL."""
    return client.register_script(SCRIPTS[name])(keys=keys, args=args)


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class RevocationMemory:
    """The revocations one process made: Redis hex -> (monotonic expiry, the
    secret the hex was made with). Never the token. Shared by the process's
    blocking and asyncio shared caches and its subscriber."""

    def __init__(self) -> None:
        #: hex -> (monotonic expiry, secret, the sealed revocation value).
        self.items: dict[str, tuple[float, bytes, bytes]] = {}
        self.lock = threading.Lock()
        #: Hexes whose announcement may not have reached Redis.
        self.unannounced: set[str] = set()
        #: Hexes whose revocation key may not have reached Redis: written
        #: again at this process's next successful round trip.
        self.unwritten: set[str] = set()

    def live(self, now: float) -> list[tuple[str, float, bytes, bytes]]:
        with self.lock:
            return [
                (h, until, s, sealed)
                for h, (until, s, sealed) in self.items.items()
                if until > now
            ]


class Fleet:
    """One process's subscriber and what it needs: aliases, seals, memory.

    :param settings: validated options; ``redis_url`` must be set.
    :param cache: the in-process cache messages are applied to.
    :param stats: counters (``fleet_pushed``, ``fleet_replayed``, ``fleet_resyncs``).
    """

    def __init__(
        self,
        settings: Settings,
        cache: IdentityCache,
        stats: Stats,
        emit: Callable[..., None] | None = None,
    ) -> None:
        if not settings.uses_redis:
            raise ValueError("neither redis_url nor redis_client is set")
        self.settings = settings
        self._cache = cache
        self._stats = stats
        self._emit = emit
        self._clock = settings.clock
        self._wall: Callable[[], float] = time.time
        self._codec = Codec(settings.api_base_url, settings.client_ids, settings.cache_ttl)
        self.memory = RevocationMemory()
        #: Redis hex -> in-process key, of tokens looked up here (bounded LRU).
        self._aliases: OrderedDict[str, bytes] = OrderedDict()
        self._alias_max = max(1024, 2 * settings.cache_maxsize)
        self._lock = threading.Lock()
        #: Secrets messages may be sealed with (the configured one, or the
        #: generated ones the shared caches learnt).
        self._secrets: list[bytes] = list(settings.cache_key_secrets)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = _PID[0]
        self._subscribed = False
        #: Stream id of the last message applied (``None``: never connected).
        self._last_id: bytes | None = None
        #: Counters for tests: messages dropped for a bad seal, reconnects.
        self.forged = 0
        self.connects = 0

    def __repr__(self) -> str:
        return f"Fleet(subscribed={self._subscribed})"

    # -- what the plans and the resolver call ------------------------------------

    @property
    def subscribed(self) -> bool:
        """Whether pushes reach this process now (so its copies may be trusted)."""
        return self._subscribed

    def note(self, digest: str, token: str) -> None:
        """``token`` (whose Redis hex is ``digest``) is looked up here."""
        key = token_digest(token.encode("ascii"))
        with self._lock:
            aliases = self._aliases
            aliases[digest] = key
            aliases.move_to_end(digest)
            while len(aliases) > self._alias_max:
                aliases.popitem(last=False)

    def report(self, event: str, **data: Any) -> None:
        """Count a shared-cache event in the stats and pass it to ``on_event``."""
        stats = self._stats
        if event in ("redis_error", "redis_fault"):
            stats.redis_errors += 1
            if event == "redis_fault":
                stats.redis_faults += 1
        elif event == "redis_breaker_open":
            stats.redis_breaker_opened += 1
        elif event == "redis_reconnect":
            stats.redis_reconnects += 1
        if self._emit is not None:
            self._emit(event, **data)

    def learn_secret(self, secret: bytes) -> None:
        with self._lock:
            if secret not in self._secrets:
                self._secrets = [secret, *self._secrets][:4]

    def message(self, secret: bytes, kind: str, digest: str, until_wall: float = 0.0) -> bytes:
        """A sealed announcement: ``r <hex> <epoch ms>`` (revoked until) or ``d <hex>``."""
        body = f"{kind} {digest} {int(until_wall * 1000)}".encode()
        return self._seal(secret, body)

    def _seal(self, secret: bytes, body: bytes) -> bytes:
        tag = hmac.new(self._codec.mac_key(secret), _EVENTS_LABEL + body, hashlib.sha256)
        return tag.hexdigest().encode() + b" " + body

    def start(self) -> None:
        """Start the subscriber if it is not running (in this process: after a
        fork the parent's thread is gone, and so is what it knew). Called after
        each successful Redis round trip, so it is cheap when running, and a
        Redis never reached costs no subscriber connections."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == _PID[0]:
            return
        with self._lock:
            if _PID[0] != self._pid:
                self._pid, self._thread, self._last_id = _PID[0], None, None
                self._subscribed = False
                self._stop = threading.Event()
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="lwa-fleet-subscriber", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the subscriber; a later :meth:`start` resumes from the last id."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._subscribed = False

    # -- applying messages -------------------------------------------------------

    def _apply(self, sealed: bytes, replayed: bool) -> None:
        tag, _, body = sealed.partition(b" ")
        with self._lock:
            secrets = list(self._secrets)
        if not any(hmac.compare_digest(tag, self._seal(s, body).partition(b" ")[0])
                   for s in secrets):
            self.forged += 1
            return
        try:
            kind, digest, until_ms = body.decode("ascii").split(" ")
            until = int(until_ms) / 1000
        except ValueError:
            self.forged += 1
            return
        with self._lock:
            key = self._aliases.get(digest)
        if key is None:
            return  # never looked up here: nothing to drop
        if kind == "r":
            left = until - self._wall()
            if left <= 0:
                return
            self._cache.revoke(key, self._clock() + left)
        elif kind == "d":
            self._cache.discard(key)
        else:
            return
        if replayed:
            self._stats.fleet_replayed += 1
        else:
            self._stats.fleet_pushed += 1
        if self._emit is not None:
            self._emit("fleet_replayed" if replayed else "fleet_pushed")

    def _advance(self, raw_id: bytes) -> bool:
        """Move the last id to ``raw_id``; false if it is not newer (seen already)."""
        if self._last_id is not None and _stream_id(raw_id) <= _stream_id(self._last_id):
            return False
        self._last_id = raw_id
        return True

    def _resync(self) -> None:
        """Messages were lost: trust nothing held in memory (revocations stay)."""
        self._cache.clear()
        self._stats.fleet_resyncs += 1
        if self._emit is not None:
            self._emit("fleet_resync")
        logger.info(
            "revocation messages may have been missed (the Redis stream %s "
            "was trimmed or lost); this process dropped the identities it held in memory",
            STREAM,
            extra=log_fields("fleet_resync"),
        )

    # -- the subscriber ------------------------------------------------------------

    def _client(self) -> Any:  # redis.Redis, whose stubs type replies loosely
        budget = max(1.0, self.settings.redis_timeout)
        limits = Limits(timeout=budget * 2, connect_timeout=budget, max_connections=4,
                        blocking=False)
        return make_client(self.settings, limits, asyncio=False)

    def _catch_up(self, client: Any) -> None:
        if self._last_id is None:
            # A fresh start: nothing held here needs replaying. Mark where we
            # begin with an entry of our own, so the id is surely in the stream.
            self._last_id = client.xadd(STREAM, {"m": b"hello"}, maxlen=STREAM_MAXLEN,
                                        approximate=True)
            return
        start = self._last_id
        first = True
        while True:
            entries = client.xrange(STREAM, min=start, count=_BATCH)
            if first:
                first = False
                if not entries or entries[0][0] != start:
                    self._resync()
                    self._last_id = client.xadd(STREAM, {"m": b"hello"},
                                                maxlen=STREAM_MAXLEN, approximate=True)
                    return
            for raw_id, fields in entries:
                if self._advance(raw_id):
                    value = fields.get(b"m", b"")
                    if value != b"hello":
                        self._apply(value, replayed=True)
            if len(entries) < _BATCH:
                return
            start = entries[-1][0]

    def _reassert(
        self, client: Any, announce: bool, between: Callable[[], None] | None = None
    ) -> None:
        """Write again the live revocations this process made (and announce them).

        ``between`` runs after each round trip: the listening loop hands in
        its drain of pending pushes, since on a Cluster a process with
        thousands of revocations makes one round trip per bucket, and pushes
        must not wait for the whole pass (their promise is 100 ms).
        """
        now = self._clock()
        live = self.memory.live(now)
        if not live:
            return
        with self.memory.lock:
            pending = set(self.memory.unannounced)
        configured = self.settings.cache_key_secret
        by_secret: dict[bytes, list[tuple[str, int, bytes]]] = {}
        for digest, until, secret, sealed in live:
            px = int((until - now) * 1000)
            if px > 0:
                by_secret.setdefault(secret, []).append((digest, px, sealed))
        for secret, revocations in by_secret.items():
            # A generated secret: put back if gone (never a new one), and
            # nothing is written if Redis holds another: those keys would be
            # in no one's key space. (Its own round trip: the secret is in a
            # slot of its own on a Cluster.)
            generated = configured is None
            if generated and _run(client, "secret", (SECRET_KEY,), (secret,)) != secret:
                continue
            for keys, args in replay_batches(revocations, per_bucket=is_cluster(client)):
                _run(client, "replay", keys, args)
                if between is not None:
                    between()
            messages = [
                self.message(secret, "r", digest, self._wall() + px / 1000)
                for digest, px, _ in revocations
                if announce or digest in pending
            ]
            for start in range(0, len(messages), REPLAY_BATCH):
                batch = messages[start : start + REPLAY_BATCH]
                _run(client, "announce", (STREAM,), (CHANNEL, STREAM_MAXLEN, *batch))
                if between is not None:
                    between()
        with self.memory.lock:
            self.memory.unannounced -= pending

    def _run(self, stop: threading.Event) -> None:
        pause = RECONNECT_MIN
        while not stop.is_set():
            client: Any = None
            pubsub: Any = None
            try:
                client = self._client()
                pubsub = client.pubsub()
                pubsub.subscribe(CHANNEL)
                # The confirmation first: from then on nothing published is missed.
                if pubsub.get_message(timeout=self.settings.redis_timeout * 20 + 1) is None:
                    raise redis.ConnectionError("no SUBSCRIBE confirmation")
                self._catch_up(client)
                self.connects += 1
                self._reassert(client, announce=True)
                self._subscribed = True
                pause = RECONNECT_MIN
                self._listen(stop, client, pubsub)
            except Exception as exc:
                if not stop.is_set():
                    logger.debug(
                        "revocation subscriber: %r", exc, extra=log_fields("subscriber_error")
                    )
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):  # a broken socket
                    if pubsub is not None:
                        pubsub.close()
                with contextlib.suppress(Exception):
                    if client is not None:
                        close_client(client)
            stop.wait(_JITTER.uniform(pause / 2, pause))
            pause = min(pause * 2, RECONNECT_MAX)

    def _listen(self, stop: threading.Event, client: Any, pubsub: Any) -> None:
        heard = next_ping = self._clock()
        next_reassert = heard + REASSERT_INTERVAL

        def take(message: Any) -> None:
            if message.get("type") == "message":
                raw_id, _, sealed = bytes(message["data"]).partition(b" ")
                if self._advance(raw_id):
                    self._apply(sealed, replayed=False)

        def drain() -> None:
            nonlocal heard
            while (message := pubsub.get_message(timeout=0)) is not None:
                heard = self._clock()
                take(message)

        while not stop.is_set():
            message = pubsub.get_message(timeout=min(0.2, HEARTBEAT))
            now = self._clock()
            if message is not None:
                heard = now
                take(message)
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + HEARTBEAT
            if now - heard > 3 * HEARTBEAT:
                raise redis.ConnectionError("the subscriber's heartbeat went unanswered")
            if now >= next_reassert:
                next_reassert = now + REASSERT_INTERVAL
                self._reassert(client, announce=False, between=drain)
