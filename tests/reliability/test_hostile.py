"""Hostile input: Hypothesis throws raw scopes and environs at both middlewares.

Header names and values with every byte 0x00-0xFF, repeated and huge (64 KiB)
headers, odd paths (``//``, ``/..``, ``%00``, unicode), percent-encoding and
unicode in query strings, odd methods, and real, revoked, expired,
other-client and LWA-looking garbage tokens, against a real emulator. The
invariants are in :mod:`.hostile_kit`.
"""

from __future__ import annotations

import os
import string
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lwa_middleware.testing import LWAEmulator

from .conftest import REPO
from .hostile_kit import Harness, RawRequest, Tokens

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

URLSAFE = string.ascii_letters + string.digits + "-_|."


@pytest.fixture
def tokens(lwa_emulator: LWAEmulator) -> Tokens:
    return Tokens.issue(lwa_emulator)


@pytest.fixture
def harness(lwa_emulator: LWAEmulator, tokens: Tokens) -> Iterator[Harness]:
    made = Harness(lwa_emulator, tokens)
    yield made
    made.close()


def token_values(tokens: Tokens) -> st.SearchStrategy[bytes]:
    real = st.sampled_from([t.encode() for t in tokens.all])
    lwa_looking = st.text(URLSAFE, min_size=350, max_size=500).map(lambda s: b"Atza|" + s.encode())
    short = st.text(URLSAFE, min_size=1, max_size=40).map(str.encode)
    anything = st.binary(max_size=64)
    huge = st.integers(2049, 64 * 1024).map(lambda n: b"A" * n)

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        # A real token with one byte replaced or inserted: must never resolve.
        token = draw(real)
        at = draw(st.integers(0, len(token)))
        byte = bytes([draw(st.integers(0, 255))])
        cut = draw(st.integers(0, 1))
        return token[:at] + byte + token[at + cut :]

    return st.one_of(real, lwa_looking, short, anything, huge, spliced())


def header_lists(tokens: Tokens) -> st.SearchStrategy[tuple[tuple[bytes, bytes], ...]]:
    value = token_values(tokens)
    auth_value = st.one_of(
        value,
        value.map(lambda v: b"Bearer " + v),
        st.tuples(
            st.sampled_from([b"bearer", b"BEARER", b"Bearer", b"Basic", b"Bearer\t", b""]),
            st.sampled_from([b" ", b"  ", b"\t", b""]),
            value,
            st.sampled_from([b"", b" ", b", x", b" extra"]),
        ).map(b"".join),
    )
    hostile = st.one_of(
        st.tuples(st.sampled_from([b"authorization", b"Authorization"]), auth_value),
        st.tuples(st.just(b"x-amz-access-token"), value),
    )
    # Well-formed credentials too, so that many examples reach the app with an
    # identity and the "vouched for" invariant is exercised, not just refusals.
    real = st.sampled_from([t.encode() for t in tokens.all])
    clean = st.one_of(
        real.map(lambda t: (b"authorization", b"Bearer " + t)),
        real.map(lambda t: (b"x-amz-access-token", t)),
    )
    noise = st.tuples(
        st.one_of(
            st.sampled_from([b"host", b"cookie", b"origin", b"access-control-request-method"]),
            st.binary(min_size=0, max_size=24),
        ),
        st.one_of(st.binary(max_size=128), st.integers(0, 64 * 1024).map(lambda n: b"v" * n)),
    )
    credentials = st.lists(st.one_of(clean, clean, hostile), max_size=2)
    return (
        st.tuples(credentials, st.lists(noise, max_size=4))
        .flatmap(lambda parts: st.permutations(parts[0] + parts[1]))
        .map(tuple)
    )


def paths() -> st.SearchStrategy[str]:
    known = st.sampled_from(
        [
            "/me",
            "/public",
            "/public/a",
            "/optional",
            "/zip",
            "/uid",
            "/users/7/orders",
            "//public",
            "/public/..",
            "/public/../me",
            "/public/%2e%2e/zip",
            "/%00",
            "/me\x00",
            "/public//..//zip",
            "",
            "public",
            "/./public/./../uid",
            "/é",
            "/public/\u2603",
        ]
    )
    built = st.lists(
        st.one_of(
            st.sampled_from(["", ".", "..", "public", "*", "%00", "%2F"]), st.text(max_size=8)
        ),
        max_size=5,
    ).map(lambda segments: "/" + "/".join(segments))
    return st.one_of(known, built)


