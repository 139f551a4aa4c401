"""The shared cache's logic, written once as sans-IO plans.

Like :mod:`..flow`, each operation is a generator that yields the Redis round
trips it needs (:class:`_Call`) and the pauses it takes (:class:`_Sleep`), and
is sent each reply; a failed round trip is thrown into it. The drivers in
:mod:`._drivers` only carry these steps to redis-py, blocking or asyncio, so
both behave alike and a test can drive a plan with scripted replies and a
fake clock, without Redis.

:class:`_Plans` also holds what a worker keeps between requests: the key
secret, the leases it holds, the revocations it made (to publish them again
after data loss) and, through :class:`._health._Health`, the back-off.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import redis

from ..cache import REVOKED
from ..errors import AuthError, InvalidToken
from ..flow import Resolved
from ._channel import CHANNEL, STREAM, STREAM_MAXLEN
from ._codec import (
    EPOCH_KEY,
    MAX_VALUE_BYTES,
    REPLAY_BATCH,
    Codec,
    bucket,
    bucket_key,
    decode_rejection,
    encode_identity,
    entry_keys,
    rejection_body,
    replay_batches,
    token_key,
)
from ._fleet import Fleet
from ._recovery import RevocationMemory
from ._scripts import (
    READ_HIT,
    READ_LEASE_HELD,
    READ_LEASE_TAKEN,
    READ_REJECTED,
    READ_REVOKED,
)
from ._secret import _Secrets, warn_generated_secret
from ._steps import _Call, _nothing, _Plan, _Waiting
from ._tier import Found, SharedRevocation

if TYPE_CHECKING:
    from ..config import Settings

#: Seconds before a Cluster process writes again the revocations that a
#: failing node refused (each round trip would try otherwise).
REWRITE_PAUSE: Final = 1.0
#: Revocations a process remembers, to publish them again after data loss.
MAX_REMEMBERED: Final = 10_000
#: Seconds between two polls of an entry another worker is resolving: kept
#: for compatibility; waiters are now woken by the holder's publish (issue 14).
POLL_INTERVAL: Final = 0.015
#: Seconds a lease outlives its holder's lookup deadline (``timeout``): time
#: for the holder's write-back. When that write is lost (Redis stalled, the
#: holder gone) the waiters stop waiting then, not a whole second deadline
#: later, and ask LWA themselves (issue 24, item 4).
LEASE_MARGIN: Final = 0.5


#: A read to open: its reply, keys and secret (or ``None``: nothing found).
_Read = tuple[Any, tuple[str, ...], bytes] | None


class _Plans(_Secrets):
    """The state of one worker's shared cache, and the plans that use it.

    :param settings: validated options; ``redis_url`` must be set. Monotonic
        time is read from ``settings.clock``.
    :param lease: take a lease on a miss (cross-process single-flight).
    :param fleet: the process's subscriber: lookups note their digests there,
        revocations are remembered and announced through it.
    """

    def __init__(
        self, settings: Settings, *, lease: bool = True, fleet: Fleet | None = None
    ) -> None:
        if not settings.uses_redis:
            raise ValueError("neither redis_url nor redis_client is set")
        # Also the clock a Resolved's expires_mono is read against (a hit's is
        # rebuilt on it, a put's TTL measured on it), so it must be the one the
        # caller measures expires_mono with: time.monotonic, the default.
        super().__init__(settings.clock, fleet.report if fleet is not None else None)
        self.settings = settings
        self.lease = lease
        #: Epoch seconds, for ``expires_at`` (the only wall-clock reading).
        self._wall: Callable[[], float] = time.time
        self._configured_secret = settings.cache_key_secret
        if settings.cache_key_secret is None:
            warn_generated_secret()
        self._secret: bytes | None = settings.cache_key_secret
        self._secret_checked = self._clock()
        self._codec = Codec(
            settings.api_base_url,
            settings.client_ids,
            settings.cache_ttl,
            aead=settings.cache_key_secret is not None,
        )
        #: Configured secrets that are read but no longer written (rotation).
        self._old_secrets: tuple[bytes, ...] = settings.cache_key_secrets[1:]
        self._lease_px = max(1, int((settings.timeout + LEASE_MARGIN) * 1000))
        #: A waiter waits as long as the holder may take (its lease's PTTL, at
        #: most this): the holder's lookup deadline and the margin of its write.
        self._lease_wait = self._lease_px / 1000
        self._leases: dict[str, tuple[str, float]] = {}
        self._leases_lock = threading.Lock()
        #: The data-loss marker of each bucket this worker met, as it last saw
        #: it (at most 4096: see _check_lost).
        self._epochs: dict[str, bytes] = {}
        #: Whether Redis is a Cluster: set by the driver once its client is
        #: made; replays are then split per bucket (one hash slot a call).
        self.cluster = False
        #: The data set's marker (EPOCH_KEY) as this worker last saw it (b"": never).
        self._epoch = b""
        self._fleet = fleet
        #: Revocations this process made: Redis hex -> (monotonic expiry, the
        #: secret the hex was made with). Never the token. Shared with the
        #: fleet's subscriber, which re-asserts them.
        memory = fleet.memory if fleet is not None else RevocationMemory()
        self._memory = memory
        self._revocations: dict[str, tuple[float, bytes, bytes]] = memory.items
        self._revocations_lock = memory.lock
        #: Counters, for tests and metrics (with errors and skipped): waits on
        #: another worker's lease, corrupt values dropped, times this worker
        #: found Redis had lost its data, and revocations it published again then.
        self.waits = 0
        self.corrupt = 0
        self.restores = 0
        self.republished = 0

    def __repr__(self) -> str:
        # The URL may carry a password: show neither.
        return f"{type(self).__name__}(lease={self.lease})"

    def _succeeded(self) -> None:
        super()._succeeded()
        if self._fleet is not None:
            self._fleet.start()  # subscribe once Redis is known to answer

    def _failed(self, exc: Exception) -> bool:
        backed_off = super()._failed(exc)
        if backed_off and self._configured_secret is None:
            # Redis may come back empty: read the secret again first.
            self._secret_checked = -math.inf
        return backed_off

    # -- what the drivers run -------------------------------------------------

    def _get(self, token: str, revocation_only: bool, lease: bool = True) -> _Plan[Found]:
        # Noted before the breaker is asked: a token served while Redis is
        # skipped or failing must still be reachable by a pushed revocation
        # (issue 24, item 1). With no secret known yet it cannot be named:
        # the resolver then trusts its copy only briefly (Fleet.knows).
        noted = self._note(token)
        return self._guarded(self._get_plan(token, revocation_only, noted, lease), None)

    def _note(self, token: str, secret: bytes | None = None) -> bytes | None:
        """Tell the subscriber ``token``'s Redis hexes under ``secret`` (the
        one in use by default) and the older configured ones; the secret used."""
        secret = self._secret if secret is None else secret
        fleet = self._fleet
        if fleet is None or secret is None:
            return None
        for each in (secret, *self._old_secrets):
            fleet.note(self._hex(each, token), token)
        return secret

    def _put(self, token: str, resolved: Resolved) -> _Plan[None]:
        # The lease is taken off now, even if Redis is then skipped.
        lease = self._take_lease(token)
        return self._guarded(self._put_plan(token, resolved, lease), None)

    def _record_failure(self, token: str, error: AuthError) -> _Plan[None]:
        lease = self._take_lease(token)
        if not lease[1] and not isinstance(error, InvalidToken):
            return _nothing()
        return self._guarded(self._failure_plan(token, error, lease), None)

    def _discard(self, token: str) -> _Plan[None]:
        return self._durable("invalidation", lambda: self._discard_plan(token))

    def _revoke(self, token: str, seconds: float) -> _Plan[None]:
        return self._durable("revocation", lambda: self._revoke_plan(token, seconds))

    # -- keys and leases ----------------------------------------------------

    def _hex(self, secret: bytes, token: str) -> str:
        return self._codec.digest(secret, token)

    def _take_lease(self, token: str) -> tuple[str, str]:
        """``(hex, lease id)`` of the lease this process holds for ``token``, if any."""
        secret = self._secret
        if secret is None:
            return "", ""
        digest = self._hex(secret, token)
        with self._leases_lock:
            held = self._leases.pop(digest, None)
        return digest, held[0] if held is not None else ""

    def _hold(self, digest: str, lease_id: str) -> None:
        now = self._clock()
        with self._leases_lock:
            if len(self._leases) > 1024:
                # Leases of lookups that never reported back (a cancelled
                # task) expire in Redis; forget them here too.
                horizon = now - self._lease_px / 1000
                for key in [k for k, (_, at) in self._leases.items() if at < horizon]:
                    del self._leases[key]
            self._leases[digest] = (lease_id, now)

    # -- data loss -------------------------------------------------------------

    def _remember(self, token: str, secret: bytes, seconds: float) -> str:
        """Keep a revocation to publish it again: its Redis hex and its sealed
        value (never the token; the value is sealed now, while the token is
        at hand). Returns the hex."""
        digest = self._hex(secret, token)
        key = token_key("rev", digest)
        sealed = self._codec.seal(secret, key, rejection_body(REVOKED), token)
        now = self._clock()
        with self._revocations_lock:
            revocations = self._revocations
            revocations.pop(digest, None)
            if len(revocations) >= MAX_REMEMBERED:
                for k in [k for k, (until, _, _) in revocations.items() if until <= now]:
                    del revocations[k]
                while len(revocations) >= MAX_REMEMBERED:
                    del revocations[next(iter(revocations))]  # the oldest
            revocations[digest] = (now + seconds, secret, sealed)
        return digest

    def _markers(self, digest: str) -> tuple[bytes, str]:
        """The read and write scripts' last two arguments: the marker this
        worker knows for ``digest``'s bucket (b"": none), and a fresh one."""
        return self._epochs.get(bucket(digest), b""), secrets.token_hex(8)

    def _marker_changed(self, name: str, marker: bytes, created: bool) -> _Plan[None]:
        """Bucket ``name`` holds ``marker``, not the one this worker knew
        (``created``: it was missing, and the script just made it).

        A marker that changed in a bucket met before, or went missing from
        it, means the bucket lost its data. A marker missing from a bucket
        never met is a new bucket, or a loss: the data set's own marker
        (:data:`EPOCH_KEY`, one more round trip) tells which. A loss means,
        likely, the loss of the bucket's node (all of a plain Redis):
        *recover*: put back the generated secret this worker uses (never a
        new one), write again every live revocation this process made, and
        forget the other buckets' markers, so that each is learnt anew (not
        taken for another loss) when next met. Otherwise the bucket is
        learnt, and the revocations this process made in it written again."""
        lost, announce = yield from self._learn_epoch(name, created)
        # The marker is learnt first, so the loss is not noticed again: a
        # replay that fails (Redis is often flaky right after a failover)
        # leaves its revocations unwritten, for the next successful round trip.
        in_bucket = None if lost else name
        try:
            if not lost:
                self._epochs[name] = marker
                yield from self._replay_plan(None, name)
                return None
            self._epochs = {name: marker}
            self.restores += 1
            if self._configured_secret is None:
                self._secret_checked = -math.inf
                yield from self._secret_plan()
            # Announced too: a worker that learnt a token again since the
            # loss holds it in memory, and must drop it now.
            yield from self._replay_plan(None, announce=announce)
        except BaseException:
            self._mark_unwritten(in_bucket)
            raise
        return None

    def _mark_unwritten(self, in_bucket: str | None) -> None:
        """Leave the revocations this process made (those of ``in_bucket``,
        when given) for the next successful round trip to write."""
        with self._revocations_lock:
            self._memory.unwritten.update(
                digest
                for digest in self._revocations
                if in_bucket is None or bucket(digest) == in_bucket
            )

    def _learn_epoch(self, name: str, created: bool) -> _Plan[tuple[bool, bool]]:
        """``(lost, announce)`` for :meth:`_marker_changed`: whether bucket
        ``name`` lost its data, and whether this process announces the loss."""
        known = self._epochs.get(name)
        lost = known is not None
        if not lost and not created and self._epoch:
            return False, True
        # Also learns the data set's marker: at this worker's first bucket,
        # and at a loss (so the loss is not taken for another one later).
        first = not self._epoch
        reply = yield _Call("marker", (EPOCH_KEY,), (self._epoch, secrets.token_hex(8)))
        seen = reply[0] if isinstance(reply, list) and reply else reply
        if not isinstance(seen, bytes):
            return lost, True
        self._epoch = seen
        lost = lost or (created and not first)
        if lost and self._fleet is not None:
            # Not if this process's subscriber announced this loss's.
            return True, self._fleet.claim_loss(seen)
        return lost, True

    def _replay_plan(
        self, only: set[str] | None, in_bucket: str | None = None, announce: bool = False
    ) -> _Plan[None]:
        """Write again the live revocations this process made (``only`` those
        hexes, when given; only those of bucket ``in_bucket``, when given)
        that the current secrets can still name; ``announce``: push them too."""
        if self._secret is None:
            return None
        live = self._live(only, in_bucket)
        for keys, args in replay_batches([e[:3] for e in live], per_bucket=self.cluster):
            yield _Call("replay", keys, args)
            self.republished += len(keys)
        fleet = self._fleet
        if announce and fleet is not None:
            wall = self._wall()
            with self._memory.lock:  # not those a revoke() in flight announces
                live = [e for e in live if e[0] not in self._memory.unannounced]
            messages = [fleet.message(s, "r", d, wall + px / 1000) for d, px, _, s in live]
            for start in range(0, len(messages), REPLAY_BATCH):
                batch = messages[start : start + REPLAY_BATCH]
                yield _Call("announce", (STREAM,), (CHANNEL, STREAM_MAXLEN, *batch))
        return None

    def _live(
        self, only: set[str] | None, in_bucket: str | None
    ) -> list[tuple[str, int, bytes, bytes]]:
        """``(hex, PTTL, sealed value, secret)`` of each revocation to write
        again (see :meth:`_replay_plan`) with a millisecond or more to live."""
        now = self._clock()
        readable = {self._secret, *self._old_secrets}
        with self._revocations_lock:
            remembered = list(self._revocations.items())
        live = [
            (digest, int((until - now) * 1000), sealed, made_with)
            for digest, (until, made_with, sealed) in remembered
            if made_with in readable
            and (only is None or digest in only)
            and (in_bucket is None or bucket(digest) == in_bucket)
        ]
        return [e for e in live if e[1] > 0]

    def _check_lost(self, lost: Any, digest: str) -> _Plan[None]:
        """After a read or write of ``digest``'s keys: ``lost`` is 0, or the
        marker its bucket holds when it is not the one this worker knew (in a
        list when it was missing and just made)."""
        if isinstance(lost, list) and lost and isinstance(lost[0], bytes):
            yield from self._marker_changed(bucket(digest), lost[0], created=True)
        elif isinstance(lost, bytes):
            yield from self._marker_changed(bucket(digest), lost, created=False)
        elif self._memory.unwritten and self._clock() >= self._memory.rewrite_after:
            # Redis answers again after a revocation failed to reach it (its
            # write ran out of retries): publish it now, not at the next loss.
            with self._revocations_lock:
                pending, self._memory.unwritten = self._memory.unwritten, set()
            try:
                yield from self._replay_plan(pending)
            except BaseException as exc:
                with self._revocations_lock:
                    self._memory.unwritten |= pending
                if not self.cluster or not isinstance(exc, Exception):
                    raise
                # On a Cluster this failure is another node's (one failing
                # over), not this round trip's: it must not fail the caller
                # (a revoke() of a token on a healthy node raised). Written
                # again after a pause, not on every request meanwhile.
                self._memory.rewrite_after = self._clock() + REWRITE_PAUSE
        return None

    # -- plans ---------------------------------------------------------------

    def _open(self, reply: Any, keys: tuple[str, ...], secret: bytes, token: str) -> _Plan[Found]:
        """What a read found (``reply``: kind, value, PTTL) under ``keys``,
        sealed with ``secret``; a corrupt or forged value is deleted, a miss."""
        kind, raw, pttl = int(reply[0]), reply[1], int(reply[2])
        where = {READ_HIT: keys[0], READ_REJECTED: keys[1], READ_REVOKED: keys[3]}[kind]
        try:
            if not isinstance(raw, bytes) or len(raw) > MAX_VALUE_BYTES:
                raise ValueError("size")
            body = self._codec.unseal(secret, where, raw, token)
            if kind == READ_HIT:
                return self._codec.decode_identity(body, pttl, self._clock(), self._wall())
            rejection = decode_rejection(body)
            if kind == READ_REVOKED and pttl > 0:
                return SharedRevocation(rejection.description, pttl / 1000)
            return rejection
        except (ValueError, KeyError, TypeError):
            # Corrupt, of another schema, or forged (its MAC fails).
            self.corrupt += 1
            self._log("a corrupt or forged shared cache entry was dropped")
            yield _Call("delete", (where,))
            return None

    def _get_plan(
        self,
        token: str,
        revocation_only: bool = False,
        noted: bytes | None = None,
        lease: bool = True,
    ) -> _Plan[Found]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        if secret != noted:  # learnt (or changed) since _get noted it
            self._note(token, secret)
        revoked, older = yield from self._older_plan(token, revocation_only)
        if revoked is not None:
            return (yield from self._open(*revoked, token))
        keys = entry_keys(digest)
        lease_id = secrets.token_hex(8)
        take_lease = self.lease and lease and not revocation_only and older is None
        lease_px = self._lease_px if take_lease else 0
        mode = "1" if revocation_only else "0"
        waiting = _Waiting()
        while True:
            reply = yield _Call(
                "read", keys, (lease_id, lease_px, mode, *self._markers(digest))
            )
            yield from self._check_lost(reply[0], digest)
            reply = reply[1:]
            kind = int(reply[0])
            if kind in (READ_HIT, READ_REJECTED, READ_REVOKED):
                return (yield from self._open(reply, keys, secret, token))
            if older is not None:  # only under an older secret
                return (yield from self._open(*older, token))
            if kind != READ_LEASE_HELD:
                self._missed(kind, reply, digest, lease_id)
                return None
            # Another worker is asking LWA: wait for its answer, as long as its
            # lease says it may take, woken by its publish on the lease key.
            if waiting.deadline is None:
                self.waits += 1
            step = waiting.step(self._clock(), reply, self._lease_wait, keys[2])
            if step is None:
                return None
            yield step

    def _older_plan(self, token: str, revocation_only: bool) -> _Plan[tuple[_Read, _Read]]:
        """Rotation: ``(revocation, identity)`` read under the older secrets
        (each ``None`` if none was). They are in buckets of their own (other
        slots, on a Cluster): one read each, before the main one, so a
        revocation under any secret outranks everything and an identity
        found there takes no lease."""
        older: _Read = None
        for old in self._old_secrets:
            old_digest = self._hex(old, token)
            old_keys = entry_keys(old_digest)
            reply = yield _Call(
                "read",
                old_keys,
                ("", 0, "1" if revocation_only else "2", *self._markers(old_digest)),
            )
            yield from self._check_lost(reply[0], old_digest)
            kind = int(reply[1])
            if kind == READ_REVOKED:
                return (reply[1:], old_keys, old), None
            if kind == READ_HIT and older is None:
                older = (reply[1:], old_keys, old)
        return None, older

    def _missed(self, kind: int, reply: Any, digest: str, lease_id: str) -> None:
        """A read found nothing: hold the lease it took, if it took one."""
        if kind == READ_LEASE_TAKEN:
            # The lease's value carries its fencing id: only that exact
            # lease is released by the put.
            value = reply[1] if len(reply) > 1 else None
            self._hold(digest, value.decode() if isinstance(value, bytes) else lease_id)
        elif len(reply) > 1 and reply[1] == b"oom":
            self._full()  # no lease could be taken: a plain miss

    def _put_plan(self, token: str, resolved: Resolved, lease: tuple[str, str]) -> _Plan[None]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        if self._fleet is not None:
            self._fleet.note(digest, token)
        lease_id = lease[1] if lease[0] == digest else ""
        seconds = min(self.settings.cache_ttl, resolved.expires_mono - self._clock())
        px = max(1, int(seconds * 1000)) if seconds > 0 else 0
        if px == 0 and not lease_id:
            return None
        keys = entry_keys(digest)[:5]
        value = (
            self._codec.seal(secret, keys[0], encode_identity(resolved), token) if px else b""
        )
        lost = yield _Call("write", keys, (value, px, lease_id, *self._markers(digest)))
        if lost == -1:
            self._full()  # not stored: the lookup is still answered
            return None
        yield from self._check_lost(lost, digest)
        return None

    def _failure_plan(
        self,
        token: str,
        error: AuthError,
        lease: tuple[str, str],
        seconds: float | None = None,
        secret: bytes | None = None,
    ) -> _Plan[None]:
        if secret is None:
            secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        lease_id = lease[1] if lease[0] == digest else ""
        lease_key = token_key("lease", digest)
        if isinstance(error, InvalidToken):
            # Whatever is remembered, the identity goes: LWA just said this
            # token is no good (so no worker serves it again, stale or not).
            if seconds is None:
                seconds = self.settings.negative_cache_ttl if error.remember else 0.0
            px = max(1, int(seconds * 1000)) if seconds > 0 else 0
            revoked = error.description == REVOKED
            target = token_key("rev" if revoked else "rej", digest)
            body = rejection_body(error.description)
            value = self._codec.seal(secret, target, body, token) if px else b""
            keys = (
                target,
                token_key("id", digest),
                lease_key,
                token_key("rev", digest),
                bucket_key("epoch", digest),
            )
            # A revocation is written even past maxmemory (see _scripts._REVOKE).
            name = "revoke" if revoked else "write"
            lost = yield _Call(name, keys, (value, px, lease_id, *self._markers(digest)))
            if lost == -1 and revoked:  # a Redis < 7 ran it unflagged, and is full
                raise redis.exceptions.OutOfMemoryError("the revocation was not stored")
            yield from self._check_lost(lost, digest)
        elif lease_id:
            yield _Call("release", (lease_key,), (lease_id,))
        return None

    def _revoke_plan(self, token: str, seconds: float) -> _Plan[None]:
        if self._secret is not None:
            # Remembered even if Redis cannot be reached now: then it is
            # published when Redis answers again.
            self._remember(token, self._secret, seconds)
        if self._configured_secret is None:
            # A generated secret may have been replaced in Redis since it was
            # read: revoke under the one stored now.
            self._secret_checked = -math.inf
        secret = yield from self._secret_plan()
        # Under every configured secret, so workers not yet given the new one
        # (a rotation rolling out) refuse the token too; likewise under every
        # generated secret this process knows, for workers still using another.
        made = [(s, self._remember(token, s, seconds)) for s in self._revoking_secrets(secret)]
        fleet = self._fleet
        if fleet is not None:
            with self._memory.lock:
                self._memory.unannounced.update(digest for _, digest in made)
        try:
            for each, _ in made:
                yield from self._failure_plan(
                    token, InvalidToken(REVOKED), ("", ""), seconds, secret=each
                )
        except BaseException:
            # Not (all) written: the next successful round trip writes them.
            with self._revocations_lock:
                self._memory.unwritten.update(digest for _, digest in made)
            raise
        with self._revocations_lock:
            self._memory.unwritten.difference_update(digest for _, digest in made)
        if fleet is not None:
            # Pushed to every worker's memory, and logged for those away.
            until = self._wall() + seconds
            messages = [fleet.message(s, "r", digest, until) for s, digest in made]
            yield _Call("announce", (STREAM,), (CHANNEL, STREAM_MAXLEN, *messages))
            with self._memory.lock:
                self._memory.unannounced.difference_update(digest for _, digest in made)
        return None

    def _discard_plan(self, token: str) -> _Plan[None]:
        secret = yield from self._secret_plan()
        made = [(s, self._hex(s, token)) for s in (secret, *self._old_secrets)]
        for _, digest in made:
            # One DEL a secret: each secret's keys are in a bucket (a slot) of their own.
            yield _Call("delete", (token_key("id", digest), token_key("rej", digest)))
        if self._fleet is not None:
            messages = [self._fleet.message(s, "d", digest) for s, digest in made]
            yield _Call("announce", (STREAM,), (CHANNEL, STREAM_MAXLEN, *messages))
        return None
