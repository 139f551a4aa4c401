"""Tests of :mod:`lwa_middleware.testing`, through real HTTP over loopback.

The ``lwa_emulator`` / ``lwa_emulator_server`` fixtures come from the pytest
plugin ``lwa_middleware.testing.pytest_plugin``.  Once the package is
installed, its ``pytest11`` entry point loads the plugin automatically.
Until then, and on purpose without a ``conftest.py`` (loading the plugin
twice, by entry point and by ``pytest_plugins``, makes pytest fail), run::

    PYTHONPATH=. python -m pytest tests/testing -p lwa_middleware.testing.pytest_plugin

Every client is built with ``trust_env=False`` so no proxy setting can send
a request anywhere but loopback.
"""

from __future__ import annotations

import html
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwa_middleware.testing import BUILTIN_CUSTOMERS, Customer, Fault, LWAEmulator

JSON_TYPE = "application/json;charset=UTF-8"
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The request has an invalid parameter : access_token",
}
MISSING_TOKEN = {
    "error": "invalid_request",
    "error_description": "The request is missing a required parameter : access_token",
}
USER_ID = re.compile(r"amzn1\.account\.[A-Z0-9]{26}")
APP_ID = re.compile(r"amzn1\.application\.[0-9a-f]{32}")
TOKEN = re.compile(r"Atza\|[A-Za-z0-9_-]+")
REDIRECT = "http://127.0.0.1:9/callback"


# Building a TLS context per client costs ~30 ms (CA bundle load); the
# emulator speaks plain HTTP, so one shared context is plenty.
_TLS = ssl.create_default_context()


