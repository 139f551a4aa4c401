"""Cold tokens: latency against LWA's, calls per token, connection reuse.

The emulator answers both endpoints after a fixed latency L. A cold token
costs one round trip when tokeninfo and profile are in flight together, so
request latency ÷ L should be close to 1 (it would be 2 sequentially).

Run: ``python benchmarks/bench_cold_path.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import httpx2

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

LATENCY = 0.1


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _asgi(emulator: LWAEmulator, **options: Any) -> LWAMiddleware:
    return LWAMiddleware(
        _ok, client_id=emulator.client_id, api_base_url=emulator.base_url, **options
    )


async def _cold_latency_asgi(emulator: LWAEmulator, n: int) -> list[float]:
    app = _asgi(emulator)
    samples = []
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://app"
    ) as client:
        for _ in range(n):
            token = emulator.issue_token(scopes=["profile", "postal_code"])
            start = time.perf_counter()
            response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    await app.aclose()
    return samples


def _cold_latency_wsgi(emulator: LWAEmulator, n: int) -> list[float]:
    app = LWAWSGIMiddleware(_wsgi_ok, client_id=emulator.client_id, api_base_url=emulator.base_url)
    samples = []
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://app") as client:
        for _ in range(n):
            token = emulator.issue_token(scopes=["profile"])
            start = time.perf_counter()
            response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    app.close()
    return samples


async def _stampede(emulator: LWAEmulator, clients: int) -> tuple[dict[str, int], set[int]]:
    app = _asgi(emulator)
    token = emulator.issue_token(scopes=["profile"])
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://app"
    ) as client:
        responses = await asyncio.gather(
            *(
                client.get("/me", headers={"Authorization": f"Bearer {token}"})
                for _ in range(clients)
            )
        )
    await app.aclose()
    return dict(emulator.calls), {r.status_code for r in responses}


def _stampede_wsgi(emulator: LWAEmulator, threads: int) -> dict[str, int]:
    app = LWAWSGIMiddleware(_wsgi_ok, client_id=emulator.client_id, api_base_url=emulator.base_url)
    token = emulator.issue_token(scopes=["profile"])
    barrier = threading.Barrier(threads)
    statuses: list[int] = []

    def one() -> None:
        with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://a") as c:
            barrier.wait()
            statuses.append(c.get("/", headers={"Authorization": f"Bearer {token}"}).status_code)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    app.close()
    assert set(statuses) == {200}, statuses
    return dict(emulator.calls)


async def _rejected_calls(emulator: LWAEmulator) -> dict[str, float]:
    app = _asgi(emulator)
    out: dict[str, float] = {}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://app"
    ) as client:
        for label, token in (
            ("garbage token (not LWA-shaped)", "not-a-real-token-" + "x" * 40),
            ("LWA-shaped garbage token", "Atza|" + "A" * 400),
        ):
            emulator.reset()
            for _ in range(10):
                response = await client.get("/", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 401
            out[label] = sum(emulator.calls.values()) / 1
    await app.aclose()
    return out


def run(n: int = 15) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with LWAEmulator() as emulator:
        emulator.set_latency(LATENCY)
        asgi = asyncio.run(_cold_latency_asgi(emulator, n))
        wsgi = _cold_latency_wsgi(emulator, n)
        for label, samples in (("ASGI", asgi), ("WSGI", wsgi)):
            p50 = statistics.median(samples)
            rows.append(
                (
                    f"cold token, LWA latency L={LATENCY * 1000:.0f} ms ({label}): p50 ÷ L",
                    f"{p50 / LATENCY:.2f} (p50 {p50 * 1000:.0f} ms,"
                    f" max {max(samples) * 1000:.0f} ms)",
                    "≤ 1.1",
                )
            )

        emulator.reset()
        emulator.set_latency(LATENCY)
        calls, statuses = asyncio.run(_stampede(emulator, 200))
        rows.append(
            (
                "200 concurrent ASGI requests, one new token: LWA calls",
                f"tokeninfo {calls.get('tokeninfo', 0)}, profile {calls.get('profile', 0)}"
                f" (statuses {sorted(statuses)})",
                "1 + 1",
            )
        )
        emulator.reset()
        emulator.set_latency(LATENCY)
        calls = _stampede_wsgi(emulator, 48)
        rows.append(
            (
                "48 threads through WSGI, one new token: LWA calls",
                f"tokeninfo {calls.get('tokeninfo', 0)}, profile {calls.get('profile', 0)}",
                "1 + 1",
            )
        )

        emulator.reset()
        asyncio.run(_cold_latency_asgi(emulator, 20))
        rows.append(
            (
                "20 cold tokens one after another: TCP connections to LWA",
                f"{emulator.connections} (a request takes the connection seat given back"
                " last, so one lookup after another reuses the same warm connections)",
                "reused, not N",
            )
        )

        emulator.reset()
        rejected = asyncio.run(_rejected_calls(emulator))
        for label, calls_made in rejected.items():
            rows.append((f"{label}, sent 10 times: LWA calls", f"{calls_made:.0f}", "bounded"))
    return rows


def main() -> None:
    print("| figure | measured | target |\n|---|---|---|")
    for row in run():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
