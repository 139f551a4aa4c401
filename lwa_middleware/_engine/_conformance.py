"""What LWA answers, as one declaration, and how an answer is compared with it.

:data:`MODEL` is the emulator's model of Amazon: for each question (a
*probe*) the request to send and the answer Amazon's pages document, down to
the fields, their types and the headers. It is the only statement of those
expectations: ``lwa-middleware conformance`` asks the real LWA the questions
and compares, and ``tests/test_conformance.py`` asks the emulator the same
questions, so neither the emulator nor this model can drift from the other
unnoticed.

Every expectation names its source (a key of :data:`SOURCES`: S1 is
"Obtain Customer Profile Information"; the comments cite the numbered facts
of the project's LWA facts table, P7 being its ``400 invalid_token`` row)
and says whether the pages are ``definite`` about it or
whether it is ``assumed`` (the pages are vague, or silent, and the value
comes from captured answers or RFC 6749). A difference on an assumed fact is
reported as such; it fails the command too unless ``--definite-only`` is given.

Nothing here ever shows a value that could be a secret: fields are shown by
JSON type, and only the values the model itself names (``invalid_token``,
``en-US``…) are echoed, and only when they look like such a value.

The HTTP side lives in :mod:`._conformance_cli`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["MODEL", "Answer", "Field", "Header", "Probe", "Row", "check", "render", "verdict"]

Doc = Literal["definite", "assumed"]
JsonType = Literal["string", "integer"]
#: How a probe carries the access token. Never in the URL: not even Amazon
#: should see a token in a request line, where proxies and logs keep it.
TokenCarrier = Literal["x-amz-access-token", "bearer", "none"]
#: Which token a probe sends: the one the user gave, a made-up one, or none.
TokenKind = Literal["given", "invalid", "none"]
#: The token endpoint form a probe sends (client credentials added to both).
FormKind = Literal["bogus-code", "missing-code"]

#: A made-up token shaped like LWA's (``Atza|``, over 350 characters: S3/F1),
#: so LWA judges it as a token rather than as garbage.
INVALID_TOKEN: Final = "Atza|IwEBIConformanceProbe-not-a-real-token-" + "A" * 340
#: A made-up authorization code; no real code looks like it.
BOGUS_CODE: Final = "ConformanceProbeNotARealCode"

#: The pages the ``source`` of an expectation names; printed under the table.
#: (The facts themselves are numbered in the project's LWA facts table:
#: tokeninfo I1-I6, profile P2-P10, token endpoint T7-T9.)
SOURCES: Final[Mapping[str, str]] = {
    "S1": "Obtain Customer Profile Information, "
    "https://developer.amazon.com/docs/login-with-amazon/obtain-customer-profile.html",
    "S3": "Login with Amazon Access Tokens, "
    "https://developer.amazon.com/docs/login-with-amazon/access-token.html",
    "S5": "Customer Profile, https://developer.amazon.com/docs/login-with-amazon/customer-profile.html",
    "S8": "Make an Access Token Request from Your App (Alexa account linking), "
    "https://developer.amazon.com/en-US/docs/alexa/account-linking/your-app-to-alexa-step5.html",
    "captured": "answers captured from LWA in Amazon's SDKs and third-party code,"
    " on no Amazon page",
    "RFC 6749": "the OAuth 2.0 error names, section 5.2; Amazon's error table was not readable",
}


@dataclass(frozen=True)
class Field:
    """A JSON field of the answer body."""

    name: str
    type: JsonType
    doc: Doc
    source: str
    #: Absent is fine (the pages say "may", or it depends on the scopes).
    optional: bool = False
    #: The exact value expected (a constant such as ``invalid_token``).
    value: str | None = None


@dataclass(frozen=True)
class Header:
    """A response header; ``value`` ``None`` means present with any value.

    Values compare case-insensitively (media types and language tags are), and
    ``Content-Type`` by its media type alone (``;charset=…`` ignored).
    """

    name: str
    value: str | None
    doc: Doc
    source: str


@dataclass(frozen=True)
class Probe:
    """One question to LWA and the answer its pages document."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    carrier: TokenCarrier
    token: TokenKind
    status: int
    status_doc: Doc
    status_source: str
    fields: tuple[Field, ...]
    headers: tuple[Header, ...]
    #: Sent to the token endpoint; such probes need --client-id and --client-secret.
    form: FormKind | None = None
    #: Compare the answer's ``aud`` with the client id, when one is given (I2).
    check_aud: bool = False

    @property
    def needs_client(self) -> bool:
        return self.form is not None


def _headers(doc: Doc, source: str, json_doc: Doc, json_source: str) -> tuple[Header, ...]:
    return (
        Header("Content-Type", "application/json", json_doc, json_source),
        Header("Content-Language", "en-US", doc, source),
        Header("x-amzn-RequestId", None, doc, source),
    )