def queries(tokens: Tokens) -> st.SearchStrategy[bytes]:
    value = token_values(tokens)
    key = st.sampled_from(
        [b"access_token", b"access%5Ftoken", b"access%5ftoken", b"a", b"%00", b""]
    )
    pair = st.tuples(
        key,
        st.sampled_from([b"=", b""]),
        st.one_of(
            value,
            value.map(lambda v: quote_from_bytes(v).encode()),
            st.text(max_size=10).map(lambda s: s.encode("utf-8")),
            st.sampled_from([b"%", b"%ZZ", b"%00", b"%C3%A9", b"+"]),
        ),
    ).map(b"".join)
    hostile = st.lists(pair, max_size=3).flatmap(
        lambda pairs: st.sampled_from([b"&", b";", b"&&"]).map(lambda sep: sep.join(pairs))
    )
    return st.one_of(st.just(b""), st.just(b"a=1&b=%C3%A9"), hostile)


def _any(tokens: Tokens) -> str:
    return sorted(tokens.valid)[0]


def raw_requests(tokens: Tokens) -> st.SearchStrategy[RawRequest]:
    methods = st.sampled_from(
        ["GET", "POST", "OPTIONS", "HEAD", "DELETE", "PROPFIND", "get", "", "X" * 64, "GET\x00"]
    )
    return st.builds(
        RawRequest,
        method=methods,
        path=paths(),
        query=queries(tokens),
        headers=header_lists(tokens),
    )


def test_hostile_asgi_scopes(harness: Harness, tokens: Tokens) -> None:
    statuses: set[int] = set()

    # Explicit examples make the identity path certain, not left to chance.
    valid = RawRequest(headers=((b"authorization", b"Bearer " + _any(tokens).encode()),))

    @SETTINGS
    @given(raw_requests(tokens))
    @example(valid)
    def check(request: RawRequest) -> None:
        statuses.add(harness.run_asgi(request))

    check()
    # The generator reaches the interesting answers, not only one kind of refusal.
    assert {200, 400, 401} <= statuses, statuses
    assert any(identity is not None for identity in harness.app.seen)


def test_hostile_wsgi_environs(harness: Harness, tokens: Tokens) -> None:
    statuses: set[int] = set()
    broken = st.tuples(
        st.sampled_from(["HTTP_AUTHORIZATION", "HTTP_X_AMZ_ACCESS_TOKEN", "QUERY_STRING"]),
        st.sampled_from(["Bearer \u2603", "\u0100" * 3, "access_token=\u20ac"]),
    )

    valid = RawRequest(headers=((b"authorization", b"Bearer " + _any(tokens).encode()),))

    @SETTINGS
    @given(raw_requests(tokens), st.lists(broken, max_size=1).map(tuple))
    @example(valid, ())
    def check(request: RawRequest, extra: tuple[tuple[str, str], ...]) -> None:
        statuses.add(
            harness.run_wsgi(
                RawRequest(request.method, request.path, request.query, request.headers, extra)
            )
        )

    check()
    assert {200, 400, 401} <= statuses, statuses
    assert any(identity is not None for identity in harness.app.seen)


@pytest.mark.parametrize("runner", ["asgi", "wsgi"])
def test_every_real_token_kind_gets_its_answer(
    runner: str, harness: Harness, tokens: Tokens
) -> None:
    """The oracle itself: valid tokens pass, every other kind is refused."""
    run = harness.run_asgi if runner == "asgi" else harness.run_wsgi
    for token in tokens.valid:
        header = (b"authorization", b"Bearer " + token.encode())
        assert run(RawRequest(path="/uid", headers=(header,))) == 200
    for token in [*tokens.other, *tokens.dead]:
        assert run(RawRequest(path="/uid", query=b"access_token=" + token.encode())) == 401
    assert harness.app.seen.count(None) == 0
    assert {i.user_id for i in harness.app.seen} == set(tokens.valid.values())


@pytest.mark.parametrize("runner", ["asgi", "wsgi"])
def test_atheris_target_seeds(runner: str, harness: Harness) -> None:
    """The atheris target's decoder and checks, on its seed corpus (no atheris needed)."""
    from .atheris_target import SEEDS, decode

    statuses = set()
    for seed in SEEDS:
        request = decode(seed, harness.tokens)
        statuses.add(harness.run_asgi(request) if runner == "asgi" else harness.run_wsgi(request))
    assert {200, 400, 401, 403} <= statuses


def test_atheris_fuzz_run() -> None:
    """A short real atheris run, when atheris is installed."""
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.atheris_target", "-runs=300", "-max_len=4096"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
