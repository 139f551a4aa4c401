"""Where sign-in state lives: sessions and pending logins, sealed.

A store only ever sees opaque keys (a keyed digest of the session id, never
the id the browser holds) and sealed bytes (AES-GCM under a key derived from
``session_secret``, bound to their key): reading the store gives neither a
session id to replay nor a token. Two stores: :class:`MemorySessionStore`
(one process, bounded) and :class:`RedisSessionStore` (several workers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

from .._engine._extras import needs_extra
from .._engine._observe import fields
from .._engine.clock import Clock, monotonic_of
from .._engine.errors import ConfigurationError, UpstreamUnavailable

# cryptography comes with the signin extra, not the base install.
with needs_extra("signin", "lwa_middleware.signin (server-side sign-in)"):
    from .._engine._seal import Aead, derive

__all__ = [
    "ACL_RULES",
    "MAX_PENDING_LOGINS",
    "MemorySessionStore",
    "RedisSessionStore",
    "Sealer",
    "SessionStore",
    "SessionStoreUnavailable",
]


class SessionStoreUnavailable(UpstreamUnavailable):
    """The session store (Redis) did not answer in time: a 503, never a 500.

    Sign-in fails closed: no step goes on without it, and a request whose
    session cannot be read is refused, not served as anonymous.
    """

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("The session store is unavailable; try again shortly.", retry_after)


logger = logging.getLogger("lwa_middleware.signin")


@runtime_checkable
class SessionStore(Protocol):
    """What :class:`~lwa_middleware.signin.SignIn` needs from a store.

    Values are sealed bytes; ``ttl`` is in seconds. Every call is blocking
    and bounded (Redis calls have a deadline). Pending logins live apart from
    sessions, under a bound of their own: a flood of ``/login`` is refused
    (``add_login`` gives ``False``) and never evicts a session.
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def replace(self, key: str, old: bytes, new: bytes, ttl: float) -> bool:
        """Write ``new`` only if ``key`` still holds ``old``, atomically.

        A refresh writes this way, so a logout (which takes the session)
        that lands while LWA answers the refresh is never undone."""
        ...

    def take(self, key: str) -> bytes | None:
        """Get and delete, atomically: a session is ended once."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_if(self, key: str, old: bytes) -> bool:
        """Delete ``key`` only if it still holds ``old``, atomically.

        A refresh LWA refused ends its session this way, so a session that
        another worker's refresh replaced meanwhile is not ended with it.
        New in this release; a store without it works for one more release
        (with a ``DeprecationWarning``): the refusal then writes an
        unreadable value over ``old`` through :meth:`replace`, for a second."""
        ...

    def add_login(self, key: str, value: bytes, ttl: float) -> bool:
        """Keep a pending login; ``False`` (nothing kept) when the store
        already holds its bound of them."""
        ...

    def take_login(self, key: str) -> bytes | None:
        """Get and delete a pending login, atomically: it is used once."""
        ...

    def lease(self, key: str, ttl: float) -> str | None:
        """Take a lock that expires by itself: its owner token, or ``None``
        if someone holds it."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Free the lease only if ``owner`` still holds it: a holder whose
        lease expired (and was taken by another) frees nothing."""
        ...


class Sealer:
    """AES-256-GCM under keys derived (HKDF-SHA256) from ``session_secret``.

    :param secret: at least 32 bytes (or characters) of secret.
    """

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not isinstance(raw, bytes) or len(raw) < 32:
            raise ConfigurationError(
                "session_secret must be at least 32 bytes of secret, e.g. "
                "secrets.token_urlsafe(32); it encrypts sessions at rest"
            )
        self._aead = Aead.derived(raw, b"lwa-signin/v1/seal")
        self._name_key = derive(raw, b"lwa-signin/v1/name")

    def __repr__(self) -> str:
        return "Sealer(<secret>)"

    def name(self, kind: str, value: str) -> str:
        """The store key of a browser-held id: a keyed digest, never the id."""
        digest = hmac.new(self._name_key, f"{kind}:{value}".encode(), hashlib.sha256)
        return f"{kind}:{digest.hexdigest()}"

    def seal(self, key: str, plain: bytes) -> bytes:
        return self._aead.seal(plain, key.encode())

    def open(self, key: str, sealed: bytes) -> bytes | None:
        """The plain bytes, or ``None`` if they were not sealed here for ``key``."""
        return self._aead.open(sealed, key.encode())


#: Pending logins a store keeps at most, by default (SECURITY.md, "Pending
#: logins": about 0.5 kB each in memory or in Redis, measured).
MAX_PENDING_LOGINS: Final = 10_000

#: What a Redis ACL user needs for :class:`RedisSessionStore` (its keys, and
#: the commands of its calls and of its scripts, which Redis 7 checks against
#: the user). Additive: give it after the shared cache's ``ACL_RULES`` to the
#: same user, or after ``resetkeys resetchannels -@all`` to a user of its own.
ACL_RULES: Final = (
    "~lwa:signin:v1:* +get +set +del +getdel +evalsha +script|load "
    "+zadd +zrem +zremrangebyscore +zcard +pexpire +time"
)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1")
    return value


class MemorySessionStore:
    """One process's store: at most ``maxsize`` sessions, least recently used
    dropped first, each gone after its ``ttl``; at most ``max_pending``
    pending logins, kept apart (a full table refuses new logins, it never
    drops a session). Thread-safe."""

    def __init__(
        self,
        maxsize: int = 10_000,
        clock: Clock | Callable[[], float] = time,
        *,
        max_pending: int = MAX_PENDING_LOGINS,
    ) -> None:
        self._maxsize = _check_count("maxsize", maxsize)
        self._max_pending = _check_count("max_pending", max_pending)
        self._clock = monotonic_of(clock, "MemorySessionStore")  # what lives in this process
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._pending: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._leases: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return (
            f"MemorySessionStore({len(self._items)} sessions, maxsize={self._maxsize}, "
            f"{len(self._pending)} pending logins)"
        )

    def __len__(self) -> int:
        return len(self._items)

    def _live(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key)

    def put(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._put(key, value, ttl)

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        self._items[key] = (self._clock() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._maxsize:
            self._items.popitem(last=False)

    def replace(self, key: str, old: bytes, new: bytes, ttl: float) -> bool:
        with self._lock:
            if self._live(key) != old:
                return False
            self._put(key, new, ttl)
            return True

    def take(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
            self._items.pop(key, None)
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def delete_if(self, key: str, old: bytes) -> bool:
        with self._lock:
            if self._live(key) != old:
                return False
            del self._items[key]
            return True

    def add_login(self, key: str, value: bytes, ttl: float) -> bool:
        with self._lock:
            now = self._clock()
            # Oldest first: with one lifetime for all, the expired ones lead.
            while self._pending and next(iter(self._pending.values()))[0] <= now:
                self._pending.popitem(last=False)
            if len(self._pending) >= self._max_pending:
                return False
            self._pending[key] = (now + ttl, value)
            return True

    def take_login(self, key: str) -> bytes | None:
        with self._lock:
            item = self._pending.pop(key, None)
        return item[1] if item is not None and item[0] > self._clock() else None

    def lease(self, key: str, ttl: float) -> str | None:
        with self._lock:
            now = self._clock()
            held = self._leases.get(key)
            if held is not None and held[0] > now:
                return None
            owner = secrets.token_hex(16)
            self._leases[key] = (now + ttl, owner)
            return owner

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(key)
            if held is not None and hmac.compare_digest(held[1], owner):
                del self._leases[key]


# The scripts of RedisSessionStore: each one atomic in Redis, so no other
# worker's command lands between the check and the write it guards.
_REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_DELETE_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the login, the index of pending logins (a sorted set scored by the
# millisecond each expires, Redis's own clock). ARGV: value, PX, the bound.
# Expired members leave the index first, so it counts the live ones.
_ADD_LOGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
_TAKE_LOGIN = """
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('GETDEL', KEYS[1])
"""


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class RedisSessionStore:
    """Sessions shared by every worker through Redis (redis-py, blocking).

    Keys are ``{prefix}{kind}:{hex}``, and ``{prefix}logins`` the index that
    bounds pending logins to ``max_pending`` across all workers; every call
    has a ``timeout`` deadline. A Redis failure raises
    :class:`SessionStoreUnavailable` (the sign-in answers 503): unlike the
    token cache, a session cannot be recomputed from LWA. The ACL user needs
    :data:`ACL_RULES`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lwa:signin:v1:",
        timeout: float = 0.5,
        max_pending: int = MAX_PENDING_LOGINS,
    ) -> None:
        with needs_extra("redis", "RedisSessionStore"):
            import redis

        self._prefix = prefix
        self._max_pending = _check_count("max_pending", max_pending)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._logged: dict[str, float] = {}  # fault kind -> when last logged
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._scripts = {
            name: self._redis.register_script(lua)
            for name, lua in (
                ("replace", _REPLACE),
                ("delete_if", _DELETE_IF),
                ("release", _RELEASE),
                ("add_login", _ADD_LOGIN),
                ("take_login", _TAKE_LOGIN),
            )
        }

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self._prefix!r}, max_pending={self._max_pending})"

    def _call(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except self._errors as error:
            self._log_fault(error)
            # No detail: redis-py's messages name hosts, never secrets, but
            # the caller only needs to know the store is down.
            raise SessionStoreUnavailable() from None

    def _log_fault(self, error: BaseException) -> None:
        """A configuration fault (NOPERM, credentials, TLS...) is one an operator
        fixes: name it and the fix, once a minute; an outage stays a plain 503."""
        from .._engine.shared_cache._health import FAULTS, classify

        kind = classify(error)
        now = time.monotonic()
        if kind is None or now - self._logged.get(kind, -60.0) < 60:
            return
        self._logged[kind] = now
        if kind == "noperm":
            logger.error(
                "the session store's Redis user lacks a permission; give it: %s",
                ACL_RULES,
                extra=fields("session_store_fault", reason=kind),
            )
        elif kind in FAULTS:
            cause, fix = FAULTS[kind]
            logger.error(
                "the session store's Redis: %s; %s",
                cause,
                fix,
                extra=fields("session_store_fault", reason=kind),
            )

    def _run(self, name: str, keys: list[str], *args: bytes | int | str) -> Any:
        keys = [self._prefix + key for key in keys]
        return self._call(self._scripts[name], keys=keys, args=list(args))

    def get(self, key: str) -> bytes | None:
        value = self._call(self._redis.get, self._prefix + key)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl: float) -> None:
        self._call(self._redis.set, self._prefix + key, value, px=_ms(ttl))

    def replace(self, key: str, old: bytes, new: bytes, ttl: float) -> bool:
        return bool(self._run("replace", [key], old, new, _ms(ttl)))

    def take(self, key: str) -> bytes | None:
        value = self._call(self._redis.getdel, self._prefix + key)
        return value if isinstance(value, bytes) else None

    def delete(self, key: str) -> None:
        self._call(self._redis.delete, self._prefix + key)

    def delete_if(self, key: str, old: bytes) -> bool:
        return bool(self._run("delete_if", [key], old))

    def add_login(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(self._run("add_login", [key, "logins"], value, _ms(ttl), self._max_pending))

    def take_login(self, key: str) -> bytes | None:
        value = self._run("take_login", [key, "logins"])
        return value if isinstance(value, bytes) else None

    def lease(self, key: str, ttl: float) -> str | None:
        owner, key = secrets.token_hex(16), self._prefix + key
        taken = self._call(self._redis.set, key, owner.encode(), nx=True, px=_ms(ttl))
        return owner if taken else None

    def release(self, key: str, owner: str) -> None:
        self._run("release", [key], owner.encode())

    def close(self) -> None:
        self._redis.close()
