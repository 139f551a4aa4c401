"""The ``lwa-middleware`` command line.

``inspect`` runs in-process against the emulator fixture; ``emulator`` and
``demo`` run as real subprocesses (``python -m lwa_middleware ...``), are
talked to over HTTP at the URL they print, and are stopped with a signal.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx2
import pytest
from support.callers import asgi_call, asgi_scope
from support.private import main

import lwa_middleware
from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import BUILTIN_CUSTOMERS, Fault, LWAEmulator

REPO = Path(__file__).resolve().parents[1]


def inspect(lwa: LWAEmulator, token: str, *extra: str) -> list[str]:
    return ["inspect", token, "--client-id", lwa.client_id, "--api-base-url", lwa.base_url, *extra]


def _consent_form(http: httpx2.Client, base_url: str, query: dict[str, str]) -> dict[str, str]:
    """What the emulator's consent page posts when the customer allows (customer 0)."""
    page = http.get(base_url + "/ap/oa", params=query)
    assert page.status_code == 200, page.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return {**hidden, "customer": "0", "scope": query["scope"], "action": "allow"}


def run(
    capsys: pytest.CaptureFixture[str], argv: list[str], secret: str | None = None
) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    if secret is not None:
        assert secret not in out
        assert secret not in err
    return code, out, err


# -- inspect ---------------------------------------------------------------------


