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

Push is at-most-once, so it is paired with replay. When the subscriber
(re)connects it first subscribes and then reads the stream, a page at a time,
after the last position it knows: the id of the last verified push if the
stream holds that very message there, else the last id it read from the
stream itself (a pushed id is not sealed, see :mod:`._channel`). So nothing
published while it was away is missed. If neither is in the stream any more
(trimmed past it, ``FLUSHALL``, a restart without persistence), the gap cannot be
replayed: the process drops every identity it holds in memory (never its
revocations) and asks Redis or LWA again. While the subscriber is not
connected, new local entries are trusted only ``local_cache_ttl``
(:attr:`Fleet.subscribed`); while it is, for ``cache_ttl``, as without Redis.

Messages carry only keyed digests (the Redis hex of the token) and an epoch
expiry, sealed with the shared cache's MAC key, so whoever can ``PUBLISH``
without the secret cannot log users out; nothing of a message is used before
its seal verifies, and a malformed one is counted and dropped, never raised
(the rules are in :mod:`._channel`). The subscriber maps a digest to the
in-process key through :attr:`Fleet` aliases noted when a token was looked up
here; a digest this process never looked up has nothing to drop (its next
lookup reads the revocation from Redis, and keeps it until the token expires).

Revocations this process made are remembered (:class:`RevocationMemory`,
digest and expiry, never the token) and *re-asserted* by the subscriber: on
each (re)connect and every :data:`REASSERT_INTERVAL` seconds, so a revocation
key evicted under ``allkeys-lru`` comes back. Re-asserting writes; it
announces only what was never announced (a ``revoke()`` whose write failed):
the other workers have the rest, so a reconnect costs no announcements. Every
:data:`CHECK_INTERVAL` the subscriber also checks the data set's marker and
the generated secret (:mod:`._recovery`): after a data loss every process
writes *and announces* its revocations again within about a second, idle or
not.