def make_client(timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(timeout=timeout, trust_env=False, verify=_TLS)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client() as c:
        yield c


def tokeninfo(c: httpx.Client, lwa: LWAEmulator, token: str) -> httpx.Response:
    return c.get(lwa.tokeninfo_url, headers={"x-amz-access-token": token})


def profile(c: httpx.Client, lwa: LWAEmulator, token: str) -> httpx.Response:
    return c.get(lwa.profile_url, headers={"Authorization": f"Bearer {token}"})


# -- tokens and tokeninfo ------------------------------------------------------


def test_issued_token_looks_like_an_lwa_token(lwa_emulator: LWAEmulator) -> None:
    tokens = {lwa_emulator.issue_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert TOKEN.fullmatch(token), token[:10]
        assert 380 <= len(token) <= 500


def test_tokeninfo_shape_and_types(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    before = time.time()
    response = tokeninfo(client, lwa_emulator, token)

    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    assert int(response.headers["content-length"]) == len(response.content)
    assert uuid.UUID(response.headers["x-amzn-requestid"]).version == 4
    info = response.json()
    assert list(info) == ["iss", "user_id", "aud", "app_id", "exp", "iat"]
    assert info["iss"] == "https://www.amazon.com"
    assert info["aud"] == lwa_emulator.client_id
    assert USER_ID.fullmatch(info["user_id"])
    assert info["user_id"] == lwa_emulator.customer_for(token).user_id
    assert APP_ID.fullmatch(info["app_id"])
    assert type(info["exp"]) is int
    assert info["exp"] in (3599, 3600)
    assert type(info["iat"]) is int
    assert before - 2 <= info["iat"] <= time.time()


def test_tokeninfo_accepts_the_token_in_the_query_and_counts_it(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    token = lwa_emulator.issue_token()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    assert lwa_emulator.token_in_url == 0

    response = client.get(lwa_emulator.tokeninfo_url, params={"access_token": token})
    assert response.status_code == 200
    assert response.json()["user_id"] == lwa_emulator.customer_for(token).user_id
    response = client.get(lwa_emulator.profile_url, params={"access_token": token})
    assert response.status_code == 200
    assert lwa_emulator.token_in_url == 2
    # The log keeps the parameter name, never the value.
    assert lwa_emulator.requests[-1].target == "/user/profile?access_token=<redacted>"
    encoded = f"{lwa_emulator.tokeninfo_url}?a=1&access%5Ftoken={token}"
    assert client.get(encoded).status_code == 200
    assert lwa_emulator.requests[-1].target == "/auth/o2/tokeninfo?a=1&access%5Ftoken=<redacted>"
    assert lwa_emulator.token_in_url == 3
    assert token not in repr(lwa_emulator.requests)


def test_missing_token_is_invalid_request(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    for url in (lwa_emulator.tokeninfo_url, lwa_emulator.profile_url):
        response = client.get(url)
        assert response.status_code == 400
        assert response.json() == MISSING_TOKEN
        assert response.headers["content-type"] == JSON_TYPE


def test_unknown_token_is_invalid_token(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    fake = "Atza|" + "A" * 400
    response = tokeninfo(client, lwa_emulator, fake)
    assert response.status_code == 400
    assert response.json() == INVALID_TOKEN

    response = profile(client, lwa_emulator, fake)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_exp_counts_down_and_the_token_expires(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    short = lwa_emulator.issue_token(expires_in=1)
    long = lwa_emulator.issue_token(expires_in=10)
    assert tokeninfo(client, lwa_emulator, short).json()["exp"] == 0
    first = tokeninfo(client, lwa_emulator, long).json()["exp"]
    assert first == 9

    time.sleep(1.1)

    assert tokeninfo(client, lwa_emulator, long).json()["exp"] == first - 1
    response = tokeninfo(client, lwa_emulator, short)
    assert response.status_code == 400
    assert response.json() == INVALID_TOKEN
    assert profile(client, lwa_emulator, short).status_code == 401


def test_already_expired_token(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token(expires_in=0)
    assert tokeninfo(client, lwa_emulator, token).json() == INVALID_TOKEN


def test_revoke(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    other = lwa_emulator.issue_token()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200

    lwa_emulator.revoke(token)

    assert tokeninfo(client, lwa_emulator, token).json() == INVALID_TOKEN
    assert profile(client, lwa_emulator, token).status_code == 401
    assert tokeninfo(client, lwa_emulator, other).status_code == 200
    assert USER_ID.fullmatch(lwa_emulator.customer_for(token).user_id)
    with pytest.raises(KeyError):
        lwa_emulator.revoke("Atza|never-issued")
    with pytest.raises(KeyError):
        lwa_emulator.customer_for("Atza|never-issued")


def test_aud_override(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.other")
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == "amzn1.application-oa2-client.other"
    default = tokeninfo(client, lwa_emulator, lwa_emulator.issue_token()).json()
    assert default["app_id"] != info["app_id"]


# -- profile -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "fields"),
    [
        (["profile"], {"user_id", "name", "email"}),
        (["profile:user_id"], {"user_id"}),
        (["postal_code"], {"user_id", "postal_code"}),
        (["profile", "postal_code"], {"user_id", "name", "email", "postal_code"}),
        (["profile:user_id", "postal_code", "other::scope"], {"user_id", "postal_code"}),
    ],
)
def test_scopes_decide_profile_fields(
    lwa_emulator: LWAEmulator, client: httpx.Client, scopes: list[str], fields: set[str]
) -> None:
    token = lwa_emulator.issue_token(scopes=scopes)
    customer = lwa_emulator.customer_for(token)
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert set(body) == fields
    for field in fields:
        assert body[field] == getattr(customer, field)


def test_profile_token_sources(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token(name="Zoë Ñandú")
    for headers in (
        {"Authorization": f"bearer {token}"},
        {"x-amz-access-token": token},
    ):
        response = client.get(lwa_emulator.profile_url, headers=headers)
        assert response.status_code == 200
        assert response.json()["name"] == "Zoë Ñandú"
    basic = client.get(lwa_emulator.profile_url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.json() == MISSING_TOKEN


def test_insufficient_scope(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token(scopes=["alexa::ask_skills:readwrite"])
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    response = profile(client, lwa_emulator, token)
    assert response.status_code == 401
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": (
            "The access token provided does not have access to the requested resource."
        ),
    }
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def test_customer_fields(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    grace = BUILTIN_CUSTOMERS[1]
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"], customer=grace, email="g@example.com"
    )
    assert lwa_emulator.customer_for(token) == Customer(
        grace.user_id, grace.name, "g@example.com", grace.postal_code
    )
    assert profile(client, lwa_emulator, token).json() == {
        "user_id": grace.user_id,
        "name": "Grace Hopper",
        "email": "g@example.com",
        "postal_code": grace.postal_code,
    }
    # Without a customer, each token gets a fresh one.
    a = lwa_emulator.customer_for(lwa_emulator.issue_token())
    b = lwa_emulator.customer_for(lwa_emulator.issue_token(user_id="amzn1.account.X"))
    assert a.user_id != b.user_id
    assert b.user_id == "amzn1.account.X"
    assert a.email.endswith("@example.com")
    for c in BUILTIN_CUSTOMERS:
        assert USER_ID.fullmatch(c.user_id)


def test_issue_token_validates(lwa_emulator: LWAEmulator) -> None:
    with pytest.raises(ValueError):
        lwa_emulator.issue_token(scopes=["two words"])
    with pytest.raises(ValueError):
        lwa_emulator.issue_token(expires_in=float("inf"))


# -- faults --------------------------------------------------------------------


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
    client: httpx.Client,
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


def test_retry_after_is_configurable(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    lwa_emulator.inject("503", endpoint="tokeninfo", retry_after=7)
    lwa_emulator.inject("throttled", endpoint="profile", retry_after=3)
    assert client.get(lwa_emulator.tokeninfo_url).headers["retry-after"] == "7"
    assert client.get(lwa_emulator.profile_url).headers["retry-after"] == "3"


def test_faults_apply_whatever_the_token(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    lwa_emulator.inject(Fault.UNAVAILABLE)
    assert client.get(lwa_emulator.tokeninfo_url).status_code == 503
    assert tokeninfo(client, lwa_emulator, "Atza|unknown").status_code == 503


def test_bad_json(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.BAD_JSON)
    for response in (tokeninfo(client, lwa_emulator, token), profile(client, lwa_emulator, token)):
        assert response.status_code == 200
        assert response.headers["content-type"] == JSON_TYPE
        assert int(response.headers["content-length"]) == len(response.content)
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)


def test_html(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.HTML, endpoint="tokeninfo")
    response = tokeninfo(client, lwa_emulator, token)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert profile(client, lwa_emulator, token).status_code == 200


def test_wrong_types(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.WRONG_TYPES)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == 123
    assert info["exp"] == [1]
    assert info["user_id"] is None
    body = profile(client, lwa_emulator, token).json()
    assert body["user_id"] == 5


def test_oversized(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.OVERSIZED, endpoint="tokeninfo", times=1)
    response = tokeninfo(client, lwa_emulator, token)
    assert response.status_code == 200
    assert len(response.content) >= 4 * 1024 * 1024
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert body["aud"] == lwa_emulator.client_id
    assert len(tokeninfo(client, lwa_emulator, token).content) < 1024


def test_slow_drip(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
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


def test_reset_then_normal(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.RESET, times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        tokeninfo(client, lwa_emulator, token)
    assert tokeninfo(client, lwa_emulator, token).status_code == 200
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
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


def _call_in_thread(url: str, token: str) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def call() -> None:
        with make_client(timeout=30.0) as c:
            try:
                outcome["response"] = c.get(url, headers={"x-amz-access-token": token})
            except httpx.HTTPError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def test_hang_until_clear_faults(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.HANG, endpoint="tokeninfo")
    thread, outcome = _call_in_thread(lwa_emulator.tokeninfo_url, token)
    assert lwa_emulator.wait_for_calls("tokeninfo", 1)
    thread.join(0.3)
    assert thread.is_alive(), "a hanging request must not be answered"
    # Other endpoints keep working while one request hangs.
    assert profile(client, lwa_emulator, token).status_code == 200

    lwa_emulator.clear_faults()
    thread.join(1.5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), httpx.RemoteProtocolError | httpx.ReadError)
    assert tokeninfo(client, lwa_emulator, token).status_code == 200


def test_hang_released_by_reset(lwa_emulator: LWAEmulator) -> None:
    lwa_emulator.inject(Fault.HANG, endpoint="profile", times=1)
    thread, outcome = _call_in_thread(lwa_emulator.profile_url, "Atza|x")
    assert lwa_emulator.wait_for_calls("profile", 1)
    lwa_emulator.reset()
    thread.join(1.5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), httpx.RemoteProtocolError | httpx.ReadError)


def test_hang_released_by_stop() -> None:
    lwa = LWAEmulator().start()
    token = lwa.issue_token()
    lwa.inject(Fault.HANG)
    calls = [_call_in_thread(lwa.tokeninfo_url, token) for _ in range(3)]
    assert lwa.wait_for_calls("tokeninfo", 3)

    start = time.monotonic()
    lwa.stop()
    assert time.monotonic() - start < 1.5
    for thread, outcome in calls:
        thread.join(max(0.0, 1.5 - (time.monotonic() - start)))
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), httpx.RemoteProtocolError | httpx.ReadError)
    assert time.monotonic() - start < 1.5
    with make_client() as c, pytest.raises(httpx.ConnectError):
        c.get(lwa.tokeninfo_url)


def test_stop_with_slow_drip_in_flight_is_prompt() -> None:
    lwa = LWAEmulator().start()
    token = lwa.issue_token()
    lwa.inject(Fault.SLOW_DRIP)
    thread, _ = _call_in_thread(lwa.tokeninfo_url, token)
    assert lwa.wait_for_calls("tokeninfo", 1)
    start = time.monotonic()
    lwa.stop()
    thread.join(1.5)
    assert not thread.is_alive()
    assert time.monotonic() - start < 1.5


def test_legacy_profile(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
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


def test_legacy_profile_with_profile_scope(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
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
    assert profile(client, lwa_emulator, "Atza|unknown").status_code == 401


def test_exp_string(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.EXP_STRING)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["exp"] in ("3599", "3600")
    assert isinstance(info["iat"], str)
    assert info["iat"].isdigit()
    assert profile(client, lwa_emulator, token).status_code == 200


def test_user_id_mismatch(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.USER_ID_MISMATCH)
    from_tokeninfo = tokeninfo(client, lwa_emulator, token).json()["user_id"]
    from_profile = profile(client, lwa_emulator, token).json()["user_id"]
    assert USER_ID.fullmatch(from_profile)
    assert from_profile != from_tokeninfo == lwa_emulator.customer_for(token).user_id


def test_down_then_recovery_on_the_same_port(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    base_url = lwa_emulator.base_url
    with make_client() as c:
        assert tokeninfo(c, lwa_emulator, token).status_code == 200
        lwa_emulator.inject(Fault.DOWN, endpoint="profile")  # endpoint is ignored
        # Even the pooled keep-alive connection is gone.
        with pytest.raises(httpx.ConnectError):
            tokeninfo(c, lwa_emulator, token)
        with pytest.raises(httpx.ConnectError):
            profile(c, lwa_emulator, token)
        lwa_emulator.clear_faults()
        assert lwa_emulator.base_url == base_url
        assert tokeninfo(c, lwa_emulator, token).status_code == 200

        lwa_emulator.inject(Fault.DOWN)
        with pytest.raises(httpx.ConnectError):
            tokeninfo(c, lwa_emulator, token)
        lwa_emulator.reset()
        assert tokeninfo(c, lwa_emulator, token).json() == INVALID_TOKEN
    assert lwa_emulator.calls == Counter(tokeninfo=1)
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.DOWN, times=1)


def test_times_then_normal(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=2)
    statuses = [tokeninfo(client, lwa_emulator, token).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert profile(client, lwa_emulator, token).status_code == 200
    assert lwa_emulator.calls == Counter(tokeninfo=3, profile=1)


def test_counted_faults_queue_ahead_of_the_standing_one(
    lwa_emulator: LWAEmulator, client: httpx.Client
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
        lwa_emulator.inject(Fault.HANG, endpoint="token")
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.HANG, times=0)
    with pytest.raises(ValueError):
        lwa_emulator.inject(Fault.EXP_STRING, endpoint="profile")
    lwa_emulator.inject("SERVER_ERROR", times=1)  # names work as well as values


# -- latency, counters, connections ---------------------------------------------


def test_latency(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
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
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.6, endpoint="tokeninfo")
    thread, outcome = _call_in_thread(lwa_emulator.tokeninfo_url, token)
    assert lwa_emulator.wait_for_calls("tokeninfo", 1)
    start = time.monotonic()
    assert profile(client, lwa_emulator, token).status_code == 200
    assert time.monotonic() - start < 0.5
    thread.join(3)
    response = outcome["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200


def test_calls_and_request_log(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    tokeninfo(client, lwa_emulator, token)
    tokeninfo(client, lwa_emulator, token)
    profile(client, lwa_emulator, token)
    client.post(lwa_emulator.base_url + "/_emulator/tokens", json={})
    client.get(lwa_emulator.base_url + "/nowhere")
    assert lwa_emulator.calls == Counter(tokeninfo=2, profile=1)

    log = lwa_emulator.requests
    assert [r.endpoint for r in log] == ["tokeninfo", "tokeninfo", "profile", "mint", "unknown"]
    assert [r.method for r in log] == ["GET", "GET", "GET", "POST", "GET"]
    assert log[0].target == "/auth/o2/tokeninfo"
    assert "x-amz-access-token" in log[0].header_names
    assert "authorization" in log[2].header_names
    assert all(name == name.lower() for r in log for name in r.header_names)
    assert token not in repr(log)
    assert lwa_emulator.token_in_url == 0


def test_keep_alive_reuses_one_connection(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    with make_client() as c:
        for _ in range(5):
            assert tokeninfo(c, lwa_emulator, token).status_code == 200
        # Error answers keep the connection open as well.
        assert c.get(lwa_emulator.tokeninfo_url).status_code == 400
        assert c.get(lwa_emulator.base_url + "/nowhere").status_code == 404
    assert lwa_emulator.connections == 1
    for _ in range(2):
        with make_client() as c:
            tokeninfo(c, lwa_emulator, token)
    assert lwa_emulator.connections == 3


def test_two_hundred_concurrent_requests(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3)

    # One client per request: a single httpx pool shared by 200 threads
    # serialises on its own lock and would measure httpx, not the server.
    def one() -> int:
        with make_client(timeout=10.0) as c:
            return tokeninfo(c, lwa_emulator, token).status_code

    with ThreadPoolExecutor(max_workers=200) as pool:
        start = time.monotonic()
        futures = [pool.submit(one) for _ in range(200)]
        assert lwa_emulator.wait_for_calls("tokeninfo", 200, timeout=10)
        statuses = [f.result() for f in futures]
        elapsed = time.monotonic() - start
    assert statuses == [200] * 200
    assert lwa_emulator.calls["tokeninfo"] == 200
    assert lwa_emulator.connections == 200
    assert elapsed < 3  # served in parallel, not 200 x 0.3 s
    assert not lwa_emulator.wait_for_calls("tokeninfo", 201, timeout=0.05)


# -- mint endpoint -------------------------------------------------------------


def test_mint_endpoint(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    response = client.post(
        lwa_emulator.base_url + "/_emulator/tokens",
        json={
            "scopes": ["profile", "postal_code"],
            "aud": "amzn1.application-oa2-client.js",
            "expires_in": 120,
            "name": "Grace",
            "postal_code": "10027",
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 120
    assert body["scope"] == "profile postal_code"
    token = body["access_token"]
    assert TOKEN.fullmatch(token)
    info = tokeninfo(client, lwa_emulator, token).json()
    assert info["aud"] == "amzn1.application-oa2-client.js"
    assert info["exp"] in (119, 120)
    person = profile(client, lwa_emulator, token).json()
    assert person["name"] == "Grace"
    assert person["postal_code"] == "10027"
    assert lwa_emulator.calls == Counter(tokeninfo=1, profile=1)

    default = client.post(lwa_emulator.base_url + "/_emulator/tokens").json()
    assert default["scope"] == "profile"
    assert default["expires_in"] == 3600
    assert tokeninfo(client, lwa_emulator, default["access_token"]).json()["aud"] == (
        lwa_emulator.client_id
    )


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1]", b'{"scopes": "a b", "expires_in": "x"}', b'{"aud": 5}'],
)
def test_mint_endpoint_rejects_bad_bodies(
    lwa_emulator: LWAEmulator, client: httpx.Client, body: bytes
) -> None:
    response = client.post(lwa_emulator.base_url + "/_emulator/tokens", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_wrong_method_and_unknown_path(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    response = client.post(lwa_emulator.tokeninfo_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert client.get(lwa_emulator.base_url + "/_emulator/tokens").status_code == 405
    missing = client.get(lwa_emulator.base_url + "/user/profile/extra")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == JSON_TYPE
    assert "error" in missing.json()


# -- authorize page and code flow ----------------------------------------------


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "client_id": "amzn1.application-oa2-client.demo",
        "scope": "profile postal_code",
        "response_type": "token",
        "redirect_uri": REDIRECT,
        "state": "xyz",
    }
    params.update(overrides)
    return params


def test_authorize_page(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    response = client.get(
        lwa_emulator.base_url + "/ap/oa",
        params=authorize_params(state='"><script>alert(1)</script>', scope="profile:user_id"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html;charset=UTF-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<title>Login with Amazon (emulator)</title>" in page
    assert 'id="lwa-signin"' in page
    for customer in ("Ada Lovelace", "Grace Hopper", "Alan Turing"):
        assert customer in page
    assert page.count('type="radio" name="customer"') == 3
    assert re.search(r'value="profile:user_id" checked', page)
    assert re.search(r'value="profile">', page)  # offered, not pre-checked
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in re.sub(r'value="http://127\.0\.0\.1:9/callback"', "", page)


def test_implicit_grant(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    # As a browser submits it: one ``scope`` field per ticked box.
    form: dict[str, str | list[str]] = {
        **authorize_params(customer="1", action="allow"),
        "scope": ["profile", "postal_code"],
    }
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=form)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert location.query == ""
    fragment = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert fragment.keys() == {"access_token", "token_type", "expires_in", "scope", "state"}
    assert fragment["token_type"] == "bearer"
    assert fragment["expires_in"] == "3600"
    assert fragment["scope"] == "profile postal_code"
    assert fragment["state"] == "xyz"
    token = fragment["access_token"]
    assert tokeninfo(client, lwa_emulator, token).json()["aud"] == (
        "amzn1.application-oa2-client.demo"
    )
    grace = BUILTIN_CUSTOMERS[1]
    assert profile(client, lwa_emulator, token).json() == {
        "user_id": grace.user_id,
        "name": grace.name,
        "email": grace.email,
        "postal_code": grace.postal_code,
    }


def test_cancel_redirects_with_access_denied(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    data = authorize_params(response_type="code", action="deny", scope="profile")
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["xyz"]


def test_authorization_code_flow(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    data = authorize_params(response_type="code", customer="2", state="s1")
    data["scope"] = "profile:user_id"
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.fragment == ""
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query.keys() == {"code", "scope", "state"}
    assert query["scope"] == "profile:user_id"
    assert query["state"] == "s1"

    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": REDIRECT,
        "client_id": "amzn1.application-oa2-client.demo",
        "client_secret": "ignored",
    }
    wrong = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={**exchange, "redirect_uri": "http://127.0.0.1:9/other"},
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"

    # A failed exchange burns the code, as a one-time code should.
    data["state"] = "s2"
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    exchange["code"] = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    tokens = client.post(lwa_emulator.base_url + "/auth/o2/token", data=exchange)
    assert tokens.status_code == 200
    body = tokens.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"].startswith("Atzr|")
    turing = BUILTIN_CUSTOMERS[2]
    assert profile(client, lwa_emulator, body["access_token"]).json() == {"user_id": turing.user_id}

    again = client.post(lwa_emulator.base_url + "/auth/o2/token", data=exchange)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"

    refreshed = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "amzn1.application-oa2-client.demo",
        },
    )
    assert refreshed.status_code == 200
    new_token = refreshed.json()["access_token"]
    assert new_token != body["access_token"]
    assert tokeninfo(client, lwa_emulator, new_token).json()["user_id"] == turing.user_id

    unsupported = client.post(
        lwa_emulator.base_url + "/auth/o2/token",
        data={"grant_type": "password", "client_id": "x"},
    )
    assert unsupported.json()["error"] == "unsupported_grant_type"
    assert lwa_emulator.calls == Counter(profile=1, tokeninfo=1)


def test_code_redirect_keeps_an_existing_query(
    lwa_emulator: LWAEmulator, client: httpx.Client
) -> None:
    data = authorize_params(response_type="code", redirect_uri="http://localhost:8080/cb?x=1")
    response = client.post(lwa_emulator.base_url + "/ap/oa", data=data)
    location = response.headers["location"]
    assert location.startswith("http://localhost:8080/cb?x=1&code=")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost@evil.example/cb",
        "http://evil.example/cb?http://127.0.0.1/",
        "javascript:alert(1)//127.0.0.1",
        "http://127.0.0.1:9/cb#fragment",
        "//127.0.0.1/cb",
        "",
    ],
)
def test_non_loopback_redirect_uri_is_rejected(
    lwa_emulator: LWAEmulator, client: httpx.Client, redirect_uri: str
) -> None:
    params = authorize_params(redirect_uri=redirect_uri)
    page = client.get(lwa_emulator.base_url + "/ap/oa", params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "loopback" in page.text
    submit = client.post(lwa_emulator.base_url + "/ap/oa", data={**params, "customer": "0"})
    assert submit.status_code == 400
    assert "location" not in submit.headers


@pytest.mark.parametrize("redirect_uri", ["http://localhost/cb", "http://[::1]:8000/cb"])
def test_loopback_redirect_uris_are_accepted(
    lwa_emulator: LWAEmulator, client: httpx.Client, redirect_uri: str
) -> None:
    params = authorize_params(redirect_uri=redirect_uri)
    assert client.get(lwa_emulator.base_url + "/ap/oa", params=params).status_code == 200


def test_authorize_rejects_unknown_scopes(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    params = authorize_params(scope="profile openid")
    assert client.get(lwa_emulator.base_url + "/ap/oa", params=params).status_code == 400


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(state=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_state_round_trips_through_the_implicit_grant(
    lwa_emulator_server: LWAEmulator, state: str
) -> None:
    with make_client() as c:
        page = c.get(lwa_emulator_server.base_url + "/ap/oa", params=authorize_params(state=state))
        assert page.status_code == 200
        assert f'name="state" value="{html.escape(state)}"' in page.text
        data = authorize_params(state=state)
        response = c.post(lwa_emulator_server.base_url + "/ap/oa", data=data)
    assert response.status_code == 302
    fragment = parse_qs(urlsplit(response.headers["location"]).fragment, keep_blank_values=True)
    assert fragment["state"] == [state]


# -- lifecycle, reset, secrecy ---------------------------------------------------


def test_reset_clears_everything(lwa_emulator: LWAEmulator, client: httpx.Client) -> None:
    token = lwa_emulator.issue_token()
    tokeninfo(client, lwa_emulator, token)
    client.get(lwa_emulator.tokeninfo_url, params={"access_token": token})
    lwa_emulator.inject(Fault.SERVER_ERROR)
    lwa_emulator.set_latency(0.5)
    assert lwa_emulator.connections == 1

    lwa_emulator.reset()

    assert lwa_emulator.calls == Counter()
    assert lwa_emulator.requests == []
    assert lwa_emulator.connections == 0
    assert lwa_emulator.token_in_url == 0
    start = time.monotonic()
    response = tokeninfo(client, lwa_emulator, token)
    assert time.monotonic() - start < 0.4
    assert response.json() == INVALID_TOKEN
    with pytest.raises(KeyError):
        lwa_emulator.customer_for(token)


def test_repr_and_output_never_show_tokens(
    lwa_emulator: LWAEmulator, client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    token = lwa_emulator.issue_token()
    tokeninfo(client, lwa_emulator, token)
    client.get(lwa_emulator.profile_url, params={"access_token": token})
    client.get(lwa_emulator.base_url + "/nowhere", params={"access_token": token})
    lwa_emulator.inject(Fault.RESET, times=1)
    with pytest.raises(httpx.HTTPError):
        tokeninfo(client, lwa_emulator, token)
    text = repr(lwa_emulator)
    assert token not in text
    assert "tokens=1" in text
    assert lwa_emulator.base_url in text
    out, err = capfd.readouterr()
    assert token not in out
    assert token not in err
    assert token[5:40] not in out + err


def test_lifecycle() -> None:
    lwa = LWAEmulator(client_id="amzn1.application-oa2-client.life")
    with pytest.raises(RuntimeError):
        _ = lwa.base_url
    assert "unbound" in repr(lwa)
    token = lwa.issue_token()
    with lwa:
        assert lwa.start() is lwa  # starting twice is harmless
        url = lwa.base_url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert url.endswith(f":{lwa.port}")
        with make_client() as c:
            assert tokeninfo(c, lwa, token).json()["aud"] == "amzn1.application-oa2-client.life"
    assert "stopped" in repr(lwa)
    with make_client() as c, pytest.raises(httpx.ConnectError):
        tokeninfo(c, lwa, token)
    with lwa, make_client() as c:
        assert lwa.base_url == url
        assert tokeninfo(c, lwa, token).status_code == 200
    with pytest.raises(RuntimeError):
        lwa.inject(Fault.DOWN)


def test_ipv6_loopback() -> None:
    try:
        lwa = LWAEmulator(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with lwa, make_client() as c:
        assert lwa.base_url.startswith("http://[::1]:")
        assert tokeninfo(c, lwa, lwa.issue_token()).status_code == 200
