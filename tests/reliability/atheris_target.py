"""An atheris (libFuzzer) target over both middlewares, with a real emulator.

Run it, when atheris is installed, from the repository root::

    python -m tests.reliability.atheris_target -runs=100000 -max_len=8192

An input is read as lines: the method, the path, the raw query, then headers
as ``name:value``. ``$V0``, ``$V1``, ``$V2`` (live tokens of ours), ``$O`` (a
token of another client) and ``$D0``, ``$D1`` (revoked, expired) are replaced
by real tokens, so the fuzzer can combine real credentials with anything.
Every input goes through the ASGI and the WSGI middleware; the invariants of
:mod:`.hostile_kit` raise ``AssertionError`` when broken.
"""

from __future__ import annotations

import sys

from .hostile_kit import Harness, RawRequest, Tokens

SEEDS: tuple[bytes, ...] = (
    b"GET\n/uid\n\nauthorization:Bearer $V0",
    b"GET\n/zip\n\nauthorization:Bearer $V0",
    b"GET\n/zip\n\nx-amz-access-token:$V1",
    b"GET\n/me\naccess_token=$O\n",
    b"GET\n/me\naccess%5Ftoken=$D0\n",
    b"GET\n/me\naccess_token=$V0\nx-amz-access-token:$V1",
    b"GET\n/me\n\nauthorization:Bearer $V0\nauthorization:Bearer $V2",
    b"GET\n/public/../me\n\n",
    b"GET\n//public/%2e%2e/uid\n\nauthorization:Basic $V0",
    b"OPTIONS\n/me\n\naccess-control-request-method:GET",
    b"GET\n/me\n\nauthorization:Bearer \x00\xff$V0",
    b"GET\n/optional\n\n",
    b"GET\n/optional\n\nauthorization:Bearer $D1",
    b"PROPFIND\n/\xc3\xa9\n%C3%A9=%00&access_token=\nx-amz-access-token:",
)

_PLACEHOLDERS = (b"$V0", b"$V1", b"$V2", b"$O", b"$D0", b"$D1")


def decode(data: bytes, tokens: Tokens) -> RawRequest:
    """The :class:`RawRequest` an input stands for."""
    valid = list(tokens.valid)
    real = [*valid, *tokens.other, *tokens.dead]
    for placeholder, token in zip(_PLACEHOLDERS, real, strict=False):
        data = data.replace(placeholder, token.encode())
    lines = data.split(b"\n")
    lines += [b""] * (3 - len(lines))
    headers = []
    for line in lines[3:]:
        name, _, value = line.partition(b":")
        headers.append((name, value))
    return RawRequest(
        method=lines[0].decode("latin-1"),
        path=lines[1].decode("utf-8", "replace"),
        query=lines[2],
        headers=tuple(headers),
    )


def main() -> None:
    import atheris

    from lwa_middleware.testing import LWAEmulator

    lwa = LWAEmulator().start()
    tokens = Tokens.issue(lwa)
    harness = Harness(lwa, tokens)

    def test_one_input(data: bytes) -> None:
        request = decode(data, tokens)
        harness.run_asgi(request)
        harness.run_wsgi(request)

    for seed in SEEDS:
        test_one_input(seed)
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        harness.close()
        lwa.stop()


if __name__ == "__main__":
    main()
