"""What the shared cache stores: key names, the sealed JSON values, the MAC
or, with a configured ``cache_key_secret``, the AEAD envelope.

Envelope 3 (a configured secret): ``b"3." + key id + b"." + nonce + AES-GCM
ciphertext``. The AES-256 key is derived with HKDF-SHA256 from the secret
*and the token* (``info`` = label, key id, token), the associated data is
the schema and the Redis key's name, and the 12-byte nonce is random. So
Redis holds nothing readable, a forgery needs both the secret and the token,
and a value copied onto another key (or another token's) fails to open. The
key id (8 hex of an HMAC of the secret) names the secret that sealed it, for
rotation. With a generated secret (kept in Redis) values keep the MAC of
schema 2: their JSON is readable by whoever reads Redis.

Pure functions and one small :class:`Codec` (it caches the derived MAC key
and knows the namespace); no Redis, no clock of its own: the plans pass the
current monotonic and epoch seconds in, so every reading is theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any, Final

from .._seal import Aead, Deriver
from ..errors import InvalidToken
from ..flow import Resolved
from ..identity import Identity

#: Version of the stored JSON. 2: every value is sealed with a MAC (a value
#: of version 1 fails the MAC check, so it reads as a miss and is replaced).
SCHEMA: Final = 2
PREFIX: Final = "lwa:v1:"
#: Label of the MAC key, derived from the key secret: HMAC(secret, label).
_MAC_LABEL: Final = b"lwa:v1:mac"
#: A stored value is the hex HMAC-SHA256 (this many characters) then the JSON.
_MAC_HEX: Final = 64
SECRET_KEY: Final = PREFIX + "secret"
#: A random marker of the whole data set (one key: on a Cluster, of one
#: node), asked when a bucket's own marker was missing; see _plans._check_lost.
EPOCH_KEY: Final = PREFIX + "epoch"
#: Hex characters of a token's digest that name its *bucket*: the Redis
#: Cluster hash tag of every key of the token and of the bucket's data-loss
#: marker and fencing counter, so that each script touches one slot only.
#: 3 hex: 4096 buckets, spread over the slots of every node of a cluster.
BUCKET_HEX: Final = 3
#: The AEAD envelope's version, HKDF label and key-id label.
ENVELOPE: Final = b"3"
_AEAD_LABEL: Final = b"lwa:v1:aead"
_KEY_ID_LABEL: Final = b"lwa:v1:key-id"
#: Largest value accepted from Redis; anything bigger is corrupt.
MAX_VALUE_BYTES: Final = 16 * 1024

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


def bucket(digest: str) -> str:
    """The bucket of a token's keys: the first :data:`BUCKET_HEX` hex of its digest."""
    return digest[:BUCKET_HEX]


def bucket_key(name: str, digest: str) -> str:
    """``lwa:v1:{<bucket>}:<name>``: a key of the bucket of ``digest`` itself
    (``epoch``: its data-loss marker; ``fence``: its fencing counter)."""
    return PREFIX + "{" + bucket(digest) + "}:" + name


def token_key(kind: str, digest: str) -> str:
    """``lwa:v1:{<bucket>}:<kind>:<hex>``: ``id``, ``rej``, ``rev`` or ``lease``.
    The ``{...}`` is a Redis Cluster hash tag: a token's keys share its slot."""
    return bucket_key(kind, digest) + ":" + digest


def entry_keys(digest: str) -> tuple[str, str, str, str, str, str]:
    """The keys of one token, in the order the read and write scripts take
    them: identity, rejection, lease, revocation, then its bucket's data-loss
    marker and fencing counter. All in one hash slot."""
    return (
        token_key("id", digest),
        token_key("rej", digest),
        token_key("lease", digest),
        token_key("rev", digest),
        bucket_key("epoch", digest),
        bucket_key("fence", digest),
    )


#: Revocations written per round trip when they are written again.
REPLAY_BATCH: Final = 256