Every monotonic reading is of ``settings.clock``; the real-time waits are the
socket's (a heartbeat :data:`HEARTBEAT` and the reconnect pause).
"""

from __future__ import annotations

import contextlib
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
from ._channel import (
    ASK_SECRET,
    CHANNEL,
    MAX_MESSAGE,
    STREAM,
    STREAM_MAXLEN,
    Message,
    open_sealed,
    split_push,
    stream_id,
)
from ._codec import Codec
from ._recovery import RevocationMemory, _Recovery
from ._scripts import run_script as _run
from ._topology import Limits, close_client, make_client

if TYPE_CHECKING:
    from ..config import Settings
    from ..stats import Stats

logger = logging.getLogger("lwa_middleware.shared_cache")

#: Seconds between two PINGs on the subscriber's connection; three missed
#: answers and it reconnects (a black-holed Redis is noticed in ~3 s).
HEARTBEAT: Final = 1.0
#: Seconds between two re-assertions of the revocations this process made.
REASSERT_INTERVAL: Final = 30.0
#: Seconds between two data-loss checks of the subscriber (the data set's
#: marker, and a generated secret): one or two EVALSHA, so an idle process
#: notices a FLUSHALL or a deleted secret within about this long.
CHECK_INTERVAL: Final = 1.0
#: The least seconds between two checks made because a process asked for the secret.
_ASKED_GAP: Final = 0.1
#: Jitter of its own: the global generator is the application's (and its
#: tests', which may seed it or, like hypothesis, watch who draws from it).
_JITTER: Final = random.Random()
#: Reconnect pauses: first, and the cap of the doubling (with full jitter).
RECONNECT_MIN: Final = 0.05
RECONNECT_MAX: Final = 2.0
#: Stream entries read per round trip when catching up (by the ``page``
#: script, which drops entries over MAX_MESSAGE bytes unread: at most
#: _BATCH * MAX_MESSAGE bytes held at once). Small, because the script
#: itself reads whole entries: junk of 1 MiB an entry costs Redis _BATCH MiB
#: a round trip, which must stay well within the subscriber's reply deadline
#: (a first connect pages too, from a minute before the first token).
_BATCH: Final = 32
#: Seconds before this process's first noted token its first connect replays
#: the stream from: room for the app's and Redis's clocks to disagree.
CATCH_UP_SKEW: Final = 60.0
_HELLO: Final = b"hello"

#: This process's id, kept current across forks without a syscall per request.
_PID = [os.getpid()]


def _forked() -> None:
    _PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Fleet(_Recovery):
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
        #: In-process key -> how many aliases name it.
        self._noted: dict[bytes, int] = {}
        #: In-process keys cached before any secret was known (unnamed).
        self._unnamed: set[bytes] = set()
        #: Epoch seconds of this process's first noted token (None: none yet):
        #: a first connect replays the stream from a little before it.
        self._born: float | None = None
        self._lock = threading.Lock()
        #: Secrets messages may be sealed with (the configured one, or the
        #: generated ones the shared caches learnt).
        self._secrets: list[bytes] = list(settings.cache_key_secrets)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = _PID[0]
        self._subscribed = False
        #: The last stream id read from the stream itself (``None``: never
        #: connected): pushes at or before it were applied when catching up.
        self._floor: bytes | None = None
        #: The id and message of the last verified push: where to resume if
        #: the stream confirms it (the id itself is not sealed).
        self._candidate: tuple[bytes, bytes] | None = None
        #: The data set's marker as the subscriber last saw it (b"": never).
        self._epoch = b""
        #: The generated secret Redis held at the last check (None: unchecked).
        self.secret: bytes | None = None
        #: A process asked for the secret: check it now, not in a second.
        self._check_soon = False
        #: Whether pushes at or before the floor are skipped: only those
        #: buffered while catching up (read from the stream already). Later,
        #: an id is never used to skip anything.
        self._filtering = False
        #: Counters for tests and metrics: messages dropped for a bad seal,
        #: dropped as malformed or oversized, reconnects, data losses noticed.
        self.forged = 0
        self.malformed = 0
        self.connects = 0
        self.losses = 0

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
        if self._born is None:
            self._born = self._wall()
        with self._lock:
            aliases, noted = self._aliases, self._noted
            if digest not in aliases:
                noted[key] = noted.get(key, 0) + 1
            aliases[digest] = key
            aliases.move_to_end(digest)
            while len(aliases) > self._alias_max:
                _, gone = aliases.popitem(last=False)
                if noted[gone] <= 1:
                    del noted[gone]
                else:
                    noted[gone] -= 1

    def knows(self, key: bytes) -> bool:
        """Whether a push can reach the in-process entry ``key``: its token
        was noted here (issue 24, item 1). If not, and a generated secret is
        yet to be learnt (Redis never reached), ``key`` is kept to be dropped
        from memory when it is (:meth:`learn_secret`): until then no push can
        reach this process anyway, and copies live as long as without Redis."""
        with self._lock:
            if key in self._noted:
                return True
            if not self._secrets and len(self._unnamed) < self._alias_max:
                self._unnamed.add(key)
                return True
            return False

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
                self._pid, self._thread, self._floor = _PID[0], None, None
                self._candidate, self._epoch = None, b""
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

    def _open(self, sealed: object) -> Message | None:
        """The message in ``sealed`` once its seal verifies; else counted, None."""
        opened = open_sealed(sealed, [self._codec.mac_key(s) for s in self.known_secrets()])
        if isinstance(opened, Message):
            return opened
        if opened == "forged":
            self.forged += 1
        else:
            self.malformed += 1
        return None

    def _apply(self, message: Message, replayed: bool) -> None:
        with self._lock:
            key = self._aliases.get(message.digest)
        if key is None:
            return  # never looked up here: nothing to drop
        if message.kind == "r":
            left = message.until - self._wall()
            if left <= 0:
                return
            self._cache.revoke(key, self._clock() + left)
        else:
            self._cache.discard(key)
        if replayed:
            self._stats.fleet_replayed += 1
        else:
            self._stats.fleet_pushed += 1
        if self._emit is not None:
            self._emit("fleet_replayed" if replayed else "fleet_pushed")

    def _take(self, data: object) -> None:
        """A pushed ``<stream id> <sealed>``: the seal first, then the id."""
        if data == ASK_SECRET:
            # Harmless if forged: at most a secret check a loop turn.
            self._check_soon = True
            return
        parts = split_push(data)
        if parts is None:
            self.malformed += 1
            return
        raw_id, sealed = parts
        message = self._open(sealed)
        if message is None:
            return
        pushed = stream_id(raw_id)
        if pushed is None:
            self.malformed += 1
            return
        floor = stream_id(self._floor)
        if self._filtering and floor is not None and pushed <= floor:
            return  # applied already while catching up
        self._apply(message, replayed=False)
        self._candidate = (raw_id, sealed)

    # -- the subscriber ------------------------------------------------------------

    def _client(self) -> Any:  # redis.Redis, whose stubs type replies loosely
        budget = max(1.0, self.settings.redis_timeout)
        limits = Limits(timeout=budget * 2, connect_timeout=budget, max_connections=4,
                        blocking=False)
        return make_client(self.settings, limits, asyncio=False)

    @staticmethod
    def _page(client: Any, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Stream entries from ``start`` on: ``(id, message)``, the message
        ``b""`` for an entry too big or not ours (dropped unread, in Redis)."""
        flat = _run(client, "page", (STREAM,), (start, count, MAX_MESSAGE))
        return [(bytes(flat[i]), bytes(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]

    def _resume_point(self, client: Any) -> bytes | None:
        """The last verified push's id, if the stream holds that very
        message there; else the last id read from the stream, if it is still
        there; else ``None`` (a gap)."""
        # Taken once: whatever it holds cannot fail two reconnects.
        candidate, self._candidate = self._candidate, None
        if candidate is not None and self._page(client, candidate[0], 1) == [candidate]:
            return candidate[0]
        floor = self._floor
        if floor is not None and [i for i, _ in self._page(client, floor, 1)] == [floor]:
            return floor
        return None

    def _catch_up(self, client: Any) -> None:
        if self._floor is not None:
            start = self._resume_point(client)
            if start is None:
                self._resync()
        else:
            # A first connect: this process may already serve tokens it
            # looked up while Redis was skipped, failing or not yet reached;
            # what was pushed since is replayed (issue 24, item 1).
            start = self._since()
        last = self._replay(client, start) if start is not None else None
        if last is None and (start is None or self._floor is None):
            # Mark where we begin with an entry of our own, so the id is surely
            # in the stream (with nothing held here, nothing needs replaying).
            last = bytes(_run(client, "hello", (STREAM,), (STREAM_MAXLEN, _HELLO)))
        self._floor, self._candidate = last or start, None

    def _since(self) -> bytes | None:
        """The stream id to replay from on a first connect: :data:`CATCH_UP_SKEW`
        seconds before this process first noted a token (Redis's clock makes
        the ids); ``None`` if it noted none."""
        born = self._born
        if born is None:
            return None
        return f"{max(0, int((born - CATCH_UP_SKEW) * 1000))}-0".encode()

    def _replay(self, client: Any, start: bytes) -> bytes | None:
        """Apply the stream's messages after ``start``; the last id read (None: none)."""
        last: bytes | None = None
        while True:
            page = self._page(client, start, _BATCH)
            after = stream_id(start)
            for raw_id, sealed in page:
                at = stream_id(raw_id)
                if at is None or after is None or at <= after:
                    continue  # the entry resumed from
                last = raw_id
                if sealed == _HELLO:
                    continue
                if not sealed:
                    self.malformed += 1  # oversized or not ours: unread
                    continue
                message = self._open(sealed)
                if message is not None:
                    self._apply(message, replayed=True)
            if page:
                start = page[-1][0]
            if len(page) < _BATCH:
                return last

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
                # Written again, announced only if never announced: the
                # other workers have the rest (pushed, or in the stream).
                self._reassert(client, announce=False)
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
        heard = next_ping = next_check = checked = self._clock()
        next_reassert = heard + REASSERT_INTERVAL

        def take(message: Any) -> None:
            if message.get("type") != "message":
                return
            try:
                self._take(message.get("data"))
            except Exception:  # never let a message end the loop
                self.malformed += 1

        def drain() -> None:
            nonlocal heard
            while (message := pubsub.get_message(timeout=0)) is not None:
                heard = self._clock()
                take(message)

        self._filtering = True
        try:
            drain()  # what was published while catching up
        finally:
            self._filtering = False
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
            # Asked for the secret: at once, but at most every _ASKED_GAP s
            # (the question is unsealed, so anyone may repeat it).
            if now >= next_check or (self._check_soon and now >= checked + _ASKED_GAP):
                self._check_soon = False
                checked, next_check = now, now + CHECK_INTERVAL
                self._check(client, between=drain)
            if now >= next_reassert:
                next_reassert = now + REASSERT_INTERVAL
                self._reassert(client, announce=False, between=drain)