# S1 states the profile answer's headers (P3 JSON only, P4 x-amzn-RequestId,
# P5 en-US); for tokeninfo and the token endpoint no page does, so the same
# headers are assumed there (T7 documents JSON only for successful tokens).
_PROFILE_HEADERS: Final = _headers("definite", "S1", "definite", "S1")
_TOKENINFO_HEADERS: Final = _headers("assumed", "as S1", "assumed", "as S1")
_TOKEN_ERROR_HEADERS: Final = _headers("assumed", "as S1", "assumed", "as S3")


def _error_fields(
    error: str, doc: Doc, source: str, described: tuple[Doc, str]
) -> tuple[Field, ...]:
    return (
        Field("error", "string", doc, source, value=error),
        Field("error_description", "string", *described),
        # S1: error answers "may" carry a request id (P10).
        Field("request_id", "string", "assumed", "S1", optional=True),
    )


# S8 documents the token endpoint's JSON error body (T9); for the resource
# server's errors only captured answers show error_description.
_DESCRIBED_S8: Final[tuple[Doc, str]] = ("definite", "S8")
_DESCRIBED_CAPTURED: Final[tuple[Doc, str]] = ("assumed", "captured")


MODEL: Final[tuple[Probe, ...]] = (
    Probe(
        name="tokeninfo",
        method="GET",
        path="/auth/o2/tokeninfo",
        carrier="x-amz-access-token",
        token="given",
        status=200,
        status_doc="definite",
        status_source="S1",
        # No Amazon page defines these fields (I3); exp is seconds left (I4),
        # an integer in every captured answer although numbers may be strings (I5).
        fields=(
            Field("iss", "string", "assumed", "captured"),
            Field("user_id", "string", "assumed", "captured"),
            Field("aud", "string", "assumed", "captured"),
            Field("app_id", "string", "assumed", "captured"),
            Field("exp", "integer", "assumed", "captured"),
            Field("iat", "integer", "assumed", "captured"),
        ),
        headers=_TOKENINFO_HEADERS,
        check_aud=True,
    ),
    Probe(
        name="tokeninfo, invalid token",
        method="GET",
        path="/auth/o2/tokeninfo",
        carrier="x-amz-access-token",
        token="invalid",
        status=400,
        status_doc="assumed",
        status_source="captured",
        fields=_error_fields("invalid_token", "assumed", "captured", _DESCRIBED_CAPTURED),
        headers=_TOKENINFO_HEADERS,
    ),
    Probe(
        name="profile",
        method="GET",
        path="/user/profile",
        carrier="bearer",
        token="given",
        status=200,
        status_doc="definite",
        status_source="S1",
        # user_id comes with every profile scope; the rest depend on the
        # token's scopes, which the command does not know (P2).
        fields=(
            Field("user_id", "string", "definite", "S5"),
            Field("name", "string", "definite", "S5", optional=True),
            Field("email", "string", "definite", "S5", optional=True),
            Field("postal_code", "string", "definite", "S5", optional=True),
        ),
        headers=_PROFILE_HEADERS,
    ),
    Probe(
        name="profile, invalid token",
        method="GET",
        path="/user/profile",
        carrier="bearer",
        token="invalid",
        status=400,
        status_doc="definite",
        status_source="S1",
        fields=_error_fields("invalid_token", "definite", "S1", _DESCRIBED_CAPTURED),
        headers=_PROFILE_HEADERS,
    ),
    Probe(
        name="profile, no token",
        method="GET",
        path="/user/profile",
        carrier="none",
        token="none",
        status=400,
        status_doc="definite",
        status_source="S1",
        fields=_error_fields("invalid_request", "definite", "S1", _DESCRIBED_CAPTURED),
        headers=_PROFILE_HEADERS,
    ),
    Probe(
        name="token, bogus code",
        method="POST",
        path="/auth/o2/token",
        carrier="none",
        token="none",
        status=400,
        status_doc="definite",
        status_source="S8",
        # S8 says code-exchange errors are 400 with a JSON error; the name
        # for a bad code is RFC 6749's (S2's error table could not be read).
        fields=_error_fields("invalid_grant", "assumed", "RFC 6749", _DESCRIBED_S8),
        headers=_TOKEN_ERROR_HEADERS,
        form="bogus-code",
    ),
    Probe(
        name="token, no code",
        method="POST",
        path="/auth/o2/token",
        carrier="none",
        token="none",
        status=400,
        status_doc="definite",
        status_source="S8",
        fields=_error_fields("invalid_request", "assumed", "RFC 6749", _DESCRIBED_S8),
        headers=_TOKEN_ERROR_HEADERS,
        form="missing-code",
    ),
)