def replay_batches(
    live: list[tuple[str, int, bytes]], *, per_bucket: bool
) -> list[tuple[tuple[str, ...], tuple[bytes | int, ...]]]:
    """The ``replay`` calls (keys, args) that write again ``live`` revocations,
    given as ``(hex, PX, sealed value)``: at most :data:`REPLAY_BATCH` a call,
    and with ``per_bucket`` (a Redis Cluster) only keys of one bucket, so of
    one slot, in each call."""
    groups: dict[str, list[tuple[str, int, bytes]]] = {}
    for entry in live:
        groups.setdefault(bucket(entry[0]) if per_bucket else "", []).append(entry)
    calls: list[tuple[tuple[str, ...], tuple[bytes | int, ...]]] = []
    for group in groups.values():
        for start in range(0, len(group), REPLAY_BATCH):
            batch = group[start : start + REPLAY_BATCH]
            args: list[bytes | int] = []
            for _, px, sealed in batch:
                args += [sealed, px]
            calls.append((tuple(token_key("rev", h) for h, _, _ in batch), tuple(args)))
    return calls


def key_id(secret: bytes) -> bytes:
    """8 hex characters naming ``secret`` (not enough to test guesses of it offline
    any faster than the key names already allow)."""
    return hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8].encode()


def _aead_key(deriver: Deriver, kid: bytes, token: str) -> Aead:
    # Per token, on purpose: a forgery needs the token too (see the module's docstring).
    return Aead(deriver.derive(_AEAD_LABEL + b"\0" + kid + b"\0" + token.encode("ascii")))


def _associated(kid: bytes, key: str) -> bytes:
    return b"lwa:v1:" + ENVELOPE + b"\n" + kid + b"\n" + key.encode()


def _mac_key(secret: bytes) -> bytes:
    # Derived, so the MAC key and the key-naming HMAC never share a key.
    return hmac.new(secret, _MAC_LABEL, hashlib.sha256).digest()


