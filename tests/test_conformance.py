"""``lwa-middleware conformance``: the emulator's model of Amazon, checked.

The command runs as a user runs it (``python -m lwa_middleware conformance``
in a subprocess) against the emulator, where every check must match, and
against small loopback fakes of LWA: a faithful one, and deviant ones whose
every deviation must be reported. No test reaches the internet.

The expectations come from Amazon's pages, named next to each probe in
:data:`lwa_middleware._conformance.MODEL`: "Obtain Customer Profile
Information" (profile: 400 invalid_token, 400 invalid_request,
x-amzn-RequestId, Content-Language en-US, JSON), "Customer Profile" (fields),
the Alexa account-linking token request page (token endpoint errors are 400
JSON); tokeninfo's shapes are assumptions taken from captured answers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from support.private import INVALID_TOKEN, MODEL

from lwa_middleware.testing import LWAEmulator

REPO = Path(__file__).resolve().parents[1]

CLIENT_ID = "amzn1.application-oa2-client.conformancetest"
CLIENT_SECRET = "amzn1.oa2-cs.v1." + "5ec7e7" * 10
# Shaped like a real token (Atza|, over 350 characters), and distinctive.
TOKEN = "Atza|IwEBIGoodTokenForTheFake-" + "x7" * 180
# Valid, but granted no profile scope (an Alexa scope, say).
NARROW_TOKEN = "Atza|IwEBINarrowTokenForTheFake-" + "n4" * 180
USER_ID = "amzn1.account.SECRETUSERIDOFTHEFAKE0001"
EMAIL = "private.person@example.com"

PROBES = (
    "tokeninfo",
    "tokeninfo, invalid token",
    "profile",
    "profile, invalid token",
    "profile, no token",
    "token, bogus code",
    "token, no code",
)


# -- running the command -----------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str

    def rows(self) -> dict[tuple[str, str], dict[str, str]]:
        """The table, keyed by (probe, check)."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("PROBE "))
        table: dict[tuple[str, str], dict[str, str]] = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            probe, check, expected, actual, doc, result = re.split(r"\s{2,}", line)
            table[(probe, check)] = {
                "expected": expected,
                "actual": actual,
                "doc": doc,
                "result": result,
            }
        return table

    def differences(self) -> dict[tuple[str, str], str]:
        return {key: row["result"] for key, row in self.rows().items() if row["result"] != "match"}


def conformance(*args: str, stdin: str = "", **env: str) -> Run:
    """``python -m lwa_middleware conformance ARGS`` from this checkout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LWA_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), clean.get("PYTHONPATH")]))
    clean.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "lwa_middleware", "conformance", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def assert_hidden(run: Run, *values: str) -> None:
    for value in values:
        assert value not in run.out
        assert value not in run.err


# -- a fake LWA ----------------------------------------------------------------------


@dataclass
class Deviations:
    """How the fake strays from Amazon's documented answers (none by default)."""

    profile_error_status: int = 400
    content_language: bool = True
    content_language_value: str = "en-US"
    content_type: str = "application/json;charset=UTF-8"
    request_id_header: bool = True
    exp_as_string: bool = False
    aud: str = CLIENT_ID
    bogus_code_error: str = "invalid_grant"


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: str


@dataclass
class FakeLWA:
    """A loopback LWA answering as Amazon's pages say, bent by ``deviations``."""

    deviations: Deviations = field(default_factory=Deviations)
    seen: list[Seen] = field(default_factory=list)
    base_url: str = ""


def _answer(fake: FakeLWA, method: str, path: str, headers: Any, body: str) -> tuple[int, Any]:
    bad_token = {"error": "invalid_token", "error_description": "The token is invalid."}
    missing = {"error": "invalid_request", "error_description": "Missing access_token."}
    if path == "/auth/o2/tokeninfo":
        if headers.get("x-amz-access-token") not in (TOKEN, NARROW_TOKEN):
            return 400, bad_token
        exp: int | str = 3597
        if fake.deviations.exp_as_string:
            exp = "3597"
        info = {"iss": "https://www.amazon.com", "user_id": USER_ID, "aud": fake.deviations.aud}
        return 200, {**info, "app_id": "amzn1.application.x", "exp": exp, "iat": 1700000000}
    if path == "/user/profile":
        given = headers.get("authorization")
        if given is None:
            return 400, missing
        if given == "Bearer " + NARROW_TOKEN:
            # S1: 401 insufficient_scope.
            return 401, {"error": "insufficient_scope", "error_description": "Not granted."}
        if given != "Bearer " + TOKEN:
            return fake.deviations.profile_error_status, bad_token
        return 200, {"user_id": USER_ID, "name": "Private Person", "email": EMAIL}
    form = dict(parse_qsl(body))
    if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
        return 401, {"error": "invalid_client", "error_description": "Who are you?"}
    if "code" not in form:
        return 400, {"error": "invalid_request", "error_description": "Missing code."}
    return 400, {"error": fake.deviations.bogus_code_error, "error_description": "Bad code."}


