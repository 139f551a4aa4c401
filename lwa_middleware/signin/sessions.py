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
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigurationError, UpstreamUnavailable

__all__ = [
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

_NONCE = 12


@runtime_checkable
class SessionStore(Protocol):
    """What :class:`~lwa_middleware.signin.SignIn` needs from a store.

    Values are sealed bytes; ``ttl`` is in seconds. Every call is blocking
    and bounded (Redis calls have a deadline).
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def take(self, key: str) -> bytes | None:
        """Get and delete, atomically: a pending login is used once."""
        ...

    def delete(self, key: str) -> None: ...

    def lease(self, key: str, ttl: float) -> bool:
        """Take a lock that expires by itself; ``False`` if someone holds it."""
        ...

    def release(self, key: str) -> None: ...


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
        self._aead = AESGCM(_derive(raw, b"lwa-signin/v1/seal"))
        self._name_key = _derive(raw, b"lwa-signin/v1/name")

    def __repr__(self) -> str:
        return "Sealer(<secret>)"

    def name(self, kind: str, value: str) -> str:
        """The store key of a browser-held id: a keyed digest, never the id."""
        digest = hmac.new(self._name_key, f"{kind}:{value}".encode(), hashlib.sha256)
        return f"{kind}:{digest.hexdigest()}"

    def seal(self, key: str, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, key.encode())

    def open(self, key: str, sealed: bytes) -> bytes | None:
        """The plain bytes, or ``None`` if they were not sealed here for ``key``."""
        if len(sealed) <= _NONCE:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], key.encode())
        except InvalidTag:
            return None


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class MemorySessionStore:
    """One process's store: at most ``maxsize`` entries, least recently used
    dropped first, each gone after its ``ttl``. Thread-safe."""

    def __init__(self, maxsize: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError("maxsize must be an integer >= 1")
        self._maxsize = maxsize
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemorySessionStore({len(self._items)} entries, maxsize={self._maxsize})"

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
            self._items[key] = (self._clock() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def take(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
            self._items.pop(key, None)
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def lease(self, key: str, ttl: float) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._items[key] = (self._clock() + ttl, b"1")
            return True

    def release(self, key: str) -> None:
        self.delete(key)


class RedisSessionStore:
    """Sessions shared by every worker through Redis (redis-py, blocking).

    Keys are ``{prefix}{kind}:{hex}``; every call has a ``timeout`` deadline.
    A Redis failure raises :class:`SessionStoreUnavailable` (the sign-in
    answers 503): unlike the token cache, a session cannot be recomputed from LWA.
    """

    def __init__(self, url: str, *, prefix: str = "lwa:signin:v1:", timeout: float = 0.5) -> None:
        import redis

        self._prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self._prefix!r})"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except self._errors:
            # No detail: redis-py's messages name hosts, never secrets, but
            # the caller only needs to know the store is down.
            raise SessionStoreUnavailable() from None

    def get(self, key: str) -> bytes | None:
        value = self._call("get", self._prefix + key)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl: float) -> None:
        self._call("set", self._prefix + key, value, px=max(1, int(ttl * 1000)))

    def take(self, key: str) -> bytes | None:
        value = self._call("getdel", self._prefix + key)
        return value if isinstance(value, bytes) else None

    def delete(self, key: str) -> None:
        self._call("delete", self._prefix + key)

    def lease(self, key: str, ttl: float) -> bool:
        ms = max(1, int(ttl * 1000))
        return bool(self._call("set", self._prefix + key, b"1", nx=True, px=ms))

    def release(self, key: str) -> None:
        self._call("delete", self._prefix + key)

    def close(self) -> None:
        self._redis.close()
