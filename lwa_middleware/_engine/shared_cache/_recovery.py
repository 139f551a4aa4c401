"""What the revocation subscriber does for durability: writing again the
revocations this process made (:meth:`_Recovery._reassert`), and noticing,
within :data:`._fleet.CHECK_INTERVAL`, that Redis lost its data or that its
generated secret changed (:meth:`_Recovery._check`).

A mixin of :class:`._fleet.Fleet` (whose ``__init__`` sets the state declared
here). On a data loss every process re-asserts *and announces* the live
revocations it made, so workers that learnt a token again since the loss
drop it from memory; a loss is announced once a process, whichever of its
subscriber's check or its lookups claims it first (:meth:`claim_loss`).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._observe import fields as log_fields
from ..cache import IdentityCache
from ._channel import CHANNEL, STREAM, STREAM_MAXLEN, seal
from ._codec import EPOCH_KEY, REPLAY_BATCH, SECRET_KEY, Codec, replay_batches
from ._scripts import run_script as _run
from ._topology import is_cluster

if TYPE_CHECKING:
    from ..config import Settings
    from ..stats import Stats

logger = logging.getLogger("lwa_middleware.shared_cache")


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
        #: Not before this (monotonic) time: a Cluster node refused them.
        self.rewrite_after = -math.inf

    def live(self, now: float) -> list[tuple[str, float, bytes, bytes]]:
        with self.lock:
            return [
                (h, until, s, sealed)
                for h, (until, s, sealed) in self.items.items()
                if until > now
            ]


class _Recovery:
    """Re-assertion and data-loss checks, over the state :class:`._fleet.Fleet` sets."""

    settings: Settings
    memory: RevocationMemory
    secret: bytes | None
    losses: int
    _cache: IdentityCache
    _stats: Stats
    _emit: Callable[..., None] | None
    _clock: Callable[[], float]
    _wall: Callable[[], float]
    _codec: Codec
    _lock: threading.Lock
    _secrets: list[bytes]
    _unnamed: set[bytes]
    _epoch: bytes

    def learn_secret(self, secret: bytes) -> None:
        """Redis holds the generated ``secret``: the one in use from now on
        (the first to seal with). The others learnt stay known, so pushes
        under any of them are accepted. If it replaced another, memory is
        dropped: revocations pushed under it before it was known here were
        not understood (whoever reads it first, a lookup or the check)."""
        with self._lock:
            self.secret = secret
            replaced = bool(self._secrets) and self._secrets[0] != secret
            if not self._secrets or replaced:
                rest = [s for s in self._secrets if s != secret]
                self._secrets = [secret, *rest][:4]
            unnamed, self._unnamed = self._unnamed, set()
        for key in unnamed:
            # Cached before a push could name it: read again (Redis may hold
            # its revocation), not trusted for cache_ttl (issue 24, item 1).
            self._cache.discard(key)
        if replaced:
            self._resync("the generated key secret in Redis changed")

    def known_secrets(self) -> list[bytes]:
        """The secrets pushes are accepted under, the one in use first."""
        with self._lock:
            return list(self._secrets)

    def message(self, secret: bytes, kind: str, digest: str, until_wall: float = 0.0) -> bytes:
        """A sealed announcement: ``r <hex> <epoch ms>`` (revoked until) or ``d <hex> 0``."""
        body = f"{kind} {digest} {int(until_wall * 1000)}".encode()
        return seal(self._codec.mac_key(secret), body)

    def _resync(self, why: str = "") -> None:
        """Messages were lost: trust nothing held in memory (revocations stay)."""
        self._cache.clear()
        self._stats.fleet_resyncs += 1
        if self._emit is not None:
            self._emit("fleet_resync")
        logger.info(
            "revocation messages may have been missed (%s); this process "
            "dropped the identities it held in memory",
            why or f"the Redis stream {STREAM} was trimmed or lost",
            extra=log_fields("fleet_resync"),
        )

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

    def _check(self, client: Any, between: Callable[[], None] | None = None) -> None:
        """Whether Redis lost its data (the data set's marker changed or went
        missing) or its generated secret changed: one round trip each.

        On a loss, every live revocation this process made is written again
        *and announced*, so workers that learnt a token again meanwhile drop
        it. Every process runs this check, so each re-asserts what it holds
        within about :data:`CHECK_INTERVAL`."""
        reply = _run(client, "marker", (EPOCH_KEY,), (self._epoch, secrets.token_hex(8)))
        seen = reply[0] if isinstance(reply, list) and reply else reply
        lost = False
        if isinstance(seen, bytes):
            if self._epoch:  # known, and now another or missing
                lost = self.claim_loss(seen)
            else:
                self._epoch = seen
        if self.settings.cache_key_secret is None:
            self._check_secret(client)
        if lost:
            self.losses += 1
            logger.warning(
                "the shared cache (Redis) lost its data; this process "
                "writes and announces again the revocations it made",
                extra=log_fields("redis_data_lost"),
            )
            self._reassert(client, announce=True, between=between)

    def claim_loss(self, marker: bytes) -> bool:
        """The data set's marker is now ``marker`` after a loss: false if this
        process already re-asserted (and announced) for it, by the
        subscriber's check or a lookup, else true (the caller announces)."""
        with self._lock:
            if self._epoch == marker:
                return False
            self._epoch = marker
            return True

    def _check_secret(self, client: Any) -> None:
        """Put the generated secret in use back if it is gone (never a new
        one, so workers converge on the one they share); if Redis holds
        another (a worker minted one meanwhile), learn it (:meth:`learn_secret`)."""
        known = self.known_secrets()
        if not known:
            return  # no lookup made here yet
        reply = _run(client, "secret", (SECRET_KEY,), (known[0],))
        if isinstance(reply, bytes) and len(reply) >= 16:
            self.learn_secret(reply)
