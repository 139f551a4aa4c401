"""Tokens never leak: not in logs, exception messages, reprs, URLs or cache internals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from support.callers import asgi_call, asgi_scope
from support.leaks import Secrets, frames_holding
from support.private import Policy
from werkzeug.test import Client

from lwa_middleware import AuthError, LWAMiddleware, LWAWSGIMiddleware
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


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "httpx2", "httpcore2", "lwa_middleware", "lwa_middleware.testing"):
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


async def _asgi_status(app: LWAMiddleware, path: str, headers: dict[str, str], query: str) -> int:
    """Call the ASGI app directly, so no HTTP client logs what it sends."""
    return int((await asgi_call(app, asgi_scope(path, headers, query)))[0]["status"])


def _wsgi_call(client: Client, path: str, headers: dict[str, str], query: str) -> int:
    return client.get(path, headers=headers, query_string=query).status_code


def _run_everything_asgi(app: LWAMiddleware, lwa: LWAEmulator, secrets: Secrets) -> list[int]:
    async def main() -> list[int]:
        statuses = [await _asgi_status(app, *r) for r in _requests(lwa, secrets)]
        for fault in FAULTS:
            token = secrets.add(lwa.issue_token())
            lwa.inject(fault)
            bad = {"Authorization": f"Bearer {token}"}
            statuses.append(await _asgi_status(app, "/me", bad, ""))
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
    secrets.assert_logs_clean(all_logs.records, text=all_logs.text)
    # The checked records include the middleware's own warnings (the 503's
    # "unavailable" line): the check ran on real log traffic. (aiohttp, the
    # asyncio HTTP stack, logs nothing about a request that works.)
    assert any(
        r.name.startswith("lwa_middleware") and r.levelno >= logging.WARNING
        for r in all_logs.records
    ), "the middleware's warnings were captured"
    secrets.assert_internals_clean(app)
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
    secrets.assert_logs_clean(all_logs.records, text=all_logs.text)
    secrets.assert_internals_clean(mw)
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
        secrets.assert_error_clean(error)
    secrets.assert_logs_clean(all_logs.records, text=all_logs.text)
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
    assert frames_holding(error.__traceback__, token) == []


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
    assert frames_holding(caught.value.__traceback__, token) == []