def test_inspect_valid_token(lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    ada = BUILTIN_CUSTOMERS[0]
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"], customer=ada)
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 0
    result = json.loads(out)
    assert result["valid"] is True
    assert result["client_id"] == lwa_emulator.client_id
    assert 3500 < result["expires_in"] <= 3600
    identity = result["identity"]
    assert identity["user_id"] == ada.user_id
    assert identity["name"] == ada.name
    assert identity["email"] == ada.email
    assert identity["postal_code"] == ada.postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


def test_inspect_reads_the_token_from_stdin(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile:user_id"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    code, out, _ = run(capsys, inspect(lwa_emulator, "-"), secret=token)
    assert code == 0
    result = json.loads(out)
    assert result["identity"]["scopes"] == ["profile:user_id"]
    assert result["identity"]["name"] is None


def test_inspect_accepts_a_pasted_bearer_header(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = lwa_emulator.issue_token()
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Bearer {token}\n"))
    code, out, _ = run(capsys, inspect(lwa_emulator, "-"), secret=token)
    assert code == 0
    assert json.loads(out)["valid"] is True


def test_inspect_token_of_another_client(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.someone-else")
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 1
    result = json.loads(out)
    assert result["valid"] is False
    assert result["error"] == "invalid_token"
    assert "another client" in result["reason"]
    # The aud check comes before any identity is trusted.
    assert "identity" not in result


def test_inspect_several_client_ids(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "amzn1.application-oa2-client.other"
    token = lwa_emulator.issue_token(aud=other)
    argv = inspect(lwa_emulator, token, "--client-id", other)
    code, out, _ = run(capsys, argv, secret=token)
    assert code == 0
    assert json.loads(out)["client_id"] == other


@pytest.mark.parametrize("how", ["revoked", "expired", "unknown"])
def test_inspect_rejected_token(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    if how == "unknown":
        token = "Atza|" + "Q" * 400
    else:
        token = lwa_emulator.issue_token(expires_in=0 if how == "expired" else 3600)
        if how == "revoked":
            lwa_emulator.revoke(token)
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 1
    result = json.loads(out)
    # LWA's answer, with its x-amzn-RequestId for Amazon's support (issue 21).
    lwa = result.pop("lwa")
    assert result == {
        "valid": False,
        "error": "invalid_token",
        "reason": "The access token is invalid, expired or revoked.",
        "api_base_url": lwa_emulator.base_url,
    }
    assert lwa["endpoint"] == "tokeninfo"
    assert lwa["status"] == 400
    assert re.fullmatch(r"[0-9a-f-]{36}", lwa["request_id"])
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_inspect_impossible_token_never_reaches_lwa(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "Atza|" + "x" * 3000
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 1
    result = json.loads(out)
    assert result["error"] == "invalid_token"
    assert "longer than" in result["reason"]
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_inspect_lwa_down(lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.DOWN)
    started = time.monotonic()
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert time.monotonic() - started < 5  # refused at once, not a hang
    assert code == 3
    result = json.loads(out)
    assert result["valid"] is False
    assert result["error"] == "temporarily_unavailable"
    assert "unavailable" in result["reason"]


def test_inspect_lwa_answering_503(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", retry_after=7)
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 3
    result = json.loads(out)
    assert result["error"] == "temporarily_unavailable"
    assert "HTTP 503" in result["reason"]
    assert result["retry_after"] == 7


def test_inspect_times_out(lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.HANG)
    started = time.monotonic()
    code, out, _ = run(capsys, inspect(lwa_emulator, token, "--timeout", "0.5"), secret=token)
    assert time.monotonic() - started < 5
    assert code == 3
    assert "timed out" in json.loads(out)["reason"]


def test_inspect_answers_as_the_middleware_does_when_lwa_is_down(
    lwa_emulator: LWAEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """inspect goes through the middleware's resolver, so it cannot drift from
    it: LWA down, it reports the very Retry-After the middleware answers."""
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.DOWN)
    code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 3
    middleware = LWAMiddleware(
        _ok_app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )

    async def ask() -> list[dict[str, Any]]:
        try:
            scope = asgi_scope("/", {"Authorization": f"Bearer {token}"})
            return await asgi_call(middleware, scope)
        finally:
            await middleware.aclose()

    start = asyncio.run(ask())[0]
    assert start["status"] == 503
    retry_after = dict(start["headers"])[b"retry-after"].decode()
    assert json.loads(out)["retry_after"] == int(retry_after)


def test_inspect_asks_lwa_not_the_apps_shared_cache(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The environment's LWA_REDIS_URL is the app's: inspect neither reads nor writes it."""
    monkeypatch.setenv("LWA_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    token = lwa_emulator.issue_token()
    with caplog.at_level(logging.DEBUG, logger="lwa_middleware"):
        code, out, _ = run(capsys, inspect(lwa_emulator, token), secret=token)
    assert code == 0
    assert json.loads(out)["valid"] is True
    assert lwa_emulator.calls["tokeninfo"] == 1
    touched = [r.getMessage() for r in caplog.records if "shared_cache" in r.name]
    assert not touched  # no Redis connection tried, no shared-cache warning


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("LWA is down: the app is never called")


CLIENT_X = ["inspect", "{token}", "--client-id", "x"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["inspect", "{token}"], id="no-client-id"),
        pytest.param(["inspect", "{token}", "--client-id", "x", "--region", "mars"], id="region"),
        pytest.param(
            [*CLIENT_X, "--region", "eu", "--api-base-url", "{base}"], id="region-and-url"
        ),
        pytest.param(
            ["inspect", "{token}", "--client-id", "x", "--api-base-url", "http://example.com"],
            id="plain-http-off-loopback",
        ),
        pytest.param([*CLIENT_X, "--api-base-url", "{base}", "--timeout", "0"], id="zero-timeout"),
        pytest.param([*CLIENT_X, "--api-base-url", "{base}", "--timeout", "nan"], id="nan-timeout"),
        pytest.param(["inspect", "{token}", "{token}", "--client-id", "x"], id="token-twice"),
        pytest.param(["inspect", "--client-id", "{token}", "{token}"], id="token-as-client-id"),
        pytest.param(["inspect", "--client-id", "x", "--bogus", "{token}"], id="unknown-flag"),
        pytest.param(["frobnicate", "{token}"], id="unknown-command"),
        pytest.param([], id="no-command"),
    ],
)
def test_usage_errors_exit_2_and_never_echo_the_token(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    for name in ("LWA_CLIENT_ID", "LWA_REGION", "LWA_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    token = lwa_emulator.issue_token()
    words = [w.format(token=token, base=lwa_emulator.base_url) for w in argv]
    code, _, err = run(capsys, words, secret=token)
    assert code == 2
    assert err  # a usage error says what is wrong
    assert lwa_emulator.calls["tokeninfo"] == 0


@pytest.mark.parametrize("stdin", ["", "   \n"])
def test_inspect_empty_stdin_is_a_usage_error(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, out, err = run(capsys, inspect(lwa_emulator, "-"))
    assert code == 2
    assert out == ""
    assert "no token" in err


def test_client_id_from_the_environment(
    lwa_emulator: LWAEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LWA_CLIENT_ID", lwa_emulator.client_id)
    monkeypatch.setenv("LWA_API_BASE_URL", lwa_emulator.base_url)
    token = lwa_emulator.issue_token()
    code, out, _ = run(capsys, ["inspect", token], secret=token)
    assert code == 0
    assert json.loads(out)["api_base_url"] == lwa_emulator.base_url


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, ["--version"])
    assert code == 0
    assert out.strip() == f"lwa-middleware {lwa_middleware.__version__}"
    code, out, _ = run(capsys, ["--help"])
    assert code == 0
    for command in ("demo", "emulator", "inspect"):
        assert command in out
    code, out, _ = run(capsys, ["inspect", "--help"])
    assert code == 0
    assert "stdin" in out
    assert "lwa-middleware inspect - --client-id" in out
    assert "3 LWA unavailable" in out


# -- subprocesses ----------------------------------------------------------------


class Proc:
    """A ``python -m lwa_middleware`` child whose output is read line by line."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        # The package may not be installed yet: run it from this checkout.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lwa_middleware", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read_until(self, marker: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if marker in line:
                return "".join(self.seen)
        raise AssertionError(f"{marker!r} never printed; output so far:\n{''.join(self.seen)}")

    def stop(self, sig: signal.Signals, timeout: float = 5.0) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)

    def rest(self) -> str:
        tail = []
        while True:
            try:
                line = self.lines.get(timeout=2)
            except queue.Empty:
                break
            if line is None:
                break
            tail.append(line)
        return "".join(tail)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=5)
        self._pumping.join(timeout=5)  # the pipe is at EOF once the process is gone
        if self.popen.stdout is not None and not self._pumping.is_alive():
            self.popen.stdout.close()


@pytest.fixture
def spawn() -> Iterator[type[Proc]]:
    started: list[Proc] = []

    class Tracked(Proc):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for proc in started:
        proc.kill()


def test_emulator_command(spawn: type[Proc], capsys: pytest.CaptureFixture[str]) -> None:
    proc = spawn("emulator", "--port", "0", "--mint", "profile postal_code")
    out = proc.read_until("Press Ctrl-C")
    base = re.search(r"LWA emulator running at (http://127\.0\.0\.1:\d+)", out)
    assert base is not None, out
    base_url = base.group(1)
    assert "client id     amzn1.application-oa2-client.emulator" in out
    assert f"curl -X POST {base_url}/_emulator/tokens" in out
    printed = re.search(r"^\s+(Atza\|\S+)$", out, re.MULTILINE)
    assert printed is not None, out
    token = printed.group(1)

    with httpx2.Client(timeout=5) as http:
        minted = http.post(base_url + "/_emulator/tokens", json={"scopes": ["profile"]})
        assert minted.status_code == 200
        assert minted.json()["access_token"].startswith("Atza|")
        info = http.get(base_url + "/auth/o2/tokeninfo", headers={"x-amz-access-token": token})
        assert info.status_code == 200
        assert info.json()["aud"] == "amzn1.application-oa2-client.emulator"

    argv = ["inspect", token, "--client-id", "amzn1.application-oa2-client.emulator"]
    code, result, _ = run(capsys, [*argv, "--api-base-url", base_url], secret=token)
    assert code == 0
    assert json.loads(result)["identity"]["scopes"] == ["postal_code", "profile"]

    assert proc.stop(signal.SIGINT) == 0
    assert "LWA emulator stopped." in proc.rest()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(base_url + "/auth/o2/tokeninfo", timeout=2)


def test_emulator_command_registers_the_app_it_prints(spawn: type[Proc]) -> None:
    callback = "http://127.0.0.1:9/cb"
    proc = spawn(
        "emulator",
        "--port",
        "0",
        "--client-secret",
        "s3cret",
        "--redirect-uri",
        callback,
        "--redirect-uri",
        "http://localhost:9/cb",
    )
    out = proc.read_until("Press Ctrl-C")
    base = re.search(r"LWA emulator running at (http://127\.0\.0\.1:\d+)", out)
    assert base is not None, out
    base_url = base.group(1)
    assert "client secret s3cret" in out
    assert f"token         {base_url}/auth/o2/token" in out
    assert f"return URLs   {callback}\n                http://localhost:9/cb\n" in out
    client_id = "amzn1.application-oa2-client.emulator"
    with httpx2.Client(timeout=5, trust_env=False) as http:
        query = {
            "client_id": client_id,
            "response_type": "code",
            "scope": "profile",
            "redirect_uri": callback,
        }
        elsewhere = http.get(base_url + "/ap/oa", params={**query, "redirect_uri": callback + "/x"})
        assert elsewhere.status_code == 400
        answer = http.post(base_url + "/ap/oa", data=_consent_form(http, base_url, query))
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        exchange = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback,
            "client_id": client_id,
        }
        wrong = http.post(base_url + "/auth/o2/token", data={**exchange, "client_secret": "x"})
        assert wrong.status_code == 401
        tokens = http.post(
            base_url + "/auth/o2/token", data={**exchange, "client_secret": "s3cret"}
        )
        assert tokens.status_code == 200
        assert tokens.json()["refresh_token"].startswith("Atzr|")
    assert proc.stop(signal.SIGINT) == 0


def test_emulator_command_default_secret_is_random(spawn: type[Proc]) -> None:
    secrets = []
    for _ in range(2):
        proc = spawn("emulator", "--port", "0")
        out = proc.read_until("Press Ctrl-C")
        found = re.search(r"client secret (amzn1\.oa2-cs\.v1\.[0-9a-f]{64})$", out, re.MULTILINE)
        assert found is not None, out
        secrets.append(found.group(1))
        assert "http://127.0.0.1:8000/callback" in out
        assert proc.stop(signal.SIGTERM) == 0
    assert secrets[0] != secrets[1]


def test_emulator_refuses_a_bad_redirect_uri(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["emulator", "--port", "0", "--redirect-uri", "http://app.example/cb"]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert "redirect URI" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_demo_command(spawn: type[Proc], sig: signal.Signals) -> None:
    proc = spawn("demo", "--port", "0", "--no-browser")
    out = proc.read_until("Press Ctrl-C")
    found = re.search(r"demo running at (http://127\.0\.0\.1:(\d+)/)", out)
    assert found is not None, out
    url, port = found.group(1), int(found.group(2))
    assert port != 0
    curl = re.search(r'curl -H "Authorization: Bearer (\S+)" (\S+)', out)
    assert curl is not None, out
    token, me_url = curl.groups()
    assert me_url == url + "api/me"

    with httpx2.Client(timeout=5) as http:
        page = http.get(url)
        assert page.status_code == 200
        assert 'id="login"' in page.text
        assert http.get(me_url).status_code == 401
        me = http.get(me_url, headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["identity"]["name"] == BUILTIN_CUSTOMERS[0].name
        shipping = http.get(url + "api/shipping", headers={"Authorization": f"Bearer {token}"})
        assert shipping.status_code == 200
        assert http.get(url + "api/stats").json()["lookups"] == 1
        # The page's callback is registered with the emulator, and only it.
        config = http.get(url + "api/config").json()
        query = {"client_id": config["client_id"], "scope": "profile", "response_type": "code"}
        # The page signs in with LWA's JavaScript SDK, served by the emulator.
        assert config["sdk_url"].endswith("/sdk/login1.js")
        assert http.get(config["sdk_url"]).status_code == 200
        authorize_url = config["sdk_url"].removesuffix("/sdk/login1.js") + "/ap/oa"
        signin = http.get(authorize_url, params={**query, "redirect_uri": url + "callback"})
        assert signin.status_code == 200
        other = http.get(authorize_url, params={**query, "redirect_uri": url + "other"})
        assert other.status_code == 400

    assert proc.stop(sig) == 0
    assert "Demo stopped." in proc.rest()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url, timeout=2)


def test_demo_server_side_command(spawn: type[Proc]) -> None:
    proc = spawn("demo", "--server-side", "--port", "0", "--no-browser", "--token-lifetime", "30")
    out = proc.read_until("Press Ctrl-C")
    found = re.search(r"demo \(server-side sign-in\) running at (http://127\.0\.0\.1:\d+/)", out)
    assert found is not None, out
    url = found.group(1)
    lwa = re.search(r"LWA emulator:  (http://127\.0\.0\.1:\d+)", out)
    assert lwa is not None, out
    assert "live 30 s" in out
    assert "curl" not in out  # no token printed: the browser never holds one here
    with httpx2.Client(timeout=5) as http:
        home = http.get(url)
        assert home.status_code == 200
        assert 'href="/login?next=/profile"' in home.text
        assert http.get(url + "profile").status_code == 401
        login = http.get(url + "login")
        assert login.status_code == 302
        assert login.headers["location"].startswith(lwa.group(1) + "/ap/oa?")
        query = dict(parse_qsl(urlsplit(login.headers["location"]).query))
        consent = http.post(lwa.group(1) + "/ap/oa", data=_consent_form(http, lwa.group(1), query))
        assert consent.status_code == 302
        back = http.get(consent.headers["location"])
        assert back.status_code == 303
        profile = http.get(url + "profile")
        assert profile.status_code == 200
        assert BUILTIN_CUSTOMERS[0].name in profile.text
        assert "live 30 seconds" in profile.text
    assert proc.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("lifetime", ["0", "1", "nan", "soon"])
def test_demo_token_lifetime_must_be_a_few_seconds(
    capsys: pytest.CaptureFixture[str], lifetime: str
) -> None:
    code, _, err = run(capsys, ["demo", "--server-side", "--token-lifetime", lifetime])
    assert code == 2
    assert "--token-lifetime" in err


def test_demo_refuses_a_non_loopback_host(spawn: type[Proc]) -> None:
    proc = spawn("demo", "--host", "0.0.0.0", "--port", "0", "--no-browser")
    assert proc.popen.wait(timeout=10) == 2
    assert "loopback" in proc.rest()


def test_demo_without_uvicorn_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes "import uvicorn" fail, as if it were not installed.
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code, out, err = run(capsys, ["demo", "--port", "0", "--no-browser"])
    assert code == 2
    assert "pip install 'lwa-middleware[demo]'" in err
    assert out == ""


@pytest.mark.parametrize("command", ["demo", "emulator"])
def test_port_in_use_is_a_usage_error(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        extra = ["--no-browser"] if command == "demo" else []
        code, _, err = run(capsys, [command, "--port", port, *extra])
    assert code == 2
    assert f"cannot listen on http://127.0.0.1:{port}" in err
    assert "--port 0" in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.9.9.9", True), ("[::1]", True),
     ("::1", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)],
)
def test_only_loopback_hosts_are_accepted(host: str, loopback: bool) -> None:
    from support.private import cli, cli_check_loopback, cli_is_loopback, cli_origin

    assert cli_is_loopback(host) is loopback
    if loopback:
        cli_check_loopback(host)
    else:
        with pytest.raises(cli.UsageError, match="only listens on"):
            cli_check_loopback(host)
    assert cli_origin("::1", 8) == "http://[::1]:8"
