"""The loopback HTTP server (:mod:`lwa_middleware.testing._server`).

Routing, counters, the request log, keep-alive, concurrency and binding.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from lwa_middleware.testing import LWAEmulator

from .emulator_support import (
    JSON_TYPE,
    make_client,
    profile,
    tokeninfo,
)

# -- routing -------------------------------------------------------------------


def test_wrong_method_and_unknown_path(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    response = client.post(lwa_emulator.tokeninfo_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert client.get(lwa_emulator.base_url + "/_emulator/tokens").status_code == 405
    missing = client.get(lwa_emulator.base_url + "/user/profile/extra")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == JSON_TYPE
    assert "error" in missing.json()


# -- counters, request log, connections ----------------------------------------


def test_calls_and_request_log(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
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
        assert lwa_emulator.wait_for_calls("tokeninfo", 200, timeout=30)
        statuses = [f.result() for f in futures]
        elapsed = time.monotonic() - start
    assert statuses == [200] * 200
    assert lwa_emulator.calls["tokeninfo"] == 200
    assert lwa_emulator.connections == 200
    assert elapsed < 20  # served in parallel, not 200 x 0.3 s = 60 s (generous: a loaded box)
    assert not lwa_emulator.wait_for_calls("tokeninfo", 201, timeout=0.05)


# -- binding -------------------------------------------------------------------


def test_ipv6_loopback() -> None:
    try:
        lwa = LWAEmulator(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with lwa, make_client() as c:
        assert lwa.base_url.startswith("http://[::1]:")
        assert tokeninfo(c, lwa, lwa.issue_token()).status_code == 200
