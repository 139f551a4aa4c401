"""Tokens never leak: not in logs, exception messages, reprs, URLs or cache internals."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from werkzeug.test import Client

from lwa_middleware import AuthError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.routes import Policy
from lwa_middleware.testing import Fault, LWAEmulator

FAULTS = [
    Fault.SERVER_ERROR,
    Fault.BAD_JSON,
    Fault.WRONG_TYPES,
    Fault.HTML,
    Fault.RESET,
    Fault.OVERSIZED,
    Fault.USER_ID_MISMATCH,
    Fault.DOWN,
]


class Secrets:
    """Every token a test sent, and the fragments that must never show up."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> str:
        self.tokens.append(token)
        return token

    def fragments(self) -> list[str]:
        out = []
        for token in self.tokens:
            out += [token, token[-40:], quote(token, safe="")]
        return out

    def assert_absent(self, text: str, where: str) -> None:
        for fragment in self.fragments():
            assert fragment not in text, f"a token leaked into {where}"


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "lwa_middleware", "lwa_middleware.testing"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _requests(lwa: LWAEmulator, secrets: Secrets) -> list[tuple[str, dict[str, str], str]]:
    """(path, headers, query) covering valid, invalid and malformed credentials."""
    valid = secrets.add(lwa.issue_token(scopes=["profile"]))
    zip_token = secrets.add(lwa.issue_token(scopes=["profile", "postal_code"]))
    revoked = secrets.add(lwa.issue_token())
    lwa.revoke(revoked)
    foreign = secrets.add(lwa.issue_token(aud="amzn1.application-oa2-client.other"))
    expired = secrets.add(lwa.issue_token(expires_in=-1))
    unknown = secrets.add("Atza|" + "UNKNOWNSECRET" * 30)
    short = secrets.add("short-garbage-secret-token-" + "Z" * 20)
    oversize = secrets.add("Atza|" + "OVERSIZESECRET" * 200)
    odd = secrets.add("Atza|SECRET\u00e9VALUE")
    return [
        ("/me", {"Authorization": f"Bearer {valid}"}, ""),
        ("/me", {"x-amz-access-token": valid}, ""),
        ("/me", {}, "access_token=" + quote(valid, safe="")),
        ("/zip", {"Authorization": f"Bearer {valid}"}, ""),
        ("/zip", {"Authorization": f"Bearer {zip_token}"}, ""),
        ("/me", {"Authorization": f"Bearer {revoked}"}, ""),
        ("/me", {"Authorization": f"Bearer {foreign}"}, ""),
        ("/me", {"Authorization": f"Bearer {expired}"}, ""),
        ("/me", {"Authorization": f"Bearer {unknown}"}, ""),
        ("/me", {"x-amz-access-token": short}, ""),
        ("/me", {"Authorization": f"Bearer {oversize}"}, ""),
        ("/me", {"x-amz-access-token": odd}, ""),
        ("/me", {"Authorization": f"Bearer {valid}", "x-amz-access-token": unknown}, ""),
        ("/me", {"Authorization": f"Bearer {valid} {unknown}"}, ""),
        ("/optional", {}, "access_token=" + quote(unknown, safe="")),
    ]