def _handler(fake: FakeLWA) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.seen.append(Seen(self.command, self.path, headers, body))
            status, payload = _answer(fake, self.command, self.path, headers, body)
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", fake.deviations.content_type)
            self.send_header("Content-Length", str(len(raw)))
            if fake.deviations.content_language:
                self.send_header("Content-Language", fake.deviations.content_language_value)
            if fake.deviations.request_id_header:
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(raw)

        do_POST = do_GET

    return Handler


@pytest.fixture
def fake_lwa() -> Iterator[FakeLWA]:
    fake = FakeLWA()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def against(fake: FakeLWA, *extra: str) -> Run:
    return conformance(
        "--client-id",
        CLIENT_ID,
        "--api-base-url",
        fake.base_url,
        *extra,
        LWA_ACCESS_TOKEN=TOKEN,
        LWA_CLIENT_SECRET=CLIENT_SECRET,
    )


# -- the emulator --------------------------------------------------------------------


def test_the_emulator_matches_the_model_on_every_probe(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    run = conformance(
        "--client-id",
        lwa_emulator.client_id,
        "--api-base-url",
        lwa_emulator.base_url,
        "--strict",
        LWA_ACCESS_TOKEN=token,
        LWA_CLIENT_SECRET=lwa_emulator.client_secret,
    )
    assert_hidden(run, token, lwa_emulator.client_secret)
    assert {probe for probe, _ in run.rows()} == {probe.name for probe in MODEL} == set(PROBES)
    assert run.differences() == {}, run.out
    assert run.code == 0, run.out + run.err


# -- fakes ---------------------------------------------------------------------------


def test_a_fake_answering_as_documented_matches_everything(fake_lwa: FakeLWA) -> None:
    run = against(fake_lwa, "--strict")
    assert run.code == 0, run.out + run.err
    rows = run.rows()
    assert {probe for probe, _ in rows} == set(PROBES)
    assert run.differences() == {}
    assert rows[("profile, invalid token", "status")]["actual"] == "400"
    assert rows[("profile, invalid token", "field error")]["actual"] == "string invalid_token"
    assert rows[("tokeninfo", "aud = --client-id")]["result"] == "match"
    assert "0 differ on documented facts, 0 differ on assumptions" in run.out


def test_every_deviation_of_a_fake_is_reported(fake_lwa: FakeLWA) -> None:
    fake_lwa.deviations = Deviations(
        profile_error_status=401,
        content_language=False,
        request_id_header=False,
        exp_as_string=True,
        bogus_code_error="unauthorized_client",
    )
    run = against(fake_lwa)
    assert run.code == 1, run.out + run.err
    # S1 states the profile's headers; for tokeninfo and the token endpoint
    # they are assumptions, as are tokeninfo's field types.
    profile = ("profile", "profile, invalid token", "profile, no token")
    expected = {(p, "header Content-Language"): "DIFFERS" for p in profile}
    expected |= {(p, "header x-amzn-RequestId"): "DIFFERS" for p in profile}
    others = ("tokeninfo", "tokeninfo, invalid token", "token, bogus code", "token, no code")
    expected |= {(p, "header Content-Language"): "differs (assumed)" for p in others}
    expected |= {(p, "header x-amzn-RequestId"): "differs (assumed)" for p in others}
    expected[("tokeninfo", "field exp")] = "differs (assumed)"
    expected[("profile, invalid token", "status")] = "DIFFERS"
    expected[("token, bogus code", "field error")] = "differs (assumed)"
    assert run.differences() == expected
    rows = run.rows()
    assert rows[("profile, invalid token", "status")]["actual"] == "401"
    assert rows[("tokeninfo", "field exp")]["actual"] == "string"
    assert rows[("profile", "header Content-Language")]["actual"] == "missing"
    assert rows[("profile", "header x-amzn-RequestId")]["actual"] == "missing"
    assert rows[("token, bogus code", "field error")]["actual"] == "string unauthorized_client"
    assert "7 differ on documented facts, 10 differ on assumptions" in run.out
    assert_hidden(run, TOKEN, CLIENT_SECRET, USER_ID, EMAIL)


def test_wrong_header_values_are_differences(fake_lwa: FakeLWA) -> None:
    # Present but wrong: S1 names the values (JSON, en-US), not just the headers.
    fake_lwa.deviations = Deviations(
        content_type="text/html;charset=UTF-8", content_language_value="de-DE"
    )
    run = against(fake_lwa)
    assert run.code == 1, run.out + run.err
    profile = ("profile", "profile, invalid token", "profile, no token")
    others = ("tokeninfo", "tokeninfo, invalid token", "token, bogus code", "token, no code")
    expected: dict[tuple[str, str], str] = {}
    for name in ("header Content-Type", "header Content-Language"):
        expected |= {(p, name): "DIFFERS" for p in profile}
        expected |= {(p, name): "differs (assumed)" for p in others}
    assert run.differences() == expected
    rows = run.rows()
    assert rows[("profile", "header Content-Type")]["actual"] == "text/html"
    assert rows[("profile", "header Content-Language")]["actual"] == "de-DE"
    assert_hidden(run, TOKEN, CLIENT_SECRET, USER_ID, EMAIL)


def test_a_value_lwa_sends_back_is_shown_only_if_shaped_like_a_constant(
    fake_lwa: FakeLWA,
) -> None:
    # An answer carrying personal data (or anything) where the model expects
    # an error code: the difference is reported, the value is not printed.
    fake_lwa.deviations = Deviations(bogus_code_error=EMAIL)
    run = against(fake_lwa)
    assert run.differences() == {("token, bogus code", "field error"): "differs (assumed)"}
    assert run.rows()[("token, bogus code", "field error")]["actual"] == "string <redacted>"
    assert_hidden(run, EMAIL, TOKEN, CLIENT_SECRET)


def test_a_difference_on_an_assumption_fails_unless_definite_only(fake_lwa: FakeLWA) -> None:
    # The issue: the command "exits non-zero on a difference". An assumed fact
    # that the real LWA contradicts is a place where the emulator is wrong.
    fake_lwa.deviations = Deviations(exp_as_string=True)
    default = against(fake_lwa)
    assert default.code == 1, default.out + default.err
    assert default.differences() == {("tokeninfo", "field exp"): "differs (assumed)"}
    assert against(fake_lwa, "--strict").code == 1
    lenient = against(fake_lwa, "--definite-only")
    assert lenient.code == 0, lenient.out + lenient.err
    assert lenient.differences() == default.differences()


def test_definite_only_still_fails_on_a_definite_difference(fake_lwa: FakeLWA) -> None:
    fake_lwa.deviations = Deviations(profile_error_status=401)
    run = against(fake_lwa, "--definite-only")
    assert run.code == 1, run.out + run.err
    assert run.differences()[("profile, invalid token", "status")] == "DIFFERS"


def test_strict_and_definite_only_cannot_be_combined(fake_lwa: FakeLWA) -> None:
    run = against(fake_lwa, "--strict", "--definite-only")
    assert run.code == 2
    assert "not allowed with argument" in run.err


def test_an_aud_of_another_client_is_a_difference(fake_lwa: FakeLWA) -> None:
    other = "amzn1.application-oa2-client.someoneelse"
    fake_lwa.deviations = Deviations(aud=other)
    run = against(fake_lwa)
    assert run.code == 1
    assert run.differences() == {("tokeninfo", "aud = --client-id"): "DIFFERS"}
    assert run.rows()[("tokeninfo", "aud = --client-id")]["actual"] == "different"
    assert_hidden(run, other)


# -- secrets -------------------------------------------------------------------------


def test_the_token_travels_in_headers_only_and_the_secret_in_the_body(
    fake_lwa: FakeLWA,
) -> None:
    run = against(fake_lwa)
    assert run.code == 0, run.out + run.err
    assert_hidden(run, TOKEN, CLIENT_SECRET, USER_ID, EMAIL, "Private Person")
    by_path: dict[str, list[Seen]] = {}
    for seen in fake_lwa.seen:
        assert TOKEN not in seen.target
        assert CLIENT_SECRET not in seen.target
        assert "?" not in seen.target
        by_path.setdefault(seen.target, []).append(seen)
    # The probes run in MODEL's order: the given token, then a made-up one.
    tokeninfo = [s.headers.get("x-amz-access-token") for s in by_path["/auth/o2/tokeninfo"]]
    assert tokeninfo == [TOKEN, INVALID_TOKEN]
    profile = [s.headers.get("authorization") for s in by_path["/user/profile"]]
    assert profile == ["Bearer " + TOKEN, "Bearer " + INVALID_TOKEN, None]
    assert not any("x-amz-access-token" in s.headers for s in by_path["/user/profile"])
    posts = by_path["/auth/o2/token"]
    assert len(posts) == 2
    assert all(s.method == "POST" and dict(parse_qsl(s.body)).get("client_secret") for s in posts)
    assert {"code" in dict(parse_qsl(s.body)) for s in posts} == {True, False}


def test_the_token_from_stdin_or_the_command_line_is_never_printed(fake_lwa: FakeLWA) -> None:
    base = ("--client-id", CLIENT_ID, "--api-base-url", fake_lwa.base_url)
    piped = conformance("--token", "-", *base, stdin=TOKEN + "\n")
    assert piped.code == 0, piped.out + piped.err
    assert_hidden(piped, TOKEN)
    typed = conformance("--token", TOKEN, *base, "--client-secret", CLIENT_SECRET)
    assert typed.code == 0, typed.out + typed.err
    assert_hidden(typed, TOKEN, CLIENT_SECRET)
    assert ("token, no code", "status") in typed.rows()


def test_without_a_client_secret_the_token_endpoint_is_not_probed(fake_lwa: FakeLWA) -> None:
    run = conformance(
        "--api-base-url", fake_lwa.base_url, "--client-id", CLIENT_ID, LWA_ACCESS_TOKEN=TOKEN
    )
    assert run.code == 0, run.out + run.err
    assert {probe for probe, _ in run.rows()} == set(PROBES[:5])
    assert "Token endpoint not probed" in run.out
    assert not any(seen.target == "/auth/o2/token" for seen in fake_lwa.seen)


def test_a_refused_token_is_explained(fake_lwa: FakeLWA) -> None:
    expired = "Atza|IwEBIAnExpiredToken-" + "y" * 360
    run = conformance("--api-base-url", fake_lwa.base_url, LWA_ACCESS_TOKEN=expired)
    assert run.code == 1
    assert run.rows()[("tokeninfo", "status")]["actual"] == "400"
    assert "LWA refused the token given" in run.out
    assert "aud not compared" in run.out
    assert_hidden(run, expired)


def test_a_token_without_a_profile_scope_is_explained(fake_lwa: FakeLWA) -> None:
    run = conformance("--api-base-url", fake_lwa.base_url, LWA_ACCESS_TOKEN=NARROW_TOKEN)
    assert run.code == 1
    assert run.rows()[("profile", "status")]["actual"] == "401"
    assert run.rows()[("tokeninfo", "status")]["result"] == "match"
    assert "needs a token granted profile" in run.out
    assert "LWA refused the token given" not in run.out
    assert_hidden(run, NARROW_TOKEN)


# -- usage and reachability ----------------------------------------------------------


def test_plain_http_off_loopback_is_refused_before_anything_is_sent() -> None:
    run = conformance("--api-base-url", "http://lwa.example.com", LWA_ACCESS_TOKEN=TOKEN)
    assert run.code == 2
    assert "only allowed on loopback" in run.err
    assert run.out == ""
    assert_hidden(run, TOKEN)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "no token given"),
        (("--client-secret", CLIENT_SECRET), {"LWA_ACCESS_TOKEN": TOKEN}, "exactly one"),
        (("--client-id", TOKEN), {"LWA_ACCESS_TOKEN": TOKEN}, "looks like an access token"),
        (("--timeout", "0"), {"LWA_ACCESS_TOKEN": TOKEN}, "--timeout"),
        (("--region", "eu", "--api-base-url", "https://a.example"), {}, "not allowed with"),
        ((), {"LWA_ACCESS_TOKEN": "two words"}, "cannot be an LWA access token"),
    ],
)
def test_usage_errors_exit_2_without_echoing_secrets(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    run = conformance(*args, **env)
    assert run.code == 2, run.out + run.err
    assert message in run.err
    assert_hidden(run, TOKEN, CLIENT_SECRET)


def test_an_unreachable_lwa_exits_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = conformance("--api-base-url", f"http://127.0.0.1:{port}", LWA_ACCESS_TOKEN=TOKEN)
    assert run.code == 3, run.out + run.err
    rows = run.rows()
    assert {row["result"] for row in rows.values()} == {"UNREACHABLE"}
    assert rows[("tokeninfo", "status")]["actual"] == "unreachable (connection failed)"
