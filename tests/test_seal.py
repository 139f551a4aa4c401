"""One AES-GCM sealer (lwa_middleware/_seal.py) for sessions and the shared
cache: values sealed before it existed still open, and nothing opens after
a change of a single byte, of the key it is bound to, or of the secret."""

from __future__ import annotations

import pytest

pytest.importorskip("cryptography")

from support.private import Aead, Codec, Deriver, Sealer, derive

# Sealed by the two sealers before they became one (commit ac61aa7):
# Sealer("s" * 40).seal(SESSION_KEY, SESSION_PLAIN), and Codec(aead=True).seal(...).
SESSION_KEY = "session:" + "ab" * 32
SESSION_PLAIN = b'{"at":"Atza|x","uid":"amzn1.account.A"}'
SESSION_SEALED = bytes.fromhex(
    "ce0dae1e23c4bf1fa94e1522ca1c67aa87bee508c840ed1cb8d32958650597351a5b7da837e6f9d0"
    "6b4cd4bfbeae86183fc734f20d28e432df94afa447785563bdbb20"
)
CODEC_SECRET = b"k" * 32
CODEC_KEY = "lwa:v1:{abc}:id:" + "ab" * 32
CODEC_TOKEN = "Atza|" + "T" * 60
CODEC_BODY = b'{"v":2,"error":"invalid_token","description":"revoked"}'
CODEC_SEALED = bytes.fromhex(
    "332e34366232376232612e7e52cea0646c457e99c7218f5b33924fca0d6af9862cd91d8b47a3e0d4"
    "3aa1bdef99b365219b1d4fca959a11cd19e5487242b109df6384bbec2a94c6dde579b9502410d5a3"
    "10a68a2d77c046a360a54585298e"
)


def _codec() -> Codec:
    return Codec(
        "https://api.amazon.com",
        frozenset({"amzn1.application-oa2-client.0123"}),
        300.0,
        aead=True,
    )


def test_a_session_sealed_by_the_old_sealer_still_opens() -> None:
    sealer = Sealer("s" * 40)
    assert sealer.open(SESSION_KEY, SESSION_SEALED) == SESSION_PLAIN
    assert sealer.open("session:" + "cd" * 32, SESSION_SEALED) is None  # another key
    assert Sealer("t" * 40).open(SESSION_KEY, SESSION_SEALED) is None  # another secret
    for at in (0, 12, len(SESSION_SEALED) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(SESSION_SEALED)
        flipped[at] ^= 1
        assert sealer.open(SESSION_KEY, bytes(flipped)) is None
    assert sealer.open(SESSION_KEY, SESSION_SEALED[:12]) is None


def test_a_shared_cache_envelope_sealed_by_the_old_codec_still_opens() -> None:
    codec = _codec()
    assert codec.unseal(CODEC_SECRET, CODEC_KEY, CODEC_SEALED, CODEC_TOKEN) == CODEC_BODY
    with pytest.raises(ValueError):
        codec.unseal(CODEC_SECRET, CODEC_KEY, CODEC_SEALED, CODEC_TOKEN + "x")  # another token
    with pytest.raises(ValueError):
        codec.unseal(CODEC_SECRET, CODEC_KEY + "0", CODEC_SEALED, CODEC_TOKEN)  # another key
    for at in (11, 30, len(CODEC_SEALED) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(CODEC_SEALED)
        flipped[at] ^= 1
        with pytest.raises(ValueError):
            codec.unseal(CODEC_SECRET, CODEC_KEY, bytes(flipped), CODEC_TOKEN)


def test_both_wire_formats_are_kept_by_the_new_sealer() -> None:
    sealer = Sealer("s" * 40)
    sealed = sealer.seal(SESSION_KEY, SESSION_PLAIN)
    assert len(sealed) == len(SESSION_SEALED)
    assert sealed != SESSION_SEALED  # a fresh nonce
    assert sealer.open(SESSION_KEY, sealed) == SESSION_PLAIN
    codec = _codec()
    envelope = codec.seal(CODEC_SECRET, CODEC_KEY, CODEC_BODY, CODEC_TOKEN)
    assert envelope[:11] == CODEC_SEALED[:11]  # b"3." + key id + b"."
    assert len(envelope) == len(CODEC_SEALED)
    assert codec.unseal(CODEC_SECRET, CODEC_KEY, envelope, CODEC_TOKEN) == CODEC_BODY


def test_the_sealer_opens_only_what_it_sealed_for_that_place() -> None:
    aead = Aead.derived(b"x" * 32, b"test")
    sealed = aead.seal(b"plain", b"here")
    assert aead.open(sealed, b"here") == b"plain"
    assert aead.open(sealed, b"there") is None
    assert Aead(derive(b"y" * 32, b"test")).open(sealed, b"here") is None
    assert aead.open(b"", b"here") is None
    assert "x" * 8 not in repr(aead)


@pytest.mark.parametrize("secret", [b"k" * 32, b"s" * 40, bytes(range(64)), b"x"])
def test_a_deriver_gives_the_keys_derive_gives(secret: bytes) -> None:
    # The shared cache extracts once per secret and expands per token (issue
    # 23): every key must be HKDF's own, or old values stop opening.
    deriver = Deriver(secret)
    for info in (b"", b"lwa:v1:aead\0abcd1234\0Atza|" + b"T" * 300, b"test"):
        assert deriver.derive(info) == derive(secret, info)
    assert deriver.derive(b"a") != Deriver(secret + b"!").derive(b"a")
    assert secret.hex() not in repr(deriver)


def test_a_codec_opens_values_of_each_secret_it_met() -> None:
    # The per-secret cache of key ids and extracts never mixes two secrets.
    codec = _codec()
    other = b"o" * 32
    mine = codec.seal(other, CODEC_KEY, CODEC_BODY, CODEC_TOKEN)
    assert codec.unseal(CODEC_SECRET, CODEC_KEY, CODEC_SEALED, CODEC_TOKEN) == CODEC_BODY
    assert codec.unseal(other, CODEC_KEY, mine, CODEC_TOKEN) == CODEC_BODY
    for secret, sealed in ((other, CODEC_SEALED), (CODEC_SECRET, mine)):
        with pytest.raises(ValueError):
            codec.unseal(secret, CODEC_KEY, sealed, CODEC_TOKEN)