async def _asgi_call(app: LWAMiddleware, path: str, headers: dict[str, str], query: str) -> int:
    """Call the ASGI app directly, so no HTTP client logs what it sends."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": (path + ("?" + query if query else "")).encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def _wsgi_call(client: Client, path: str, headers: dict[str, str], query: str) -> int:
    return client.get(path, headers=headers, query_string=query).status_code


def _run_everything_asgi(app: LWAMiddleware, lwa: LWAEmulator, secrets: Secrets) -> list[int]:
    async def main() -> list[int]:
        statuses = [await _asgi_call(app, *r) for r in _requests(lwa, secrets)]
        for fault in FAULTS:
            token = secrets.add(lwa.issue_token())
            lwa.inject(fault)
            statuses.append(await _asgi_call(app, "/me", {"Authorization": f"Bearer {token}"}, ""))
            lwa.clear_faults()
        await app.aclose()
        return statuses

    return asyncio.run(main())


def _run_everything_wsgi(mw: LWAWSGIMiddleware, lwa: LWAEmulator, secrets: Secrets) -> list[int]:
    client = Client(mw)
    statuses = [_wsgi_call(client, *r) for r in _requests(lwa, secrets)]
    for fault in FAULTS:
        token = secrets.add(lwa.issue_token())
        lwa.inject(fault)
        statuses.append(_wsgi_call(client, "/me", {"Authorization": f"Bearer {token}"}, ""))
        lwa.clear_faults()
    return statuses


def _assert_logs_clean(caplog: pytest.LogCaptureFixture, secrets: Secrets) -> None:
    for record in caplog.records:
        secrets.assert_absent(record.getMessage(), f"log message of {record.name}")
        secrets.assert_absent(repr(record.msg), f"log msg of {record.name}")
        secrets.assert_absent(repr(record.args), f"log args of {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(record.exc_info[1]))
            secrets.assert_absent(text, f"logged exception of {record.name}")
        if record.exc_text:
            secrets.assert_absent(record.exc_text, f"exc_text of {record.name}")
    secrets.assert_absent(caplog.text, "the captured log text")


def _assert_internals_clean(mw: Any, secrets: Secrets) -> None:
    auth = mw.resolver
    secrets.assert_absent(repr(mw), "the middleware's repr")
    secrets.assert_absent(repr(auth), "the authenticator's repr")
    secrets.assert_absent(repr(mw.settings), "the settings' repr")
    secrets.assert_absent(repr(mw.stats), "the stats' repr")
    cache = auth.cache
    entries = cache._entries
    secrets.assert_absent(repr(entries), "the cache's repr")
    assert len(entries) > 0, "the test should have cached something"
    for key, entry in list(entries.items()):
        secrets.assert_absent(repr(key), "a cache key")
        secrets.assert_absent(repr(entry), "a cache entry")
        secrets.assert_absent(repr(entry.identity), "an identity")
        secrets.assert_absent(repr(vars(entry) if hasattr(entry, "__dict__") else entry), "entry")
        for token in secrets.tokens:
            assert token.encode() not in key
    rejections = getattr(cache, "_rejections", None)
    if rejections is not None:
        assert len(rejections) > 0, "the test should have remembered a rejection"
        secrets.assert_absent(repr(rejections), "the negative cache")
        for key, error in list(rejections.items()):
            secrets.assert_absent(repr(key), "a negative cache key")
            _assert_error_clean(error, secrets)


def _assert_error_clean(error: BaseException, secrets: Secrets) -> None:
    secrets.assert_absent(str(error), "an exception message")
    secrets.assert_absent(repr(error), "an exception repr")
    secrets.assert_absent(repr(error.args), "exception args")
    secrets.assert_absent("".join(traceback.format_exception(error)), "a traceback")
    if isinstance(error, AuthError):
        secrets.assert_absent(repr(error.response("lwa")), "an error response")


def test_asgi_hygiene(
    all_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    secrets: Secrets,
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
) -> None:
    events: list[tuple[str, Any]] = []
    app = make_asgi(on_event=lambda name, data: events.append((name, dict(data))))
    statuses = _run_everything_asgi(app, lwa_emulator, secrets)
    assert 200 in statuses
    assert 401 in statuses
    assert 400 in statuses
    assert 503 in statuses
    assert 403 in statuses
    _assert_logs_clean(all_logs, secrets)
    assert any(r.name.startswith("httpx") for r in all_logs.records), "httpx logs were captured"
    _assert_internals_clean(app, secrets)
    secrets.assert_absent(repr(events), "on_event data")
    out, err = capfd.readouterr()
    secrets.assert_absent(out + err, "stdout/stderr")
    assert lwa_emulator.token_in_url == 0


def test_wsgi_hygiene(
    all_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    secrets: Secrets,
    lwa_emulator: LWAEmulator,
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    events: list[tuple[str, Any]] = []
    mw = make_wsgi(on_event=lambda name, data: events.append((name, dict(data))))
    statuses = _run_everything_wsgi(mw, lwa_emulator, secrets)
    mw.close()
    assert {200, 400, 401, 403, 503} <= set(statuses)
    _assert_logs_clean(all_logs, secrets)
    _assert_internals_clean(mw, secrets)
    secrets.assert_absent(repr(events), "on_event data")
    out, err = capfd.readouterr()
    secrets.assert_absent(out + err, "stdout/stderr")
    assert lwa_emulator.token_in_url == 0


def test_errors_raised_by_the_core_hold_no_token(
    all_logs: pytest.LogCaptureFixture,
    secrets: Secrets,
    lwa_emulator: LWAEmulator,
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    mw = make_wsgi()
    auth = mw.resolver
    required = Policy.parse("required")
    revoked = secrets.add(lwa_emulator.issue_token())
    lwa_emulator.revoke(revoked)
    candidates = [
        secrets.add("Atza|" + "CORESECRET" * 40),
        secrets.add(lwa_emulator.issue_token(aud="amzn1.application-oa2-client.x")),
        revoked,
    ]
    errors: list[BaseException] = []
    for token in candidates:
        with pytest.raises(AuthError) as excinfo:
            auth.resolve_sync(token, required)
        errors.append(excinfo.value)
    for fault in FAULTS:
        token = secrets.add(lwa_emulator.issue_token())
        lwa_emulator.inject(fault)
        with pytest.raises(AuthError) as excinfo:
            auth.resolve_sync(token, required)
        errors.append(excinfo.value)
        lwa_emulator.clear_faults()
    mw.close()
    for error in errors:
        _assert_error_clean(error, secrets)
    _assert_logs_clean(all_logs, secrets)
    assert lwa_emulator.token_in_url == 0


def test_emulator_requests_carry_the_token_only_in_headers(
    secrets: Secrets, lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    mw = make_wsgi()
    client = Client(mw)
    token = secrets.add(lwa_emulator.issue_token())
    assert (
        client.get("/me", query_string="access_token=" + quote(token, safe="")).status_code == 200
    )
    mw.close()
    assert lwa_emulator.token_in_url == 0
    for request in lwa_emulator.requests:
        secrets.assert_absent(request.target, "an upstream URL")


# -- no token in frame locals while the app runs -------------------------------


class _AppFailed(Exception):
    pass


def _middleware_frames_hold(tb: Any, token: str) -> list[str]:
    """Names of lwa_middleware frames in ``tb`` whose locals mention ``token``.

    Error reporters (Sentry, ``TracebackException(capture_locals=True)``)
    record exactly these locals.
    """
    needles = (token, token.encode(), quote(token, safe=""), quote(token, safe="").encode())
    found = []
    for frame, _ in traceback.walk_tb(tb):
        if "lwa_middleware" not in frame.f_code.co_filename:
            continue
        for name, value in frame.f_locals.items():
            text = repr(value)
            if any(repr(needle)[1:-1] in text or str(needle) in text for needle in needles):
                found.append(f"{frame.f_code.co_name}:{name}")
    return found


@pytest.mark.parametrize("source", ["header", "query"])
@pytest.mark.parametrize("cached", [False, True])
def test_asgi_frames_hold_no_token_while_the_app_runs(
    source: str, cached: bool, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token()

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/boom":
            raise _AppFailed("the app failed")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = LWAMiddleware(
        failing,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        strip_credentials=True,
    )

    def scope(path: str) -> dict[str, Any]:
        headers = [(b"authorization", b"Bearer " + token.encode())] if source == "header" else []
        query = b"" if source == "header" else b"access_token=" + quote(token, safe="").encode()
        return {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": query, "headers": headers,
        }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def run() -> BaseException:
        if cached:
            await mw(scope("/warm"), receive, send)
        try:
            await mw(scope("/boom"), receive, send)
        except _AppFailed as error:
            return error
        finally:
            await mw.aclose()
        raise AssertionError("the app did not run")

    error = asyncio.run(run())
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert _middleware_frames_hold(error.__traceback__, token) == []


@pytest.mark.parametrize("cached", [False, True])
def test_wsgi_frames_hold_no_token_while_the_app_runs(
    cached: bool, lwa_emulator: LWAEmulator
) -> None:
    token = lwa_emulator.issue_token()

    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise _AppFailed("the app failed")
        start_response("204 No Content", [])
        return [b""]

    mw = LWAWSGIMiddleware(
        failing,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        strip_credentials=True,
    )
    client = Client(mw)
    if cached:
        client.get("/warm", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(_AppFailed) as caught:
        client.get("/boom", headers={"Authorization": f"Bearer {token}"})
    mw.close()
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert _middleware_frames_hold(caught.value.__traceback__, token) == []