# -- comparing -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What came back: ``failure`` (a fixed phrase) when nothing usable did."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: object = None
    failure: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of the table: one check of one probe."""

    probe: str
    check: str
    expected: str
    actual: str
    doc: Doc
    source: str
    ok: bool
    #: LWA could not be asked (transport failure): not a difference of LWA's.
    unreachable: bool = False


# Only values shaped like the model's own constants are echoed back: an
# error code, a media type, a language tag. Anything else could be anything;
# the bound keeps out LWA's identifiers (amzn1.account.… is over 32).
_SHOWABLE: Final = re.compile(r"[A-Za-z0-9_.+/-]{1,32}")


def _shown(value: object) -> str:
    if isinstance(value, str) and _SHOWABLE.fullmatch(value):
        return value
    return "<redacted>"


def json_type(value: object) -> str:
    """The JSON type name of a decoded value (``integer`` apart from ``number``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _field_rows(probe: Probe, body: object) -> Iterable[Row]:
    obj = body if isinstance(body, dict) else None
    for f in probe.fields:
        expected = " ".join(filter(None, (f.type, f.value, "(optional)" if f.optional else "")))
        if obj is None:
            actual, ok = "no JSON object", False
        elif f.name not in obj:
            actual, ok = "missing", f.optional
        else:
            got = obj[f.name]
            actual = json_type(got)
            ok = actual == f.type and (f.value is None or got == f.value)
            if f.value is not None and isinstance(got, str):
                actual = f"{actual} {_shown(got)}"
        yield Row(probe.name, f"field {f.name}", expected, actual, f.doc, f.source, ok)


def _header_rows(probe: Probe, headers: Mapping[str, str]) -> Iterable[Row]:
    lowered = {name.lower(): value for name, value in headers.items()}
    for h in probe.headers:
        check = f"header {h.name}"
        got = lowered.get(h.name.lower())
        expected = h.value if h.value is not None else "present"
        if got is None or not got.strip():
            yield Row(probe.name, check, expected, "missing", h.doc, h.source, False)
            continue
        if h.value is None:
            yield Row(probe.name, check, expected, "present", h.doc, h.source, True)
            continue
        if h.name.lower() == "content-type":
            got = got.split(";", 1)[0]
        got = got.strip()
        ok = got.lower() == h.value.lower()
        yield Row(probe.name, check, expected, _shown(got), h.doc, h.source, ok)


def _aud_row(probe: Probe, body: object, client_ids: Sequence[str]) -> Row:
    aud = body.get("aud") if isinstance(body, dict) else None
    ok = isinstance(aud, str) and aud in client_ids
    # Neither value is shown: the point is only whether they agree.
    actual = "equal" if ok else ("missing" if aud is None else "different")
    return Row(probe.name, "aud = --client-id", "equal", actual, "definite", "S1", ok)


def check(probe: Probe, answer: Answer, client_ids: Sequence[str] = ()) -> list[Row]:
    """Compare ``answer`` with what ``probe`` expects: one row per check."""
    if answer.failure is not None or answer.status is None:
        reason = answer.failure or "no answer"
        shown = f"unreachable ({reason})"
        doc, source = probe.status_doc, probe.status_source
        return [Row(probe.name, "status", str(probe.status), shown, doc, source, False, True)]
    rows = [
        Row(
            probe.name,
            "status",
            str(probe.status),
            str(answer.status),
            probe.status_doc,
            probe.status_source,
            answer.status == probe.status,
        )
    ]
    rows += _field_rows(probe, answer.body)
    rows += _header_rows(probe, answer.headers)
    if probe.check_aud and client_ids and answer.status == probe.status:
        rows.append(_aud_row(probe, answer.body, client_ids))
    return rows


# -- reporting -----------------------------------------------------------------

_COLUMNS: Final = ("PROBE", "CHECK", "EXPECTED", "ACTUAL", "DOC", "RESULT")


def _result(row: Row) -> str:
    if row.ok:
        return "match"
    if row.unreachable:
        return "UNREACHABLE"
    return "DIFFERS" if row.doc == "definite" else "differs (assumed)"


def render(rows: Sequence[Row]) -> list[str]:
    """The table, one string per line, columns padded to fit."""
    cells = [_COLUMNS] + [
        (r.probe, r.check, r.expected, r.actual, f"{r.doc} ({r.source})", _result(r)) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]


def summary(rows: Sequence[Row]) -> str:
    """One line: how many checks matched and how many differed, by kind."""
    definite = sum(1 for r in rows if not r.ok and not r.unreachable and r.doc == "definite")
    assumed = sum(1 for r in rows if not r.ok and not r.unreachable and r.doc == "assumed")
    unreachable = sum(1 for r in rows if r.unreachable)
    matched = sum(1 for r in rows if r.ok)
    text = (
        f"{len(rows)} checks: {matched} match, {definite} differ on documented facts, "
        f"{assumed} differ on assumptions"
    )
    return text + (f", {unreachable} probes unreachable" if unreachable else "")


#: Exit codes, the CLI's own: 0 conformant, 1 a difference, 3 LWA unreachable.
EXIT_MATCH, EXIT_DIFFERS, EXIT_UNREACHABLE = 0, 1, 3


def verdict(rows: Sequence[Row], *, strict: bool) -> int:
    """The exit code: differences on assumptions count only when ``strict``."""
    if any(r.unreachable for r in rows):
        return EXIT_UNREACHABLE
    for r in rows:
        if not r.ok and (strict or r.doc == "definite"):
            return EXIT_DIFFERS
    return EXIT_MATCH
