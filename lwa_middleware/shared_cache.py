"""The shared Redis cache, so that N worker processes resolve a token once.

:class:`~.resolver.Resolver` asks this cache after its in-process cache and
its in-process single-flight, and before LWA. Under ASGI it uses
:class:`AsyncSharedCache` (redis-py's asyncio client), under WSGI
:class:`SyncSharedCache` (the blocking client). Both speak to Redis through a
:class:`redis.BlockingConnectionPool`, so a burst waits briefly for a
connection instead of failing with "too many connections".

What is stored
--------------

Keys are ``lwa:v1:id:<hex>`` (a resolved identity), ``lwa:v1:rej:<hex>`` (a
token LWA rejected), ``lwa:v1:rev:<hex>`` (a token revoked by ``revoke()``)
and ``lwa:v1:lease:<hex>`` (a lookup in progress), where
``<hex>`` is an HMAC-SHA256 of the *whole* token, prefixed by the LWA origin
and the accepted client ids, under a server-side secret. Two tokens sharing a
long prefix never share an entry, and two applications with different client
ids sharing one Redis never see each other's verdicts.

Values are JSON, never pickle: the identity fields, the scopes, the client
id, the epoch ``expires_at``, whether the profile was fetched, and a schema
version. Nothing stored can be turned back into a token. Every value (an
identity, a rejection, a revocation) is *sealed*: it starts with the hex
HMAC-SHA256, under a MAC key derived from the key secret
(``HMAC(secret, b"lwa:v1:mac")``), of the key's name and the JSON, checked
with :func:`hmac.compare_digest`. So whoever can write to Redis without the
secret can neither plant nor edit a value, nor copy one onto another token's
key. Every value is validated when read; a value whose MAC fails or that does
not validate is deleted and treated as a miss (values of schema 1, unsealed,
read as misses and are replaced).

An identity's Redis TTL is the smaller of ``cache_ttl`` and the token's
remaining life, and the reader rebuilds the token's deadline from
``expires_at``, so a shared entry never outlives its token even across
clocks. A worker that picks an entry up late keeps it fresh only for the
entry's remaining TTL (:attr:`SharedHit.fresh_for`). Rejections live for
``negative_cache_ttl``; transient failures are never stored.

The key secret
--------------

With ``cache_key_secret`` set, that secret keys the HMAC and never leaves the
process. Without it, the first worker to reach Redis stores 32 random bytes
with ``SET lwa:v1:secret <random> NX`` and every worker reads it back, so
every worker sharing the Redis shares the key space with no configuration.
The trade-off: anyone who can read that Redis can read the secret, and with
it test whether a token they already hold is cached (they still cannot
recover a token from a key) and, if they can also write, seal forged values:
the MAC then only stops someone who can write Redis but not read it. Set
``cache_key_secret`` (or ``LWA_CACHE_KEY_SECRET``) to keep the secret out of
Redis; a warning is logged (once a process) when it is not set. A generated secret
is re-read every :data:`SECRET_RECHECK` seconds and after any Redis failure;
a worker that finds it gone puts back the secret it already uses (never a
new one), so workers keep one key space if Redis restarts empty.

Data loss and revocations
-------------------------

Every read and write script also compares ``lwa:v1:epoch``, a random marker
of the Redis data set, with the one this worker knows. Missing or changed
means Redis lost its data (flush, restart without persistence, failover) or
another worker noticed first: the worker then restores the marker and the
generated secret and publishes again the revocations it made (kept in memory
as Redis hex and expiry, never the token), with their remaining TTL. That is
on the worker's first Redis round trip after the loss. :meth:`revoke` and
:meth:`discard` use connections of their own with a longer deadline
(:data:`DURABLE_TIMEOUT`, :data:`DURABLE_ATTEMPTS` within
:data:`DURABLE_BUDGET`), even while backing off, and raise
:class:`~.errors.SharedCacheError` when Redis could not be written.

Cross-process single-flight
---------------------------

On a miss the reader also tries to take ``lwa:v1:lease:<hex>`` (``SET NX``
for twice the LWA ``timeout``), in the same round trip. The worker that gets
it asks LWA; the others poll the entry every :data:`POLL_INTERVAL` seconds
for at most ``min(timeout, 1)`` seconds, and then ask LWA themselves: a lease
only ever saves calls, it never fails a request. :meth:`put` and
:meth:`record_failure` release the lease (only if it is still the one this
worker took).

Failures
--------

Redis down, slow or black-holed is a cache miss, never an authentication
failure and never a hang: every connect, reply and pool wait is bounded by
``redis_timeout`` (and each asyncio call by an overall deadline), redis-py's
retries are off, and after a failure Redis is skipped for :data:`BACKOFF`
seconds so a dead Redis does not add its timeout to every request. Failures
are logged on ``lwa_middleware.shared_cache`` at most once per
:data:`LOG_INTERVAL` seconds; recovery is automatic.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from .cache import REVOKED
from .errors import AuthError, InvalidToken, SharedCacheError
from .flow import Resolved
from .identity import Identity

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["AsyncSharedCache", "SharedHit", "SyncSharedCache"]

logger = logging.getLogger("lwa_middleware.shared_cache")

#: Version of the stored JSON. 2: every value is sealed with a MAC (a value
#: of version 1 fails the MAC check, so it reads as a miss and is replaced).
SCHEMA: Final = 2
PREFIX: Final = "lwa:v1:"
#: Label of the MAC key, derived from the key secret: HMAC(secret, label).
_MAC_LABEL: Final = b"lwa:v1:mac"
#: A stored value is the hex HMAC-SHA256 (this many characters) then the JSON.
_MAC_HEX: Final = 64
SECRET_KEY: Final = PREFIX + "secret"
#: A random marker of the Redis data set, re-created after data loss.
EPOCH_KEY: Final = PREFIX + "epoch"
#: revoke() and invalidate(): attempts, each attempt's deadline, the whole
#: budget and the first pause between attempts (doubled each time), in seconds.
DURABLE_ATTEMPTS: Final = 3
DURABLE_TIMEOUT: Final = 0.5
DURABLE_BUDGET: Final = 1.0
DURABLE_BACKOFF: Final = 0.05
#: Revocations a process remembers, to publish them again after data loss.
MAX_REMEMBERED: Final = 10_000
#: Revocations re-published per round trip.
_REPLAY_BATCH: Final = 256
#: Seconds Redis is skipped after a failure.
BACKOFF: Final = 1.0
#: Failures are logged at most once per this many seconds.
LOG_INTERVAL: Final = 30.0
#: Seconds between two polls of an entry another worker is resolving.
POLL_INTERVAL: Final = 0.015
#: Seconds after which a generated secret is read from Redis again.
SECRET_RECHECK: Final = 30.0
#: Largest value accepted from Redis; anything bigger is corrupt.
MAX_VALUE_BYTES: Final = 16 * 1024
_MIN_SECRET_BYTES: Final = 16
_POOL_EXHAUSTED: Final = "No connection available."

_IDENTITY_FIELDS: Final = frozenset(
    {
        "v",
        "user_id",
        "email",
        "name",
        "postal_code",
        "scopes",
        "client_id",
        "expires_at",
        "has_profile",
    }
)
_REJECTION_FIELDS: Final = frozenset({"v", "error", "description"})

# Replies of _READ.
_MISS, _HIT, _REJECTED, _LEASE_TAKEN, _LEASE_HELD, _REVOKED = 0, 1, 2, 3, 4, 5

# A value of the wrong type (someone else's data under our key) must be a
# miss, not a script error that would look like Redis being down.
_LUA_GET = """
local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false
  end
  return value
