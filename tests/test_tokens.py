"""Token extraction (``lwa_middleware.tokens``): every source, every malformation.

The contract: a token comes as ``Authorization: Bearer`` (any case), as
``x-amz-access-token`` or as ``?access_token=``; two different tokens are a
malformed request (400); a value that cannot be an LWA token (over 2048 bytes,
not visible ASCII) is refused (401) without asking LWA; ``Basic`` is not a token.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.private import (
    MAX_TOKEN_BYTES,
    extract_token,
    looks_like_lwa_token,
    may_carry_token,
    strip_query,
)

from lwa_middleware import InvalidRequest, InvalidToken

TOKEN = "Atza|IwEBIExample-token_value.with~chars"

VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
visible_tokens = st.text(alphabet=VISIBLE, min_size=1, max_size=MAX_TOKEN_BYTES)


def _bearer(token: str, scheme: str = "Bearer") -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"{scheme} {token}".encode())]


def _amz(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-amz-access-token", token.encode())]


def _query(token: str) -> bytes:
    return b"access_token=" + quote(token, safe="").encode()


# -- each source ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert extract_token(_bearer(TOKEN, scheme)) == TOKEN


def test_bearer_tolerates_surrounding_whitespace() -> None:
    assert extract_token([(b"authorization", b"  Bearer   " + TOKEN.encode() + b" ")]) == TOKEN


def test_x_amz_access_token_header() -> None:
    assert extract_token(_amz(TOKEN)) == TOKEN


def test_query_parameter() -> None:
    assert extract_token([], b"access_token=" + TOKEN.encode()) == TOKEN


def test_query_parameter_percent_encoded_pipe() -> None:
    assert extract_token([], b"a=1&access_token=Atza%7Cabc&b=2") == "Atza|abc"
    assert extract_token([], b"access_token=Atza%7cabc") == "Atza|abc"


@pytest.mark.parametrize("key", [b"access%5Ftoken", b"access%5ftoken", b"%61ccess_token"])
def test_query_parameter_with_percent_encoded_key(key: bytes) -> None:
    assert extract_token([], b"x=1&" + key + b"=Atza%7Cabc") == "Atza|abc"


def test_no_token_anywhere() -> None:
    assert extract_token([], b"") is None
    assert extract_token([(b"accept", b"*/*"), (b"cookie", b"access_token=x")], b"a=1&b=2") is None
    # Only the exact parameter name counts.
    assert extract_token([], b"access_tokens=x&my_access_token=y&ACCESS_TOKEN=z") is None


def test_unrelated_headers_are_ignored() -> None:
    headers = [(b"x-access-token", b"a b c"), (b"proxy-authorization", b"Bearer x y")]
    assert extract_token(headers) is None


@pytest.mark.parametrize(
    "value", [b"Basic dXNlcjpwYXNz", b"Digest username=x", b"Negotiate abc", b"Bearerish abc"]
)
def test_non_bearer_authorization_is_not_a_token(value: bytes) -> None:
    assert extract_token([(b"authorization", value)]) is None


def test_basic_authorization_with_a_real_token_elsewhere() -> None:
    headers = [(b"authorization", b"Basic dXNlcjpwYXNz"), *_amz(TOKEN)]
    assert extract_token(headers) == TOKEN


# -- malformed -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"Bearer", b"Bearer ", b"bearer   ", b"Bearer a b", b"Bearer a,b"]
)
def test_malformed_bearer_is_invalid_request(value: bytes) -> None:
    with pytest.raises(InvalidRequest):
        extract_token([(b"authorization", value)])


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (_bearer("tok-one") + _amz("tok-two"), b""),
        (_bearer("tok-one"), b"access_token=tok-two"),
        (_amz("tok-one"), b"access_token=tok-two"),
        (_bearer("tok-one") + _bearer("tok-two"), b""),
        (_amz("tok-one") + _amz("tok-two"), b""),
        ([], b"access_token=tok-one&access_token=tok-two"),
    ],
    ids=["bearer+amz", "bearer+query", "amz+query", "bearer*2", "amz*2", "query*2"],
)
def test_two_different_tokens_are_invalid_request(
    headers: list[tuple[bytes, bytes]], query: bytes
) -> None:
    with pytest.raises(InvalidRequest):
        extract_token(headers, query)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (_bearer(TOKEN) + _amz(TOKEN), b""),
        (_bearer(TOKEN), _query(TOKEN)),
        (_bearer(TOKEN) + _bearer(TOKEN), b""),
        ([], _query(TOKEN) + b"&" + _query(TOKEN)),
        (_bearer(TOKEN) + _amz(TOKEN), _query(TOKEN)),
    ],
)
def test_same_token_twice_is_fine(headers: list[tuple[bytes, bytes]], query: bytes) -> None:
    assert extract_token(headers, query) == TOKEN


def test_token_of_exactly_max_length_is_accepted() -> None:
    token = "A" * MAX_TOKEN_BYTES
    assert MAX_TOKEN_BYTES == 2048
    assert extract_token(_bearer(token)) == token
    assert extract_token(_amz(token)) == token
    assert extract_token([], _query(token)) == token


@pytest.mark.parametrize("source", ["bearer", "amz", "query"])
def test_overlong_token_is_invalid_token(source: str) -> None:
    token = "A" * (MAX_TOKEN_BYTES + 1)
    headers, query = {
        "bearer": (_bearer(token), b""),
        "amz": (_amz(token), b""),
        "query": ([], _query(token)),
    }[source]
    with pytest.raises(InvalidToken):
        extract_token(headers, query)


@pytest.mark.parametrize(
    "raw", [b"Atza|\x00abc", b"Atza|\x7fabc", b"Atza|\xc3\xa9", b"Atza|\x80", b"\x1b[31m"]
)
def test_non_visible_ascii_is_invalid_token(raw: bytes) -> None:
    with pytest.raises(InvalidToken):
        extract_token([(b"x-amz-access-token", raw)])
    with pytest.raises(InvalidToken):
        extract_token([(b"authorization", b"Bearer " + raw)])
    with pytest.raises(InvalidToken):
        extract_token([], b"access_token=" + quote(raw, safe="").encode())


@pytest.mark.parametrize("query", [b"access_token=a%20b", b"access_token=a+b", b"access_token=%FF"])
def test_query_values_decoding_to_invisible_bytes_are_invalid_token(query: bytes) -> None:
    with pytest.raises(InvalidToken):
        extract_token([], query)


def test_empty_sources_are_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        extract_token([(b"x-amz-access-token", b"")])
    with pytest.raises(InvalidRequest):
        extract_token([], b"access_token=")


def test_errors_never_quote_the_value() -> None:
    secret = "Atza|" + "S" * 3000
    with pytest.raises(InvalidToken) as excinfo:
        extract_token(_bearer(secret))
    assert "SSSS" not in str(excinfo.value)
    assert "SSSS" not in repr(excinfo.value)
    with pytest.raises(InvalidRequest) as excinfo2:
        extract_token(_bearer("Atza|first") + _amz("Atza|second"))
    assert "first" not in str(excinfo2.value)
    assert "second" not in str(excinfo2.value)


# -- looks_like_lwa_token ------------------------------------------------------


def test_looks_like_lwa_token() -> None:
    assert looks_like_lwa_token("Atza|" + "x" * 400)
    assert not looks_like_lwa_token("Atza|short")
    assert not looks_like_lwa_token("x" * 400)
    assert not looks_like_lwa_token("atza|" + "x" * 400)


# -- strip_query ---------------------------------------------------------------


def test_strip_query_examples() -> None:
    assert strip_query(b"") == b""
    assert strip_query(b"a=1&b=2") == b"a=1&b=2"
    assert strip_query(b"access_token=x") == b""
    assert strip_query(b"a=1&access_token=x&b=%7C+2") == b"a=1&b=%7C+2"
    assert strip_query(b"access%5Ftoken=x&a=%zz") == b"a=%zz"
    assert strip_query(b"a=1&access_token&b") == b"a=1&b"
    assert strip_query(b"my_access_token=1&access_tokens=2") == b"my_access_token=1&access_tokens=2"


# -- properties ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(token=visible_tokens, scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]))
def test_visible_tokens_round_trip_through_every_source(token: str, scheme: str) -> None:
    if "," in token:
        # A comma separates auth-params (RFC 7235): not a token68 in a header.
        with pytest.raises(InvalidRequest):
            extract_token(_bearer(token, scheme))
    else:
        assert extract_token(_bearer(token, scheme)) == token
    assert extract_token(_amz(token)) == token
    assert extract_token([], _query(token)) == token
    assert extract_token([], b"x=1&" + _query(token) + b"&y=2") == token
    # The same token by every method at once is still one token.
    if "," not in token:
        assert extract_token(_bearer(token) + _amz(token), _query(token)) == token


_bad_byte = st.integers(0, 255).filter(lambda b: not 0x21 <= b <= 0x7E)


@st.composite
def _with_bad_byte(draw: st.DrawFn) -> bytes:
    head = draw(st.binary(max_size=40))
    tail = draw(st.binary(max_size=40))
    return head + bytes([draw(_bad_byte)]) + tail


def _is_token_shaped(value: str) -> bool:
    return re.fullmatch(r"[\x21-\x7e]{1,2048}", value) is not None


@settings(max_examples=200, deadline=None)
@given(raw=_with_bad_byte())
def test_a_value_with_a_non_visible_byte_never_comes_back(raw: bytes) -> None:
    # HTTP strips optional whitespace around a field value; inside, any byte
    # outside 0x21-0x7E must make the value unusable.
    inner = raw.strip(b" \t")
    if inner and any(not 0x21 <= b <= 0x7E for b in inner):
        with pytest.raises((InvalidToken, InvalidRequest)):
            extract_token([(b"x-amz-access-token", raw)])
        with pytest.raises((InvalidToken, InvalidRequest)):
            extract_token([], b"access_token=" + quote(inner, safe="").encode())
    # Whatever happens, nothing outside visible ASCII is ever handed out.
    for headers, query in (
        ([(b"authorization", b"Bearer " + raw)], b""),
        ([(b"x-amz-access-token", raw)], b""),
        ([], b"access_token=" + quote(raw, safe="").encode()),
    ):
        try:
            found = extract_token(headers, query)
        except (InvalidToken, InvalidRequest):
            continue
        assert found is None or _is_token_shaped(found)


_header_names = st.sampled_from(
    [b"authorization", b"x-amz-access-token", b"accept", b"cookie", b"x-other"]
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names, st.binary(max_size=3000)), max_size=4),
    query=st.binary(max_size=300),
)
def test_extraction_only_ever_raises_auth_errors(
    headers: list[tuple[bytes, bytes]], query: bytes
) -> None:
    try:
        found = extract_token(headers, query)
    except (InvalidRequest, InvalidToken):
        return
    assert found is None or _is_token_shaped(found)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from([b"Bearer ", b"bearer\t", b"Bearer  ", b"BEARER ", b""]),
    tail=st.binary(max_size=60),
    query=st.binary(max_size=60).map(lambda b: b"access_token=" + b),
)
def test_extraction_of_bearer_like_and_query_like_bytes(
    prefix: bytes, tail: bytes, query: bytes
) -> None:
    try:
        found = extract_token([(b"authorization", prefix + tail)], query)
    except (InvalidRequest, InvalidToken):
        return
    assert found is None or _is_token_shaped(found)


_part_bytes = st.binary(max_size=12).map(lambda b: b.replace(b"&", b""))
_token_keys = st.sampled_from([b"access_token", b"access%5Ftoken", b"access%5ftoken"])


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            _part_bytes,
            st.tuples(_token_keys, _part_bytes).map(lambda kv: kv[0] + b"=" + kv[1]),
        ),
        max_size=8,
    )
)
def test_strip_query_keeps_every_other_parameter_byte_for_byte(parts: list[bytes]) -> None:
    query = b"&".join(parts)

    def is_token_param(part: bytes) -> bool:
        pairs = parse_qsl(part.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        return bool(pairs) and pairs[0][0] == "access_token"

    expected = b"&".join(p for p in parts if not is_token_param(p))
    stripped = strip_query(query)
    assert stripped == expected
    # And nothing that the extractor would read as a token survives.
    assert extract_token_keys(stripped) == []


def extract_token_keys(query: bytes) -> list[str]:
    return [
        k
        for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        if k == "access_token"
    ]


# -- token_sources -------------------------------------------------------------

_TOKEN = "Atza|" + "t" * 400


def test_a_query_token_is_refused_when_the_query_source_is_off() -> None:
    with pytest.raises(InvalidRequest, match="query string"):
        extract_token([], b"access_token=" + _TOKEN.encode(), frozenset({"header"}))
    with pytest.raises(InvalidRequest, match="query string"):
        extract_token([], b"access%5Ftoken=" + _TOKEN.encode(), frozenset({"header"}))
    headers = [(b"authorization", b"Bearer " + _TOKEN.encode())]
    assert extract_token(headers, b"page=2", frozenset({"header"})) == _TOKEN


def test_a_header_token_is_refused_when_the_header_source_is_off() -> None:
    for name, value in ((b"authorization", b"Bearer "), (b"x-amz-access-token", b"")):
        with pytest.raises(InvalidRequest, match="in headers"):
            extract_token([(name, value + _TOKEN.encode())], b"", frozenset({"query"}))
    # A non-Bearer Authorization is not a token, so it is no reason to refuse.
    assert extract_token([(b"authorization", b"Basic eDp5")], b"", frozenset({"query"})) is None
    assert extract_token([], b"access_token=" + _TOKEN.encode(), frozenset({"query"})) == _TOKEN


_QUERY_PIECES = st.sampled_from(
    [
        b"access_token",
        b"ACCESS_TOKEN",
        b"access%5Ftoken",
        b"%61ccess_token",
        b"access+token",
        b"=",
        b"&",
        b"&&",
        b";",
        b"?",
        b"+",
        b"%",
        b"%5f",
        b"%2",
        b"a",
        b"_",
        b"\xff",
        b" ",
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_QUERY_PIECES, max_size=10).map(b"".join))
def test_the_fast_query_check_never_misses_a_query_token(query: bytes) -> None:
    # The hot paths skip extraction when may_carry_token says no: a token the
    # slow path would see must never get past it (token_sources, two tokens).
    if not may_carry_token(query):
        assert extract_token([], query) is None
        assert strip_query(query) == query
    if any(key == "access_token" for key, _ in parse_qsl(query.decode("latin-1"), True)):
        assert may_carry_token(query)
