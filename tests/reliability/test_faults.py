"""The fault matrix: every way LWA can fail, against both middlewares.

For each emulator fault the middleware must give the contract's answer (503
``temporarily_unavailable`` with ``Retry-After``, or 401 when LWA's answers
prove the token is no good), log no ERROR and no traceback, never log the
token, and recover as soon as LWA is back: the token that failed transiently
is asked about again (it was not remembered) and a new token resolves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from lwa_middleware.testing import Fault, LWAEmulator

from .conftest import (
    RETRY_AFTER,
    Caller,
    assert_clean_logs,
    assert_invalid_token,
    assert_unavailable,
)


@dataclass(frozen=True)
class Case:
    fault: Fault
    #: What the 503's ``Retry-After`` must say.
    retry_after: int = RETRY_AFTER
    #: ``Retry-After`` the emulator sends with its own 503/429.
    upstream_retry_after: int | None = None
    #: A fragment of the warning the middleware logs (a fixed, token-free phrase).
    reason: str = ""
    #: Whether the fault holds the connection (then a short deadline is set).
    slow: bool = False

    def __str__(self) -> str:
        return self.fault.name


TRANSIENT = [
    Case(Fault.HANG, reason="timed out", slow=True),
    Case(Fault.SLOW_DRIP, reason="timed out", slow=True),
    Case(Fault.RESET, reason="transport error"),
    Case(Fault.SERVER_ERROR, reason="HTTP 500"),
    Case(Fault.UNAVAILABLE, retry_after=3, upstream_retry_after=3, reason="HTTP 503"),
    Case(Fault.THROTTLED, retry_after=7, upstream_retry_after=7, reason="HTTP 429"),
    Case(Fault.BAD_JSON, reason="unusable answer"),
    Case(Fault.HTML, reason="unusable answer"),
    Case(Fault.WRONG_TYPES, reason="unusable answer"),
    Case(Fault.OVERSIZED, reason="response too large"),
]

#: A generous bound for "answered instead of hanging": a drip would take ~40 s.
PROMPT = 5.0


def _options(case: Case) -> dict[str, object]:
    # The deadline a hanging or dripping LWA runs into. It also bounds the
    # healthy calls of the recovery check, so not too tight: 0.5 s failed
    # there once on a loaded 2-core box (under xdist -n 2).
    return {"timeout": 1.0 if case.slow else 3.0}


def _warnings(records: list[logging.LogRecord], endpoint: str) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name == "lwa_middleware" and f"LWA {endpoint} is unavailable" in r.getMessage()
    ]


def _check_recovery(caller: Caller, lwa: LWAEmulator, victim: str, endpoint: str) -> None:
    """LWA is back: the failed token is asked about again, and a new token works."""
    before = lwa.calls[endpoint]
    reply = caller.get(token=victim)
    assert reply.status == 200, reply.body
    assert reply.user_id == lwa.customer_for(victim).user_id
    assert lwa.calls[endpoint] == before + 1, "the failed token was not retried at LWA"
    fresh = lwa.issue_token()
    reply = caller.get(token=fresh)
    assert reply.status == 200, reply.body
    assert reply.user_id == lwa.customer_for(fresh).user_id


@pytest.mark.parametrize("endpoint", [None, "profile"], ids=["both", "profile-only"])
@pytest.mark.parametrize("case", TRANSIENT, ids=str)
def test_transient_fault_fails_closed_then_recovers(
    case: Case,
    endpoint: str | None,
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    caller = make_caller(**_options(case))
    warm = lwa_emulator.issue_token()
    assert caller.get(token=warm).status == 200
    victim = lwa_emulator.issue_token()
    watched = endpoint or "tokeninfo"

    lwa_emulator.inject(case.fault, endpoint=endpoint, retry_after=case.upstream_retry_after)
    started = time.monotonic()
    reply = caller.get(token=victim)
    elapsed = time.monotonic() - started
    assert_unavailable(reply, case.retry_after)
    assert elapsed < PROMPT
    assert any(case.reason in w for w in _warnings(debug_logs.records, watched)), _warnings(
        debug_logs.records, watched
    )
    # Still failing: asked again, because a transient failure is never remembered.
    # A GET whose connection was dropped is sent once more (aiohttp, as RFC 9112
    # allows for an idempotent request), never more.
    calls = lwa_emulator.calls[watched]
    assert_unavailable(caller.get(token=victim), case.retry_after)
    resent = 1 if case.fault is Fault.RESET else 0
    assert calls + 1 <= lwa_emulator.calls[watched] <= calls + 1 + resent
    # A token resolved before the fault is still served from the cache.
    cached = caller.get(token=warm)
    assert cached.status == 200
    assert cached.user_id == lwa_emulator.customer_for(warm).user_id

    lwa_emulator.clear_faults()
    _check_recovery(caller, lwa_emulator, victim, watched)
    assert_clean_logs(debug_logs.records, warm, victim)


def test_down_fails_closed_then_recovers(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    caller = make_caller(timeout=3.0)
    warm = lwa_emulator.issue_token()
    assert caller.get(token=warm).status == 200
    victim = lwa_emulator.issue_token()

    lwa_emulator.inject(Fault.DOWN)
    for _ in range(2):
        started = time.monotonic()
        assert_unavailable(caller.get(token=victim), RETRY_AFTER)
        assert time.monotonic() - started < PROMPT
    assert any("connection failed" in w for w in _warnings(debug_logs.records, "tokeninfo"))
    assert caller.get(token=warm).status == 200

    lwa_emulator.clear_faults()
    _check_recovery(caller, lwa_emulator, victim, "tokeninfo")
    assert_clean_logs(debug_logs.records, warm, victim)


@pytest.mark.parametrize("fault", [Fault.LEGACY_PROFILE, Fault.EXP_STRING], ids=str)
def test_odd_but_valid_answers_resolve(
    fault: Fault,
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    caller = make_caller()
    lwa_emulator.inject(fault)
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"],
        user_id="amzn1.account.AFLEGACYSHAPE000000000001",
        name="Ada Lovelace",
        email="ada@example.com",
        postal_code="SW1A 1AA",
    )
    reply = caller.get("/zip", token=token)
    assert reply.status == 200, reply.body
    identity = reply.json()["identity"]
    assert identity["user_id"] == "amzn1.account.AFLEGACYSHAPE000000000001"
    assert identity["name"] == "Ada Lovelace"
    assert identity["email"] == "ada@example.com"
    assert identity["postal_code"] == "SW1A 1AA"
    assert set(identity["scopes"]) == {"profile", "postal_code"}
    assert identity["client_id"] == lwa_emulator.client_id
    # ``exp`` is a lifetime in seconds, whether LWA sent it as a number or a string.
    assert abs(identity["expires_at"] - (time.time() + 3600)) < 60
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert_clean_logs(debug_logs.records, token)


def test_user_id_mismatch_is_invalid_and_not_remembered(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    caller = make_caller()
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.USER_ID_MISMATCH)
    reply = caller.get(token=token)
    assert_invalid_token(reply)
    assert "identity" not in reply.json()
    # Two LWA answers disagreeing is not the token's fault: once LWA agrees
    # with itself again, the same token is asked about again and resolves.
    lwa_emulator.clear_faults()
    _check_recovery(caller, lwa_emulator, token, "tokeninfo")
    assert_clean_logs(debug_logs.records, token)


def test_fault_limited_to_some_requests_heals_without_intervention(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
) -> None:
    """A fault that stops on its own (``times=2``) needs no clear: the third try works."""
    caller = make_caller()
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=2)
    assert_unavailable(caller.get(token=token))
    assert_unavailable(caller.get(token=token))
    reply = caller.get(token=token)
    assert reply.status == 200
    assert lwa_emulator.calls["tokeninfo"] == 3


class _EndlessBody(BaseHTTPRequestHandler):
    """Answers any GET with a chunked body that never ends (up to 64 MiB)."""

    protocol_version = "HTTP/1.1"
    timeout = 5.0
    sent: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            for _ in range(1024):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
            self.close_connection = True


def test_endless_body_is_cut_at_the_cap(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    """No Content-Length to refuse up front: the cap must cut the stream itself."""
    _EndlessBody.sent = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessBody)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        caller = make_caller(
            api_base_url=f"http://127.0.0.1:{server.server_address[1]}",
            timeout=10.0,
            max_response_bytes=64 * 1024,
        )
        token = lwa_emulator.issue_token()
        started = time.monotonic()
        assert_unavailable(caller.get(token=token), RETRY_AFTER)
        # The 10 s deadline did not fire: the byte cap did.
        assert time.monotonic() - started < PROMPT
        assert any("response too large" in w for w in _warnings(debug_logs.records, "tokeninfo"))
        deadline = time.monotonic() + PROMPT
        while len(_EndlessBody.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Both calls (tokeninfo and profile) were hung up on long before 64 MiB;
        # what was sent is the cap plus what loopback socket buffers absorb.
        assert len(_EndlessBody.sent) == 2
        assert max(_EndlessBody.sent) < 16 * 1024 * 1024, _EndlessBody.sent
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert_clean_logs(debug_logs.records, token)