end
"""

# Every read and write also compares the data set's marker (KEYS[5]) with the
# one this worker knows (ARGV[4]): "lost" (1) when it is missing or another,
# i.e. Redis lost its data (flush, restart without persistence, failover) or
# another worker noticed that first. The worker then restores (_RESTORE).
_LUA_LOST = """
local lost = 0
if get(KEYS[5]) ~= ARGV[4] then lost = 1 end
"""

#: KEYS: id, rej, lease, rev, epoch. ARGV: lease id, lease PX (0: do not take a
#: lease), '1' to read only the revocation (a revalidate() route) else '0', epoch.
#: Replies ``{lost, kind, value, pttl}``.
#: A revocation (rev) outranks everything, even an identity written after it.
_READ = (
    _LUA_GET
    + _LUA_LOST
    + """
local value = get(KEYS[4])
if value then return {lost, 5, value, redis.call('PTTL', KEYS[4])} end
if ARGV[3] == '1' then return {lost, 0} end
value = get(KEYS[1])
if value then return {lost, 1, value, redis.call('PTTL', KEYS[1])} end
value = get(KEYS[2])
if value then return {lost, 2, value, redis.call('PTTL', KEYS[2])} end
if ARGV[2] == '0' then return {lost, 0} end
if get(KEYS[3]) then return {lost, 4} end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return {lost, 3}
"""
)

#: KEYS: key to set, key to delete, lease, rev, epoch. ARGV: value, PX (0: do not
#: set), lease id, epoch. Replies ``lost``.
#: Nothing is written once the token is revoked (rev exists): a lookup that was
#: in flight when revoke() ran must not bring the identity back.
_WRITE = (
    _LUA_GET
    + _LUA_LOST
    + """