def _tag(mac_key: bytes, key: str, body: bytes) -> bytes:
    return hmac.new(mac_key, key.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()


def rejection_body(description: str) -> bytes:
    """The JSON of a rejection (or, with :data:`~.cache.REVOKED`, a revocation)."""
    return json.dumps(
        {"v": SCHEMA, "error": InvalidToken.error, "description": description}
    ).encode()


def _json_object(raw: bytes, expected: frozenset[str]) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("v") != SCHEMA or set(data) != expected:
        raise ValueError("not a value of this schema")
    return data


def encode_identity(resolved: Resolved) -> bytes:
    """The JSON of a resolved token: what it proves, never the token."""
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


def decode_rejection(raw: bytes) -> InvalidToken:
    """The rejection (or revocation) in ``raw``; ``ValueError`` if corrupt."""
    data = _json_object(raw, _REJECTION_FIELDS)
    description = data["description"]
    if data["error"] != InvalidToken.error or not isinstance(description, str):
        raise ValueError("rejection")
    if not description or len(description) > 200:
        raise ValueError("description")
    return InvalidToken(description)


class Codec:
    """Names keys and seals, opens and validates values for one configuration.

    :param api_base_url: the LWA origin, part of every key's namespace.
    :param client_ids: the accepted client ids, part of the namespace too, and
        the only ones an identity read back may carry.
    :param cache_ttl: the longest an identity read back is served.
    """

    __slots__ = ("_aead", "_client_ids", "_keys", "_mac", "_namespace", "_ttl")

    def __init__(
        self,
        api_base_url: str,
        client_ids: frozenset[str],
        cache_ttl: float,
        *,
        aead: bool = False,
    ) -> None:
        self._namespace = "\0".join(["lwa:v1", api_base_url, *sorted(client_ids), ""]).encode()
        self._client_ids = client_ids
        self._ttl = cache_ttl
        self._mac: tuple[bytes, bytes] | None = None  # (secret, MAC key derived from it)
        #: Seal with the AEAD envelope (a configured secret), and accept nothing else.
        self._aead = aead
        #: Per secret (the current and older configured ones, or the generated
        #: ones met): its key id and HKDF extract, so a hit derives only its
        #: token's key (issue 23).
        self._keys: dict[bytes, tuple[bytes, Deriver]] = {}

    def _aead_keys(self, secret: bytes) -> tuple[bytes, Deriver]:
        keys = self._keys.get(secret)
        if keys is None:
            if len(self._keys) >= 8:  # secrets are few; a churn must not grow this
                self._keys.clear()
            keys = self._keys[secret] = (key_id(secret), Deriver(secret))
        return keys

    def digest(self, secret: bytes, token: str) -> str:
        """The hex naming ``token``'s keys: an HMAC of the namespace and token."""
        return hmac.new(secret, self._namespace + token.encode(), hashlib.sha256).hexdigest()

    def mac_key(self, secret: bytes) -> bytes:
        """The MAC key derived from ``secret`` (cached for the last secret)."""
        mac = self._mac
        if mac is None or mac[0] is not secret:
            mac = self._mac = (secret, _mac_key(secret))
        return mac[1]

    def seal(self, secret: bytes, key: str, body: bytes, token: str | None = None) -> bytes:
        """What is stored under ``key``: with the AEAD (a configured secret, and
        the ``token`` the value is about) ``body`` encrypted and bound to both;
        else ``body`` with a MAC bound to ``key`` in front."""
        if self._aead:
            if token is None:
                raise ValueError("an AEAD value needs its token")
            kid, deriver = self._aead_keys(secret)
            sealed = _aead_key(deriver, kid, token).seal(body, _associated(kid, key))
            return ENVELOPE + b"." + kid + b"." + sealed
        return _tag(self.mac_key(secret), key, body) + body

    def unseal(self, secret: bytes, key: str, raw: bytes, token: str | None = None) -> bytes:
        """The body of a value read from ``key``; ``ValueError`` unless it opens
        (AEAD: with ``secret`` and ``token``; else its MAC holds)."""
        if self._aead:
            head, kid, rest = raw[:2], raw[2:10], raw[10:]
            if head != ENVELOPE + b"." or rest[:1] != b"." or token is None:
                raise ValueError("not an envelope of this schema")  # no downgrade to a MAC
            mine, deriver = self._aead_keys(secret)
            if not hmac.compare_digest(kid, mine):
                raise ValueError("sealed under another secret")
            opened = _aead_key(deriver, kid, token).open(rest[1:], _associated(kid, key))
            if opened is None:
                raise ValueError("AEAD")
            return opened
        tag, body = raw[:_MAC_HEX], raw[_MAC_HEX:]
        if not hmac.compare_digest(tag, _tag(self.mac_key(secret), key, body)):
            raise ValueError("MAC")
        return body

    def decode_identity(
        self, raw: bytes, pttl: int, now_mono: float, now_wall: float
    ) -> SharedHit | None:
        """The hit, or ``None`` for an expired entry; raise ``ValueError`` if corrupt.

        :param pttl: the entry's remaining Redis TTL in milliseconds.
        :param now_mono: the monotonic reading ``expires_mono`` is rebuilt from.
        :param now_wall: the epoch reading ``expires_at`` is compared with.
        """
        data = _json_object(raw, _IDENTITY_FIELDS)
        user_id, client_id = data["user_id"], data["client_id"]
        expires_at, has_profile, scopes = data["expires_at"], data["has_profile"], data["scopes"]
        optional = [data[name] for name in ("email", "name", "postal_code")]
        _check_identity(data, optional)
        if client_id not in self._client_ids:
            # Not ours to serve (the namespace in the key makes this a
            # corrupt or forged value).
            raise ValueError("client_id")
        remaining = expires_at - now_wall
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
        ttl = self._ttl
        fresh_for = min(ttl, pttl / 1000) if pttl > 0 else min(ttl, remaining)
        if fresh_for <= 0:
            return None
        resolved = Resolved(identity, now_mono + remaining, has_profile)
        return SharedHit(resolved, fresh_for)


def _check_identity(data: dict[str, Any], optional: list[Any]) -> None:
    """Raise ``ValueError`` unless a stored identity's fields have their types."""
    user_id, client_id, scopes = data["user_id"], data["client_id"], data["scopes"]
    if not isinstance(user_id, str) or not user_id or not isinstance(client_id, str):
        raise ValueError("user_id or client_id")
    if not all(value is None or isinstance(value, str) for value in optional):
        raise ValueError("profile fields")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("scopes")
    expires_at = data["expires_at"]
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not math.isfinite(expires_at)
    ):
        raise ValueError("expires_at")
    if not isinstance(data["has_profile"], bool):
        raise ValueError("has_profile")
