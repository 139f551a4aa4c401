"""Fault and latency injection (:mod:`lwa_middleware.testing.faults`).

What each :class:`Fault` answers or does to the connection, and how
counted and standing faults are scheduled.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import httpx2
import pytest

from lwa_middleware.testing import Fault, LWAEmulator

from .emulator_support import (
    INVALID_TOKEN,
    JSON_TYPE,
    USER_ID,
    call_in_thread,
    make_client,
    profile,
    tokeninfo,
)

# -- answers replaced ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error", "retry_after"),
    [
        (Fault.SERVER_ERROR, 500, "ServerError", None),
        (Fault.UNAVAILABLE, 503, "ServiceUnavailable", "1"),
        (Fault.THROTTLED, 429, "TooManyRequests", "1"),
    ],
)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
def test_error_status_faults(
    lwa_emulator: LWAEmulator,
    client: httpx2.Client,
    kind: Fault,
    status: int,
    error: str,
    retry_after: str | None,
    endpoint: str,
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(kind)
    url = lwa_emulator.tokeninfo_url if endpoint == "tokeninfo" else lwa_emulator.profile_url
    response = client.get(url, headers={"x-amz-access-token": token})
    assert response.status_code == status
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert response.headers.get("retry-after") == retry_after
    assert "x-amzn-requestid" in response.headers
    assert lwa_emulator.calls[endpoint] == 1



def test_retry_after_is_configurable(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    lwa_emulator.inject("503", endpoint="tokeninfo", retry_after=7)
    lwa_emulator.inject("throttled", endpoint="profile", retry_after=3)
    assert client.get(lwa_emulator.tokeninfo_url).headers["retry-after"] == "7"
    assert client.get(lwa_emulator.profile_url).headers["retry-after"] == "3"



def test_faults_apply_whatever_the_token(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    lwa_emulator.inject(Fault.UNAVAILABLE)
    assert client.get(lwa_emulator.tokeninfo_url).status_code == 503
    assert tokeninfo(client, lwa_emulator, "Atza|unknown").status_code == 503



def test_bad_json(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.BAD_JSON)
    for response in (tokeninfo(client, lwa_emulator, token), profile(client, lwa_emulator, token)):
        assert response.status_code == 200
        assert response.headers["content-type"] == JSON_TYPE
        assert int(response.headers["content-length"]) == len(response.content)
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)



def test_html(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.HTML, endpoint="tokeninfo")
    response = tokeninfo(client, lwa_emulator, token)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert profile(client, lwa_emulator, token).status_code == 200



def test_wrong_types(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.WRONG_TYPES)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == 123
    assert info["exp"] == [1]
    assert info["user_id"] is None
    body = profile(client, lwa_emulator, token).json()
    assert body["user_id"] == 5



def test_oversized(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.OVERSIZED, endpoint="tokeninfo", times=1)
    response = tokeninfo(client, lwa_emulator, token)
    assert response.status_code == 200
    assert len(response.content) >= 4 * 1024 * 1024
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert body["aud"] == lwa_emulator.client_id
    assert len(tokeninfo(client, lwa_emulator, token).content) < 1024


# -- connection faults ---------------------------------------------------------


def test_slow_drip(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SLOW_DRIP, endpoint="tokeninfo")
    start = time.monotonic()
    received = b""
    early = -1
    with client.stream(
        "GET", lwa_emulator.tokeninfo_url, headers={"x-amz-access-token": token}
    ) as response:
        assert response.status_code == 200
        assert time.monotonic() - start < 0.5  # headers come at once
        length = int(response.headers["content-length"])
        for chunk in response.iter_raw():
            received += chunk
            if early < 0 and time.monotonic() - start > 1.0:
                early = len(received)
                # Releasing the fault delivers the rest immediately.
                lwa_emulator.clear_faults()
    assert time.monotonic() - start > 1.0
    assert 0 < early <= 8 < length
    assert len(received) == length
    assert json.loads(received)["aud"] == lwa_emulator.client_id



def test_reset_then_normal(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.RESET, times=1)
    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        tokeninfo(client, lwa_emulator, token)
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        profile(client, lwa_emulator, token)
    assert profile(client, lwa_emulator, token).status_code == 200
    assert lwa_emulator.calls == Counter(tokeninfo=2, profile=2)



def test_reset_fault_sends_a_tcp_rst(lwa_emulator: LWAEmulator) -> None:
    lwa_emulator.inject(Fault.RESET, endpoint="tokeninfo")
    with socket.create_connection(("127.0.0.1", lwa_emulator.port), timeout=5) as sock:
        sock.sendall(b"GET /auth/o2/tokeninfo HTTP/1.1\r\nHost: lwa\r\n\r\n")
        # A graceful close (FIN) would read b"" here instead.
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)



def test_hang_until_clear_faults(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.HANG, endpoint="tokeninfo")
    thread, outcome = call_in_thread(lwa_emulator.tokeninfo_url, token)
    assert lwa_emulator.wait_for_calls("tokeninfo", 1)
    thread.join(0.3)
    assert thread.is_alive(), "a hanging request must not be answered"
    # Other endpoints keep working while one request hangs.
    assert profile(client, lwa_emulator, token).status_code == 200

    lwa_emulator.clear_faults()
    thread.join(1.5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), httpx2.RemoteProtocolError | httpx2.ReadError)
    assert tokeninfo(client, lwa_emulator, token).status_code == 200



def test_hang_released_by_reset(lwa_emulator: LWAEmulator) -> None:
    lwa_emulator.inject(Fault.HANG, endpoint="profile", times=1)
    thread, outcome = call_in_thread(lwa_emulator.profile_url, "Atza|x")
    assert lwa_emulator.wait_for_calls("profile", 1)
    lwa_emulator.reset()
    thread.join(1.5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), httpx2.RemoteProtocolError | httpx2.ReadError)



def test_hang_released_by_stop() -> None:
    lwa = LWAEmulator().start()
    token = lwa.issue_token()
    lwa.inject(Fault.HANG)
    calls = [call_in_thread(lwa.tokeninfo_url, token) for _ in range(3)]
    assert lwa.wait_for_calls("tokeninfo", 3)

    start = time.monotonic()
    lwa.stop()
    assert time.monotonic() - start < 1.5
    for thread, outcome in calls:
        thread.join(max(0.0, 1.5 - (time.monotonic() - start)))
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), httpx2.RemoteProtocolError | httpx2.ReadError)
    assert time.monotonic() - start < 1.5
    with make_client() as c, pytest.raises(httpx2.ConnectError):
        c.get(lwa.tokeninfo_url)



def test_stop_with_slow_drip_in_flight_is_prompt() -> None:
    lwa = LWAEmulator().start()
    token = lwa.issue_token()
    lwa.inject(Fault.SLOW_DRIP)
    thread, _ = call_in_thread(lwa.tokeninfo_url, token)
    assert lwa.wait_for_calls("tokeninfo", 1)
    start = time.monotonic()
    lwa.stop()
    thread.join(1.5)
    assert not thread.is_alive()
    assert time.monotonic() - start < 1.5



def test_down_then_recovery_on_the_same_port(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    base_url = lwa_emulator.base_url
    with make_client() as c:
        assert tokeninfo(c, lwa_emulator, token).status_code == 200
        lwa_emulator.inject(Fault.DOWN, endpoint="profile")  # endpoint is ignored
        # Even the pooled keep-alive connection is gone.
        with pytest.raises(httpx2.ConnectError):
            tokeninfo(c, lwa_emulator, token)
        with pytest.raises(httpx2.ConnectError):
            profile(c, lwa_emulator, token)
        lwa_emulator.clear_faults()
        assert lwa_emulator.base_url == base_url
        assert tokeninfo(c, lwa_emulator, token).status_code == 200

        lwa_emulator.inject(Fault.DOWN)
        with pytest.raises(httpx2.ConnectError):
            tokeninfo(c, lwa_emulator, token)
        lwa_emulator.reset()
        assert tokeninfo(c, lwa_emulator, token).json() == INVALID_TOKEN
    assert lwa_emulator.calls == Counter(tokeninfo=1)
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.DOWN, times=1)


# -- format faults -------------------------------------------------------------


def test_legacy_profile(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token(scopes=["profile:user_id", "postal_code"])
    customer = lwa_emulator.customer_for(token)
    lwa_emulator.inject(Fault.LEGACY_PROFILE, times=1)
    # Only the profile is affected, and its budget is not spent by tokeninfo.
    assert tokeninfo(client, lwa_emulator, token).json()["user_id"] == customer.user_id
    assert profile(client, lwa_emulator, token).json() == {
        "Profile": {"CustomerId": customer.user_id, "PostalCode": customer.postal_code}
    }
    assert profile(client, lwa_emulator, token).json() == {
        "user_id": customer.user_id,
        "postal_code": customer.postal_code,
    }
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.LEGACY_PROFILE, endpoint="tokeninfo")



def test_legacy_profile_with_profile_scope(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(token)
    lwa_emulator.inject("legacy_profile")
    assert profile(client, lwa_emulator, token).json() == {
        "Profile": {
            "CustomerId": customer.user_id,
            "Name": customer.name,
            "PrimaryEmail": customer.email,
        }
    }
    # A format fault does not make a bad token good.
    assert profile(client, lwa_emulator, "Atza|unknown").status_code == 400



def test_exp_string(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.EXP_STRING)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["exp"] in ("3599", "3600")
    assert isinstance(info["iat"], str)
    assert info["iat"].isdigit()
    assert profile(client, lwa_emulator, token).status_code == 200



def test_user_id_mismatch(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.USER_ID_MISMATCH)
    from_tokeninfo = tokeninfo(client, lwa_emulator, token).json()["user_id"]
    from_profile = profile(client, lwa_emulator, token).json()["user_id"]
    assert USER_ID.fullmatch(from_profile)
    assert from_profile != from_tokeninfo == lwa_emulator.customer_for(token).user_id


# -- scheduling ----------------------------------------------------------------


def test_times_then_normal(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=2)
    statuses = [tokeninfo(client, lwa_emulator, token).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert profile(client, lwa_emulator, token).status_code == 200
    assert lwa_emulator.calls == Counter(tokeninfo=3, profile=1)



def test_counted_faults_queue_ahead_of_the_standing_one(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo")
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=1)
    lwa_emulator.inject(Fault.THROTTLED, endpoint="tokeninfo", times=1)
    statuses = [tokeninfo(client, lwa_emulator, token).status_code for _ in range(4)]
    assert statuses == [500, 429, 503, 503]
    lwa_emulator.clear_faults()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200



def test_inject_validates(lwa_emulator: LWAEmulator) -> None:
    with pytest.raises(ValueError):
        lwa_emulator.inject("no_such_fault")
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.HANG, endpoint="authorize")
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.EXP_STRING, endpoint="token")
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.HANG, times=0)
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.EXP_STRING, endpoint="profile")
    lwa_emulator.inject("SERVER_ERROR", times=1)  # names work as well as values


# -- latency -------------------------------------------------------------------


def test_latency(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3, endpoint="profile")
    start = time.monotonic()
    assert profile(client, lwa_emulator, token).status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    assert time.monotonic() - start < 0.25
    with pytest.raises(ValueError):
        lwa_emulator.set_latency(-1)



def test_latency_does_not_block_other_requests(
    lwa_emulator: LWAEmulator, client: httpx2.Client
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.6, endpoint="tokeninfo")
    thread, outcome = call_in_thread(lwa_emulator.tokeninfo_url, token)
    assert lwa_emulator.wait_for_calls("tokeninfo", 1)
    start = time.monotonic()
    assert profile(client, lwa_emulator, token).status_code == 200
    assert time.monotonic() - start < 0.5
    thread.join(3)
    response = outcome["response"]
    assert isinstance(response, httpx2.Response)
    assert response.status_code == 200
