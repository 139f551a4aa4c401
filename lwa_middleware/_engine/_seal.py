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

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["NONCE", "Aead", "derive"]

NONCE: Final = 12


def derive(secret: bytes, info: bytes) -> bytes:
    """32 bytes of key for the use ``info`` names (HKDF-SHA256, no salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


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
