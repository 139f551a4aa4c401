"""The messages of the revocation channel, and the rules a subscriber reads
them by (see :mod:`._fleet`).

A pushed message is ``<stream id> <tag> <body>``; a stream entry holds
``<tag> <body>`` in its one field ``m``. The tag is the hex HMAC-SHA256, under
the shared cache's MAC key, of a label and the body; the body is ``r <hex>
<epoch ms>`` (revoked until) or ``d <hex> 0`` (forget). The rules:

* Nothing of a message is used before its tag verifies under one of the
  secrets the process knows: not its body, and not the stream id in front
  of it, which is not sealed (Redis assigns it after sealing). A verified
  push's id is only a *candidate* to resume from, checked against the
  stream on the next reconnect; the position the subscriber filters pushes
  by is only ever one it read from the stream itself. So a forged
  ``PUBLISH`` with a huge id, or a genuine message replayed under one,
  cannot silence later pushes.
* A message that is too long, not of the form above, or whose tag fails is
  counted (``malformed`` or ``forged``) and dropped, never raised.
* Stream entries are read a page at a time by a script that hands back an
  oversized entry's id without its content (:data:`MAX_MESSAGE`), so
  catching up is bounded in memory whatever was appended to the stream.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final, NamedTuple

from ._codec import PREFIX

#: The channel revocations and invalidations are published on.
CHANNEL: Final = PREFIX + "events"
#: The capped stream they are also appended to, for replay.
STREAM: Final = PREFIX + "events:log"
#: About how many messages the stream keeps (``XADD MAXLEN ~``).
STREAM_MAXLEN: Final = 100_000
#: The most bytes a sealed message may have (a real one has about 150):
#: anything longer is dropped unread.
MAX_MESSAGE: Final = 512
#: Published, unsealed, by a process that found no generated secret and has
#: none: "whoever holds one, put it back" (see :meth:`._fleet.Fleet._take`).
ASK_SECRET: Final = b"secret?"
_LABEL: Final = b"lwa:v1:events\n"
_ID: Final = re.compile(rb"([0-9]{1,20})-([0-9]{1,20})")
#: Each part of a stream id is an unsigned 64-bit number in Redis.
_ID_MAX: Final = 2**64 - 1
_BODY: Final = re.compile(rb"([rd]) ([0-9a-f]{64}) ([0-9]{1,15})")
_TAG_LEN: Final = 64


class Message(NamedTuple):
    """A verified message: ``kind`` ``r`` (revoked until ``until``, epoch
    seconds) or ``d`` (forget), about the Redis hex ``digest``."""

    kind: str
    digest: str
    until: float


def seal(mac_key: bytes, body: bytes) -> bytes:
    """``<tag> <body>``: the message as published and appended."""
    tag = hmac.new(mac_key, _LABEL + body, hashlib.sha256).hexdigest().encode()
    return tag + b" " + body


def stream_id(raw: object) -> tuple[int, int] | None:
    """A stream id ``<ms>-<seq>`` as a pair to compare, or ``None`` if it is not one."""
    if not isinstance(raw, bytes):
        return None
    found = _ID.fullmatch(raw)
    if found is None:
        return None
    ms, seq = int(found.group(1)), int(found.group(2))
    return (ms, seq) if ms <= _ID_MAX and seq <= _ID_MAX else None


def open_sealed(sealed: object, mac_keys: list[bytes]) -> Message | str:
    """The :class:`Message` in ``sealed``, or why it was dropped: ``"forged"``
    (its tag verifies under none of ``mac_keys``) or ``"malformed"``."""
    if not isinstance(sealed, bytes) or len(sealed) > MAX_MESSAGE:
        return "malformed"
    if len(sealed) <= _TAG_LEN or sealed[_TAG_LEN : _TAG_LEN + 1] != b" ":
        return "malformed"
    tag, body = sealed[:_TAG_LEN], sealed[_TAG_LEN + 1 :]
    if not any(
        hmac.compare_digest(tag, seal(key, body)[:_TAG_LEN]) for key in mac_keys
    ):
        return "forged"
    found = _BODY.fullmatch(body)
    if found is None:
        return "malformed"  # sealed by us, yet not a message we know
    kind, digest, until_ms = (part.decode("ascii") for part in found.groups())
    return Message(kind, digest, int(until_ms) / 1000)


def split_push(data: object) -> tuple[bytes, bytes] | None:
    """``(stream id, sealed)`` of a pushed ``<stream id> <sealed>``, neither
    checked yet; ``None`` if it is not of that shape (or too long)."""
    if not isinstance(data, bytes) or len(data) > MAX_MESSAGE + 48:
        return None
    raw_id, space, sealed = data.partition(b" ")
    return (raw_id, sealed) if space else None
