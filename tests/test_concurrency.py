"""Single-flight: concurrent requests with one uncached token share one lookup."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

LATENCY = 0.2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _gather(
    app: LWAMiddleware, n: int, headers: dict[str, str], path: str = "/me"
) -> list[httpx2.Response]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(n)))
    await app.aclose()
    return list(responses)


def _threads(mw: LWAWSGIMiddleware, n: int, headers: dict[str, str]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        client = Client(mw)
        barrier.wait(timeout=10)
        response = client.get("/me", headers=headers)
        results[i] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.anyio
async def test_50_concurrent_asgi_requests_make_one_lookup(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    user_id = lwa_emulator.customer_for(token).user_id
    lwa_emulator.set_latency(LATENCY)
    app = make_asgi()
    responses = await _gather(app, 50, {"Authorization": f"Bearer {token}"})
    assert [r.status_code for r in responses] == [200] * 50
    assert {r.json()["identity"]["user_id"] for r in responses} == {user_id}
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    # Each follower either joined the lookup or, arriving late, hit the cache.
    assert app.stats.coalesced + app.stats.hits == 49


@pytest.mark.anyio
async def test_concurrent_asgi_requests_with_an_invalid_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    lwa_emulator.set_latency(LATENCY)
    app = make_asgi()
    responses = await _gather(app, 30, {"Authorization": "Bearer not-a-real-token"})
    assert [r.status_code for r in responses] == [401] * 30
    assert {r.json()["error"] for r in responses} == {"invalid_token"}
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 0


@pytest.mark.anyio
async def test_a_cancelled_leader_does_not_cancel_the_shared_lookup(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.set_latency(0.3)
    app = make_asgi()
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        leader = asyncio.ensure_future(client.get("/me", headers=headers))
        # The leader's lookup has reached LWA (and is held there by the latency).
        assert await asyncio.to_thread(lwa_emulator.wait_for_calls, "tokeninfo", 1, 30)
        followers = [asyncio.ensure_future(client.get("/me", headers=headers)) for _ in range(5)]
        for _ in range(10_000):  # until every follower joined the flight; no time passes
            if app.stats.coalesced == 5:
                break
            await asyncio.sleep(0)
        assert app.stats.coalesced == 5
        leader.cancel()
        responses = await asyncio.wait_for(asyncio.gather(*followers), timeout=30)
    await app.aclose()
    assert [r.status_code for r in responses] == [200] * 5
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_48_threads_through_wsgi_make_one_lookup(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    lwa_emulator.set_latency(LATENCY)
    mw = make_wsgi()
    results = _threads(mw, 48, {"Authorization": f"Bearer {token}"})
    mw.close()
    assert [status for status, _ in results] == [200] * 48
    assert {body["identity"]["user_id"] for _, body in results} == {user_id}
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert mw.stats.coalesced + mw.stats.hits == 47


def test_48_threads_with_an_invalid_token(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    lwa_emulator.set_latency(LATENCY)
    mw = make_wsgi()
    results = _threads(mw, 48, {"x-amz-access-token": "not-a-real-token"})
    mw.close()
    assert [status for status, _ in results] == [401] * 48
    assert {body["error"] for _, body in results} == {"invalid_token"}
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 0


def test_threads_with_an_lwa_shaped_invalid_token(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    lwa_emulator.set_latency(LATENCY)
    mw = make_wsgi()
    results = _threads(mw, 16, {"Authorization": "Bearer Atza|" + "k" * 400})
    mw.close()
    assert [status for status, _ in results] == [401] * 16
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] <= 1


@pytest.mark.anyio
async def test_mixed_policies_in_flight_asgi(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    # A request needing only tokeninfo (/uid) starts the lookup of a new
    # token; while it is in flight, more /uid requests and requests needing
    # the profile (/me) arrive. Every /me must get the full identity, and the
    # /me requests must still share one lookup between them.
    token = lwa_emulator.issue_token(scopes=["profile"], name="Mixed")
    lwa_emulator.set_latency(LATENCY)
    app = make_asgi()
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        first = asyncio.ensure_future(client.get("/uid", headers=headers))
        assert await asyncio.to_thread(lwa_emulator.wait_for_calls, "tokeninfo", 1, 5)
        paths = ["/uid", "/me"] * 10
        rest = await asyncio.gather(*(client.get(p, headers=headers) for p in paths))
        responses = [await first, *rest]
    await app.aclose()
    assert [r.status_code for r in responses] == [200] * 21
    for path, response in zip(paths, rest, strict=True):
        if path == "/me":
            assert response.json()["identity"]["name"] == "Mixed"
    calls = (lwa_emulator.calls["tokeninfo"], lwa_emulator.calls["profile"])
    # One lookup for the /uid requests, one (at most) for all the /me ones.
    assert calls[0] <= 2, calls
    assert calls[1] == 1, calls


def test_mixed_policies_in_flight_wsgi(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"], name="Mixed")
    lwa_emulator.set_latency(LATENCY)
    mw = make_wsgi()
    headers = {"Authorization": f"Bearer {token}"}
    paths = ["/uid"] + ["/uid", "/me"] * 8
    results: list[Any] = [None] * len(paths)

    def worker(i: int) -> None:
        response = Client(mw).get(paths[i], headers=headers)
        results[i] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(paths))]
    threads[0].start()
    assert lwa_emulator.wait_for_calls("tokeninfo", 1, 5)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout=20)
    mw.close()
    assert [status for status, _ in results] == [200] * len(paths)
    for path, (_, body) in zip(paths, results, strict=True):
        if path == "/me":
            assert body["identity"]["name"] == "Mixed"
    calls = (lwa_emulator.calls["tokeninfo"], lwa_emulator.calls["profile"])
    # One lookup for the /uid requests, one (at most) for all the /me ones.
    assert calls[0] <= 2, calls
    assert calls[1] == 1, calls
