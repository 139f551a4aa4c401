"""The generated key secret: read from Redis, put back, never split.

A mixin of the plans' state (:class:`._plans._Plans`): without
``cache_key_secret`` every worker reads the secret from :data:`SECRET_KEY`
and re-reads it every :data:`SECRET_RECHECK` seconds, after a failure, before
a ``revoke()``, and as soon as its subscriber saw another one in Redis
(:attr:`._fleet.Fleet.secret`). A vanished secret is put back by whoever
holds it (never replaced), and a worker holding none mints one only once no
process holding one listens on the channel (see :data:`._channel.ASK_SECRET`),
or after :data:`SECRET_WAIT`: so workers converge on one secret, and one
key space, before anyone mints a new one.
"""

from __future__ import annotations

import math
import secrets
import threading
from typing import Final

from .._observe import fields
from ._channel import ASK_SECRET, CHANNEL
from ._codec import SECRET_KEY
from ._fleet import Fleet
from ._health import _Health, logger
from ._steps import _Call, _Plan, _Sleep

#: Seconds after which a generated secret is read from Redis again.
SECRET_RECHECK: Final = 30.0
#: Seconds a worker without a secret waits for the processes holding one to
#: put it back before it mints its own, and the pause between two reads.
SECRET_WAIT: Final = 1.5
SECRET_POLL: Final = 0.05
_MIN_SECRET_BYTES: Final = 16


class _Unusable(Exception):
    """Redis answered, but not something this cache can use."""


#: Whether the missing ``cache_key_secret`` was warned about (once a process).
_warned_no_secret = False
_warn_lock = threading.Lock()


def warn_generated_secret() -> None:
    """Warn, once a process, that the key secret is generated and kept in Redis."""
    global _warned_no_secret
    with _warn_lock:
        if _warned_no_secret:
            return
        _warned_no_secret = True
    logger.warning(
        "redis_url is set without cache_key_secret: the key and MAC "
        "secret is generated and stored in Redis (%s), so anyone who can read Redis can "
        "forge shared-cache entries. Set cache_key_secret (LWA_CACHE_KEY_SECRET).",
        SECRET_KEY,
        extra=fields("config_warning"),
    )


class _Secrets(_Health):
    """The key secret's part of the plans' state (set by ``_Plans.__init__``)."""

    _secret: bytes | None
    _configured_secret: bytes | None
    _secret_checked: float
    _old_secrets: tuple[bytes, ...]
    _fleet: Fleet | None

    def _secret_current(self, secret: bytes | None) -> bool:
        """Whether ``secret``, the one in use, may be used without asking Redis."""
        if secret is None or self._configured_secret is not None:
            return secret is not None
        fleet = self._fleet
        return self._clock() - self._secret_checked < SECRET_RECHECK and (
            # The subscriber saw another secret in Redis: read it now.
            fleet is None or fleet.secret in (None, secret)
        )

    def _secret_plan(self) -> _Plan[bytes]:
        secret = self._secret
        fleet = self._fleet
        if secret is not None and self._secret_current(secret):
            return secret
        # The secret this worker already uses, if any: a vanished secret is
        # put back, never replaced, so workers never split into two key spaces.
        # A worker with none mints one only once no process holding one
        # listens (they put theirs back when asked), or after SECRET_WAIT.
        mine = secret if secret is not None else secrets.token_bytes(32)
        ask = secret is None and fleet is not None
        ask_until = self._clock() + SECRET_WAIT if ask else -math.inf
        while True:
            asking = (CHANNEL, ASK_SECRET) if self._clock() < ask_until else ()
            reply = yield _Call("secret", (SECRET_KEY,), (mine, *asking))
            if reply != b"":
                break
            yield _Sleep(SECRET_POLL)
        if not isinstance(reply, bytes) or len(reply) < _MIN_SECRET_BYTES:
            raise _Unusable(f"{SECRET_KEY} does not hold a usable secret")
        if secret is not None and reply != secret:
            self._log("another worker replaced the generated key secret in Redis")
        self._secret = reply
        self._secret_checked = self._clock()
        if self._fleet is not None:
            self._fleet.learn_secret(reply)
        return reply

    def _revoking_secrets(self, secret: bytes) -> list[bytes]:
        """``secret`` first, then every other one a revocation is also made
        under: the configured older ones, or the generated ones learnt."""
        others = list(self._old_secrets)
        if self._configured_secret is None and self._fleet is not None:
            others = self._fleet.known_secrets()
        return [secret, *(s for s in others if s != secret)]