if ARGV[2] ~= '0' and not get(KEYS[4]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' and get(KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return lost
"""
)

#: KEYS: lease. ARGV: lease id. Deletes the lease only if it is still ours.
_RELEASE = (
    _LUA_GET
    + """
if get(KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
)

#: KEYS: secret. ARGV: a fresh random secret, kept only if none is there.
_SECRET = (
    _LUA_GET
    + """
if not get(KEYS[1]) then redis.call('SET', KEYS[1], ARGV[1], 'NX') end
return redis.call('GET', KEYS[1])
"""
)

#: KEYS: secret, epoch. ARGV: this worker's generated secret ('' when configured),
#: a fresh epoch. After data loss: put back the secret this worker already uses
#: (never a new one, so workers keep one key space) and a new marker, unless
#: another worker did first. Replies ``{secret or '', epoch}``.
_RESTORE = (
    _LUA_GET
    + """
if ARGV[1] ~= '' and not get(KEYS[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
if not get(KEYS[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return {get(KEYS[1]) or '', get(KEYS[2])}
"""
)

#: KEYS: revocation keys. ARGV: value and PX of each, in turn.
_REPLAY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return 1
"""

_SCRIPTS: Final = {
    "read": _READ,
    "write": _WRITE,
    "release": _RELEASE,
    "secret": _SECRET,
    "restore": _RESTORE,
    "replay": _REPLAY,
}


@dataclass(frozen=True, slots=True)
class SharedHit:
    """A resolved token found in Redis.

    :param resolved: the identity, with ``expires_mono`` rebuilt for this
        process from the stored epoch expiry.
    :param fresh_for: seconds the entry stays in Redis (its remaining TTL):
        the longest this process may serve it without asking again.
    """

    resolved: Resolved
    fresh_for: float


@dataclass(frozen=True, slots=True)
class _Call:
    """One Redis round trip: a script of :data:`_SCRIPTS`, or ``"delete"`` (DEL keys)."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


_T = TypeVar("_T")
#: Like :mod:`.flow`, the logic is written once as a generator that yields
#: Redis round trips (and pauses) and is sent their replies; the sync and
#: async classes only drive it.
_Plan = Generator[_Call | _Sleep, Any, _T]
_Found = SharedHit | InvalidToken | None


#: Whether the missing ``cache_key_secret`` was warned about (once a process).
_warned_no_secret = False
_warn_lock = threading.Lock()


def _warn_generated_secret() -> None:
    global _warned_no_secret
    with _warn_lock:
        if _warned_no_secret:
            return
        _warned_no_secret = True
    logger.warning(
        "lwa_middleware: redis_url is set without cache_key_secret: the key and MAC "
        "secret is generated and stored in Redis (%s), so anyone who can read Redis can "
        "forge shared-cache entries. Set cache_key_secret (LWA_CACHE_KEY_SECRET).",
        SECRET_KEY,
    )


def _mac_key(secret: bytes) -> bytes:
    # Derived, so the MAC key and the key-naming HMAC never share a key.
    return hmac.new(secret, _MAC_LABEL, hashlib.sha256).digest()


def _tag(mac_key: bytes, key: str, body: bytes) -> bytes:
    return hmac.new(mac_key, key.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()


class _SharedCacheBase:
    """What both flavours share: keys, codec, leases, back-off, logging.

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(self, settings: Settings, *, lease: bool = True) -> None:
        if not settings.redis_url:
            raise ValueError("redis_url is not set")
        self.settings = settings
        self.lease = lease
        self._url = settings.redis_url
        self._timeout = settings.redis_timeout
        self._max_connections = max(8, settings.max_concurrent_lookups)
        self._configured_secret = settings.cache_key_secret
        if settings.cache_key_secret is None:
            _warn_generated_secret()
        self._secret: bytes | None = settings.cache_key_secret
        self._mac: tuple[bytes, bytes] | None = None  # (secret, MAC key derived from it)
        self._secret_checked = time.monotonic()
        self._namespace = "\0".join(
            ["lwa:v1", settings.api_base_url, *sorted(settings.client_ids), ""]
        ).encode()
        self._lease_px = max(1, int(settings.timeout * 2 * 1000))
        self._lease_wait = min(settings.timeout, 1.0)
        self._leases: dict[str, tuple[str, float]] = {}
        self._leases_lock = threading.Lock()
        self._skip_until = 0.0
        self._next_log = 0.0
        self._down = False
        #: The marker of the Redis data set this worker last saw (b"": none yet).
        self._epoch = b""
        #: Revocations this process made: Redis hex -> (monotonic expiry, the
        #: secret the hex was made with). Never the token.
        self._revocations: dict[str, tuple[float, bytes]] = {}
        self._revocations_lock = threading.Lock()
        #: Counters, for tests and metrics: Redis errors, calls skipped while
        #: backing off, waits on another worker's lease, corrupt values dropped.
        self.errors = 0
        self.skipped = 0
        self.waits = 0
        self.corrupt = 0
        #: Times this worker found Redis had lost its data, and revocations it
        #: published again then.
        self.restores = 0
        self.republished = 0

    def __repr__(self) -> str:
        # The URL may carry a password: show neither.
        return f"{type(self).__name__}(lease={self.lease})"

    # -- keys and leases ----------------------------------------------------

    def _hex(self, secret: bytes, token: str) -> str:
        return hmac.new(secret, self._namespace + token.encode(), hashlib.sha256).hexdigest()

    def _secret_plan(self) -> _Plan[bytes]:
        secret = self._secret
        if secret is not None and (
            self._configured_secret is not None
            or time.monotonic() - self._secret_checked < SECRET_RECHECK
        ):
            return secret
        # The secret this worker already uses, if any: a vanished secret is
        # put back, never replaced, so workers never split into two key spaces.
        mine = secret if secret is not None else secrets.token_bytes(32)
        reply = yield _Call("secret", (SECRET_KEY,), (mine,))
        if not isinstance(reply, bytes) or len(reply) < _MIN_SECRET_BYTES:
            raise _Unusable(f"{SECRET_KEY} does not hold a usable secret")
        self._secret = reply
        self._secret_checked = time.monotonic()
        return reply

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
        now = time.monotonic()
        with self._leases_lock:
            if len(self._leases) > 1024:
                # Leases of lookups that never reported back (a cancelled
                # task) expire in Redis; forget them here too.
                horizon = now - self._lease_px / 1000
                for key in [k for k, (_, at) in self._leases.items() if at < horizon]:
                    del self._leases[key]
            self._leases[digest] = (lease_id, now)

    # -- data loss -------------------------------------------------------------

    def _remember(self, digest: str, secret: bytes, seconds: float) -> None:
        """Keep a revocation (its Redis hex, never the token) to publish it again."""
        now = time.monotonic()
        with self._revocations_lock:
            revocations = self._revocations
            revocations.pop(digest, None)
            if len(revocations) >= MAX_REMEMBERED:
                for key in [k for k, (until, _) in revocations.items() if until <= now]:
                    del revocations[key]
                while len(revocations) >= MAX_REMEMBERED:
                    del revocations[next(iter(revocations))]  # the oldest
            revocations[digest] = (now + seconds, secret)

    def _restore_plan(self) -> _Plan[None]:
        """Redis lost its data (or this worker just met it): put back the
        generated secret and the data set's marker, then publish again every
        live revocation this process made."""
        generated = self._secret if self._configured_secret is None else None
        reply = yield _Call(
            "restore", (SECRET_KEY, EPOCH_KEY), (generated or b"", secrets.token_hex(16))
        )
        stored, epoch = reply[0], reply[1]
        if not isinstance(epoch, bytes):
            raise _Unusable(f"{EPOCH_KEY} does not hold a marker")
        if self._configured_secret is None:
            if not isinstance(stored, bytes) or len(stored) < _MIN_SECRET_BYTES:
                raise _Unusable(f"{SECRET_KEY} does not hold a usable secret")
            if generated is not None and stored != generated:
                self._log("another worker replaced the generated key secret in Redis")
            self._secret, self._secret_checked = stored, time.monotonic()
        first = not self._epoch
        self._epoch = epoch
        if not first:
            self.restores += 1
        secret = self._secret
        now = time.monotonic()
        with self._revocations_lock:
            live = [
                (digest, until)
                for digest, (until, made_with) in self._revocations.items()
                if until > now and made_with == secret
            ]
        if secret is None or not live:
            return None
        for start in range(0, len(live), _REPLAY_BATCH):
            keys: list[str] = []
            args: list[bytes | int] = []
            for digest, until in live[start : start + _REPLAY_BATCH]:
                px = int((until - time.monotonic()) * 1000)
                if px <= 0:
                    continue
                key = PREFIX + "rev:" + digest
                keys.append(key)
                args += [self._seal(secret, key, _rejection_body(REVOKED)), px]
            if keys:
                yield _Call("replay", tuple(keys), tuple(args))
                self.republished += len(keys)
        return None

    def _check_lost(self, lost: Any) -> _Plan[None]:
        if lost is not None and int(lost):
            yield from self._restore_plan()
        return None

    # -- codec ---------------------------------------------------------------

    def _mac_key(self, secret: bytes) -> bytes:
        mac = self._mac
        if mac is None or mac[0] is not secret:
            mac = self._mac = (secret, _mac_key(secret))
        return mac[1]

    def _seal(self, secret: bytes, key: str, body: bytes) -> bytes:
        """``body`` with a MAC bound to ``key`` in front: what is stored under ``key``."""
        return _tag(self._mac_key(secret), key, body) + body

    def _unseal(self, secret: bytes, key: str, raw: bytes) -> bytes:
        """The body of a value read from ``key``; ``ValueError`` unless its MAC holds."""
        tag, body = raw[:_MAC_HEX], raw[_MAC_HEX:]
        if not hmac.compare_digest(tag, _tag(self._mac_key(secret), key, body)):
            raise ValueError("MAC")
        return body

    @staticmethod
    def _encode(resolved: Resolved) -> bytes:
        identity = resolved.identity
        return json.dumps(
            {
                "v": SCHEMA,
                "user_id": identity.user_id,
                "email": identity.email,
                "name": identity.name,
                "postal_code": identity.postal_code,
                "scopes": sorted(identity.scopes),
                "client_id": identity.client_id,
                "expires_at": identity.expires_at,
                "has_profile": resolved.has_profile,
            },
            separators=(",", ":"),
        ).encode()

    def _decode_identity(self, raw: bytes, pttl: int) -> SharedHit | None:
        """The hit, or ``None`` for an expired entry; raise ``ValueError`` if corrupt."""
        data = _json_object(raw, _IDENTITY_FIELDS)
        user_id, client_id = data["user_id"], data["client_id"]
        expires_at, has_profile, scopes = data["expires_at"], data["has_profile"], data["scopes"]
        if not isinstance(user_id, str) or not user_id or not isinstance(client_id, str):
            raise ValueError("user_id or client_id")
        optional = [data[name] for name in ("email", "name", "postal_code")]
        if not all(value is None or isinstance(value, str) for value in optional):
            raise ValueError("profile fields")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes")
        if (
            isinstance(expires_at, bool)
            or not isinstance(expires_at, int | float)
            or not math.isfinite(expires_at)
        ):
            raise ValueError("expires_at")
        if not isinstance(has_profile, bool):
            raise ValueError("has_profile")
        if client_id not in self.settings.client_ids:
            # Not ours to serve (the namespace in the key makes this a
            # corrupt or forged value).
            raise ValueError("client_id")
        remaining = expires_at - time.time()
        if remaining <= 0:
            return None
        identity = Identity(
            user_id=user_id,
            email=optional[0],
            name=optional[1],
            postal_code=optional[2],
            scopes=frozenset(scopes),
            client_id=client_id,
            expires_at=float(expires_at),
        )
        ttl = self.settings.cache_ttl
        fresh_for = min(ttl, pttl / 1000) if pttl > 0 else min(ttl, remaining)
        if fresh_for <= 0:
            return None
        resolved = Resolved(identity, time.monotonic() + remaining, has_profile)
        return SharedHit(resolved, fresh_for)

    @staticmethod
    def _decode_rejection(raw: bytes) -> InvalidToken:
        data = _json_object(raw, _REJECTION_FIELDS)
        description = data["description"]
        if data["error"] != InvalidToken.error or not isinstance(description, str):
            raise ValueError("rejection")
        if not description or len(description) > 200:
            raise ValueError("description")
        return InvalidToken(description)

    # -- plans ---------------------------------------------------------------

    def _get_plan(self, token: str, revocation_only: bool = False) -> _Plan[_Found]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        keys = (
            PREFIX + "id:" + digest,
            PREFIX + "rej:" + digest,
            PREFIX + "lease:" + digest,
            PREFIX + "rev:" + digest,
            EPOCH_KEY,
        )
        lease_id = secrets.token_hex(8)
        lease_px = self._lease_px if self.lease and not revocation_only else 0
        mode = "1" if revocation_only else "0"
        deadline: float | None = None
        while True:
            reply = yield _Call("read", keys, (lease_id, lease_px, mode, self._epoch))
            yield from self._check_lost(reply[0])
            reply = reply[1:]
            kind = int(reply[0])
            if kind in (_HIT, _REJECTED, _REVOKED):
                raw, pttl = reply[1], int(reply[2])
                where = {_HIT: keys[0], _REJECTED: keys[1], _REVOKED: keys[3]}[kind]
                try:
                    if not isinstance(raw, bytes) or len(raw) > MAX_VALUE_BYTES:
                        raise ValueError("size")
                    body = self._unseal(secret, where, raw)
                    if kind == _HIT:
                        return self._decode_identity(body, pttl)
                    return self._decode_rejection(body)
                except (ValueError, KeyError, TypeError):
                    # Corrupt, of another schema, or forged (its MAC fails).
                    self.corrupt += 1
                    self._log("a corrupt or forged shared cache entry was dropped")
                    yield _Call("delete", (where,))
                    return None
            if kind == _LEASE_TAKEN:
                self._hold(digest, lease_id)
                return None
            if kind != _LEASE_HELD:
                return None
            # Another worker is asking LWA: wait a little for its answer.
            now = time.monotonic()
            if deadline is None:
                self.waits += 1
                deadline = now + self._lease_wait
            if now >= deadline:
                return None
            yield _Sleep(min(POLL_INTERVAL, deadline - now))

    def _put_plan(self, token: str, resolved: Resolved, lease: tuple[str, str]) -> _Plan[None]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        lease_id = lease[1] if lease[0] == digest else ""
        seconds = min(self.settings.cache_ttl, resolved.expires_mono - time.monotonic())
        px = max(1, int(seconds * 1000)) if seconds > 0 else 0
        if px == 0 and not lease_id:
            return None
        value = self._seal(secret, PREFIX + "id:" + digest, self._encode(resolved)) if px else b""
        keys = (
            PREFIX + "id:" + digest,
            PREFIX + "rej:" + digest,
            PREFIX + "lease:" + digest,
            PREFIX + "rev:" + digest,
            EPOCH_KEY,
        )
        lost = yield _Call("write", keys, (value, px, lease_id, self._epoch))
        yield from self._check_lost(lost)
        return None

    def _failure_plan(
        self,
        token: str,
        error: AuthError,
        lease: tuple[str, str],
        seconds: float | None = None,
    ) -> _Plan[None]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        lease_id = lease[1] if lease[0] == digest else ""
        lease_key = PREFIX + "lease:" + digest
        if isinstance(error, InvalidToken):
            # Whatever is remembered, the identity goes: LWA just said this
            # token is no good (so no worker serves it again, stale or not).
            if seconds is None:
                seconds = self.settings.negative_cache_ttl if error.remember else 0.0
            px = max(1, int(seconds * 1000)) if seconds > 0 else 0
            revoked = error.description == REVOKED
            target = PREFIX + ("rev:" if revoked else "rej:") + digest
            value = self._seal(secret, target, _rejection_body(error.description)) if px else b""
            keys = (
                target,
                PREFIX + "id:" + digest,
                lease_key,
                PREFIX + "rev:" + digest,
                EPOCH_KEY,
            )
            lost = yield _Call("write", keys, (value, px, lease_id, self._epoch))
            yield from self._check_lost(lost)
        elif lease_id:
            yield _Call("release", (lease_key,), (lease_id,))
        return None

    def _revoke_plan(self, token: str, seconds: float) -> _Plan[None]:
        if self._secret is not None:
            # Remembered even if Redis cannot be reached now: then it is
            # published when Redis answers again.
            self._remember(self._hex(self._secret, token), self._secret, seconds)
        secret = yield from self._secret_plan()
        self._remember(self._hex(secret, token), secret, seconds)
        return (
            yield from self._failure_plan(token, InvalidToken(REVOKED), ("", ""), seconds)
        )

    def _discard_plan(self, token: str) -> _Plan[None]:
        secret = yield from self._secret_plan()
        digest = self._hex(secret, token)
        yield _Call("delete", (PREFIX + "id:" + digest, PREFIX + "rej:" + digest))
        return None

    # -- health --------------------------------------------------------------

    def _usable(self) -> bool:
        if self._skip_until and time.monotonic() < self._skip_until:
            self.skipped += 1
            return False
        return True

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            logger.info("lwa_middleware: the shared cache (Redis) answers again")

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if isinstance(exc, redis.ConnectionError) and str(exc) == _POOL_EXHAUSTED:
            # Every connection is busy: Redis is fine, this process is
            # loaded. Skip Redis for this request only.
            self._log("no Redis connection was free in time; treating as a miss")
            return
        self._down = True
        self._skip_until = time.monotonic() + BACKOFF
        if self._configured_secret is None:
            # Redis may come back empty: read the secret again first.
            self._secret_checked = -math.inf
        reason = str(exc)[:200] or "no detail"
        self._log(
            f"the shared cache (Redis) failed ({type(exc).__name__}: {reason}); "
            f"treating it as a miss and skipping it for {BACKOFF:g} s"
        )

    def _durable_failed(self, what: str, exc: Exception | None) -> SharedCacheError:
        if exc is not None:
            self._failed(exc)
        logger.error(
            "lwa_middleware: %s could not be written to the shared cache (Redis); "
            "it holds in this process only",
            what,
        )
        return SharedCacheError(
            f"The {what} could not be written to the shared cache (Redis) in time; "
            "it holds in this process only."
        )

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_INTERVAL
            logger.warning("lwa_middleware: %s", message)


class _Unusable(Exception):
    """Redis answered, but not something this cache can use."""


def _rejection_body(description: str) -> bytes:
    return json.dumps(
        {"v": SCHEMA, "error": InvalidToken.error, "description": description}
    ).encode()


def _json_object(raw: bytes, expected: frozenset[str]) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("v") != SCHEMA or set(data) != expected:
        raise ValueError("not a value of this schema")
    return data


def _pool_options(settings: Settings, durable: bool = False) -> dict[str, Any]:
    timeout = DURABLE_TIMEOUT if durable else settings.redis_timeout
    return {
        "timeout": timeout,
        "max_connections": 2 if durable else max(8, settings.max_concurrent_lookups),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # RESP2 keeps the connection handshake to what every Redis speaks.
        "protocol": 2,
    }


class SyncSharedCache(_SharedCacheBase):
    """The shared cache for threads, on redis-py's blocking client.

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(self, settings: Settings, *, lease: bool = True) -> None:
        super().__init__(settings, lease=lease)
        # One attempt only (redis-py retries by default): a retry would
        # multiply the deadline, and a miss is cheap.
        self._pool = redis.BlockingConnectionPool.from_url(
            self._url, retry=redis.retry.Retry(NoBackoff(), 0), **_pool_options(settings)
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._scripts = {name: self._client.register_script(s) for name, s in _SCRIPTS.items()}
        # revoke() and invalidate() have connections of their own, with the
        # longer DURABLE_TIMEOUT deadline.
        self._durable_pool = redis.BlockingConnectionPool.from_url(
            self._url, retry=redis.retry.Retry(NoBackoff(), 0), **_pool_options(settings, True)
        )
        self._durable_client = redis.Redis(connection_pool=self._durable_pool)
        self._durable_scripts = {
            name: self._durable_client.register_script(s) for name, s in _SCRIPTS.items()
        }

    @staticmethod
    def _drive(plan: _Plan[_T], client: redis.Redis, scripts: dict[str, Any]) -> _T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                    reply = None
                elif step.name in scripts:
                    reply = scripts[step.name](keys=step.keys, args=step.args)
                else:
                    reply = client.delete(*step.keys)
                step = plan.send(reply)
        except StopIteration as stop:
            result: _T = stop.value
            return result

    def _run(self, plan: _Plan[_T], default: _T) -> _T:
        if not self._usable():
            plan.close()
            return default
        try:
            result = self._drive(plan, self._client, self._scripts)
        except Exception as exc:  # never let Redis fail a request
            self._failed(exc)
            return default
        self._succeeded()
        return result

    def _run_durable(self, what: str, make_plan: Callable[[], _Plan[None]]) -> None:
        """Run an idempotent plan even while backing off, with DURABLE_ATTEMPTS
        attempts within DURABLE_BUDGET seconds; raise SharedCacheError if all fail."""
        deadline = time.monotonic() + DURABLE_BUDGET
        error: Exception | None = None
        for attempt in range(DURABLE_ATTEMPTS):
            try:
                self._drive(make_plan(), self._durable_client, self._durable_scripts)
            except Exception as exc:
                error = exc
            else:
                self._succeeded()
                return
            pause = DURABLE_BACKOFF * 2**attempt
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        raise self._durable_failed(what, error)

    def get(self, token: str, revocation_only: bool = False) -> _Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA).

        With ``revocation_only`` (a ``revalidate()`` route) only a revocation
        is read: the identity must come from LWA.
        """
        return self._run(self._get_plan(token, revocation_only), None)

    def put(self, token: str, resolved: Resolved) -> None:
        """Share a resolved token and release this worker's lease on it."""
        lease = self._take_lease(token)
        self._run(self._put_plan(token, resolved, lease), None)

    def record_failure(self, token: str, error: AuthError) -> None:
        """Drop the identity of a rejected token and share a remembered
        rejection; for anything else only release the lease."""
        lease = self._take_lease(token)
        if not lease[1] and not isinstance(error, InvalidToken):
            return
        self._run(self._failure_plan(token, error, lease), None)

    def discard(self, token: str) -> None:
        """Forget ``token`` for every worker. Tried even while backing off, with
        retries; raise :class:`SharedCacheError` if Redis could not be written."""
        self._run_durable("invalidation", lambda: self._discard_plan(token))

    def revoke(self, token: str, seconds: float) -> None:
        """Refuse ``token`` on every worker for ``seconds`` (see :meth:`discard`).

        The revocation is also remembered by this process, and published again
        after Redis lost its data.
        """
        self._run_durable("revocation", lambda: self._revoke_plan(token, seconds))

    def close(self) -> None:
        """Close the pooled Redis connections."""
        self._client.close()
        self._pool.disconnect()
        self._durable_client.close()
        self._durable_pool.disconnect()


class _LoopClient:
    """The asyncio client of one event loop: its connections belong to it."""

    __slots__ = ("client", "pool", "scripts")

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        url = settings.redis_url
        assert url is not None
        self.pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            **_pool_options(settings, durable),
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.scripts = {name: self.client.register_script(s) for name, s in _SCRIPTS.items()}

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.pool.disconnect()


class AsyncSharedCache(_SharedCacheBase):
    """The shared cache for asyncio, on redis-py's asyncio client.

    Connections are kept per event loop, so an app driven by several loops
    in turn (Starlette's ``TestClient`` makes one per request) keeps working.
    Each Redis round trip is also bounded as a whole by ``asyncio.timeout``
    (pool wait, connect and reply: three times ``redis_timeout``).

    :param settings: validated options; ``redis_url`` must be set.
    :param lease: take a lease on a miss (cross-process single-flight).
    """

    def __init__(self, settings: Settings, *, lease: bool = True) -> None:
        super().__init__(settings, lease=lease)
        self._deadline = 3 * settings.redis_timeout
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        # revoke() and invalidate(): connections of their own, longer deadline.
        self._durable_loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _LoopClient
        ] = weakref.WeakKeyDictionary()

    def _loop_client(self, durable: bool = False) -> _LoopClient:
        loop = asyncio.get_running_loop()
        loops = self._durable_loops if durable else self._loops
        found = loops.get(loop)
        if found is None:
            found = loops[loop] = _LoopClient(self.settings, durable)
        return found

    @staticmethod
    async def _drive(plan: _Plan[_T], conn: _LoopClient, deadline: float) -> _T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                    reply = None
                else:
                    async with asyncio.timeout(deadline):
                        if step.name in conn.scripts:
                            reply = await conn.scripts[step.name](keys=step.keys, args=step.args)
                        else:
                            reply = await conn.client.delete(*step.keys)
                step = plan.send(reply)
        except StopIteration as stop:
            result: _T = stop.value
            return result

    async def _run(self, plan: _Plan[_T], default: _T) -> _T:
        if not self._usable():
            plan.close()
            return default
        try:
            result = await self._drive(plan, self._loop_client(), self._deadline)
        except Exception as exc:  # never let Redis fail a request
            self._failed(exc)
            return default
        self._succeeded()
        return result

    async def _run_durable(self, what: str, make_plan: Callable[[], _Plan[None]]) -> None:
        """As :meth:`SyncSharedCache._run_durable`."""
        deadline = time.monotonic() + DURABLE_BUDGET
        error: Exception | None = None
        for attempt in range(DURABLE_ATTEMPTS):
            try:
                conn = self._loop_client(durable=True)
                await self._drive(make_plan(), conn, DURABLE_TIMEOUT)
            except Exception as exc:
                error = exc
            else:
                self._succeeded()
                return
            pause = DURABLE_BACKOFF * 2**attempt
            if time.monotonic() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        raise self._durable_failed(what, error)

    async def get(self, token: str, revocation_only: bool = False) -> _Found:
        """The shared verdict on ``token``, or ``None`` for a miss (ask LWA); see
        :meth:`SyncSharedCache.get`."""
        return await self._run(self._get_plan(token, revocation_only), None)

    async def put(self, token: str, resolved: Resolved) -> None:
        """Share a resolved token and release this worker's lease on it."""
        lease = self._take_lease(token)
        await self._run(self._put_plan(token, resolved, lease), None)

    async def record_failure(self, token: str, error: AuthError) -> None:
        """Drop the identity of a rejected token and share a remembered
        rejection; for anything else only release the lease."""
        lease = self._take_lease(token)
        if not lease[1] and not isinstance(error, InvalidToken):
            return
        await self._run(self._failure_plan(token, error, lease), None)

    async def discard(self, token: str) -> None:
        """As :meth:`SyncSharedCache.discard`."""
        await self._run_durable("invalidation", lambda: self._discard_plan(token))

    async def revoke(self, token: str, seconds: float) -> None:
        """As :meth:`SyncSharedCache.revoke`."""
        await self._run_durable("revocation", lambda: self._revoke_plan(token, seconds))

    async def aclose(self) -> None:
        """Close this loop's Redis connections; other loops' are dropped."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        clients = [*self._loops.items(), *self._durable_loops.items()]
        self._loops.clear()
        self._durable_loops.clear()
        for owner, conn in clients:
            if owner is loop:
                await conn.aclose()
