"""AES-256-GCM sealing, written once for the two places that encrypt at rest:
the sign-in's sessions (:mod:`.signin.sessions`) and the shared cache's
envelope (:mod:`.shared_cache._codec`).

A sealed value is a random 12-byte nonce, then the ciphertext and its tag.
The associated data binds it to where it is stored (its key), so a value
copied elsewhere fails to open. :meth:`Aead.open` gives the plain bytes only
once the tag has verified: no field of a value is read before that.

cryptography comes with the ``signin`` and ``redis`` extras, not the base
install: each importer imports this module inside its own
:func:`~._extras.needs_extra`, so the error names the extra it needs.
"""

from __future__ import annotations

import hmac
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

__all__ = ["NONCE", "Aead", "Deriver", "derive"]

NONCE: Final = 12
_SHA256: Final = hashes.SHA256()


def derive(secret: bytes, info: bytes) -> bytes:
    """32 bytes of key for the use ``info`` names (HKDF-SHA256, no salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class Deriver:
    """:func:`derive` for one secret and many ``info``: the same 32 bytes,
    with HKDF's extract step (the secret's pseudorandom key) done once here,
    so each key costs only the expand step. The shared cache derives a key
    per token (the token is in ``info``) on every Redis hit (issue 23)."""

    __slots__ = ("_prk",)

    def __init__(self, secret: bytes) -> None:
        # RFC 5869 extract with no salt: HMAC-SHA256 keyed with 32 zero bytes.
        self._prk = hmac.digest(bytes(32), secret, "sha256")

    def __repr__(self) -> str:
        return "Deriver(<secret>)"

    def derive(self, info: bytes) -> bytes:
        """``derive(secret, info)``."""
        return HKDFExpand(algorithm=_SHA256, length=32, info=info).derive(self._prk)


class Aead:
    """Seals and opens under one AES-256 key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Aead(<key>)"

    @classmethod
    def derived(cls, secret: bytes, info: bytes) -> Aead:
        """Under the key :func:`derive` gives for ``secret`` and ``info``."""
        return cls(derive(secret, info))

    def seal(self, plain: bytes, associated: bytes) -> bytes:
        """``nonce + ciphertext + tag`` of ``plain``, bound to ``associated``."""
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plain, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes | None:
        """The plain bytes, or ``None`` unless ``sealed`` was sealed here for ``associated``."""
        if len(sealed) <= NONCE:
            return None
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], associated)
        except InvalidTag:
            return None
