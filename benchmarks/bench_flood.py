"""A garbage-token flood against a healthy but slow LWA must not turn customers away.

The emulator answers after 100 ms and rejects every garbage token (400
``invalid_token``): LWA is up. A burst of 400 distinct garbage tokens arrives
at once: half random strings, half ``Atza|``-shaped unknown tokens of 360
characters (those cannot be told from a customer's before LWA answers). New
customers (fresh tokens from the emulator) keep arriving, one every 50 ms for
3 s, during and after the burst.

The middleware runs with a deliberately small in-flight cap (16 lookups) and
a 1 s timeout, so the burst saturates it. What must hold:

* the circuit breaker never opens (saturation and rejections are not LWA
  failures; an opening would refuse every customer for a whole cooldown);
* at least 95 % of the customers get 200.

ASGI is driven in-process (``httpx2.ASGITransport``, one task per request);
WSGI by direct calls from a pool of 50 threads, as a threaded server would.
Loopback only, bounded in count and time: 3 rounds of each, min/median/max.

Run: ``python benchmarks/bench_flood.py``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

LATENCY = 0.1
GARBAGE = 400
CUSTOMERS = 60
ARRIVAL_GAP = 0.05
THREADS = 50
OPTIONS: dict[str, Any] = {"max_concurrent_lookups": 16, "timeout": 1.0}


@dataclass
class Round:
    breaker_openings: int
    customers_ok: int
    customers: int
    lwa_calls: int
    garbage_statuses: dict[int, int]
    seconds: float

    @property
    def ratio(self) -> float:
        return self.customers_ok / self.customers


def garbage_tokens(count: int = GARBAGE) -> list[str]:
    """Distinct: half random non-``Atza|`` strings, half ``Atza|``-shaped (>= 350 chars)."""
    plain = [secrets.token_urlsafe(24) for _ in range(count - count // 2)]
    shaped = ["Atza|" + secrets.token_urlsafe(300)[:355] for _ in range(count // 2)]
    tokens = plain + shaped
    secrets.SystemRandom().shuffle(tokens)
    return tokens


def _openings(mw: LWAMiddleware | LWAWSGIMiddleware) -> Callable[[], int]:
    """Breaker openings so far: ``stats.breaker_opened``, or counted by hand on
    versions without it (so the same script measures the code before the fix)."""
    if hasattr(mw.stats, "breaker_opened"):
        return lambda: int(mw.stats.breaker_opened)
    breaker = mw.resolver.breaker
    count = [0]
    failure = breaker.failure

    def counting() -> Any:
        was_open = breaker.is_open
        result = failure()
        if not was_open and breaker.is_open:
            count[0] += 1
        return result

    breaker.failure = counting  # type: ignore[method-assign]
    return lambda: count[0]


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _fresh(emulator: LWAEmulator) -> list[str]:
    emulator.reset()
    emulator.set_latency(LATENCY)
    return [emulator.issue_token() for _ in range(CUSTOMERS)]


async def _asgi_round(emulator: LWAEmulator) -> Round:
    customers = _fresh(emulator)
    garbage = garbage_tokens()
    mw = LWAMiddleware(
        _ok, client_id=emulator.client_id, api_base_url=emulator.base_url, **OPTIONS
    )
    openings = _openings(mw)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=mw), base_url="http://app", timeout=60
    ) as client:

        async def get(token: str, delay: float = 0.0) -> int:
            if delay:
                await asyncio.sleep(delay)
            response = await client.get("/", headers={"Authorization": f"Bearer {token}"})
            return response.status_code

        started = time.perf_counter()
        flood = [asyncio.ensure_future(get(t)) for t in garbage]
        arrivals = [
            asyncio.ensure_future(get(t, 0.02 + i * ARRIVAL_GAP)) for i, t in enumerate(customers)
        ]
        statuses = await asyncio.gather(*flood)
        served = await asyncio.gather(*arrivals)
        seconds = time.perf_counter() - started
    await mw.aclose()
    return Round(
        openings(),
        served.count(200),
        len(customers),
        sum(emulator.calls.values()),
        _counted(statuses),
        seconds,
    )


def _environ(token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "app",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def _wsgi_round(emulator: LWAEmulator) -> Round:
    customers = _fresh(emulator)
    garbage = garbage_tokens()
    mw = LWAWSGIMiddleware(
        _wsgi_ok, client_id=emulator.client_id, api_base_url=emulator.base_url, **OPTIONS
    )
    openings = _openings(mw)

    def get(token: str) -> int:
        status: list[str] = []
        body = mw(_environ(token), lambda s, headers, exc_info=None: status.append(s))
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()
        return int(status[0].split()[0])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        flood = [pool.submit(get, t) for t in garbage]
        arrivals: list[Future[int]] = []

        def feed() -> None:
            # Customers join the same server pool as the flood, on a schedule.
            for i, token in enumerate(customers):
                time.sleep(max(0.0, started + 0.02 + i * ARRIVAL_GAP - time.perf_counter()))
                arrivals.append(pool.submit(get, token))

        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join()
        statuses = [f.result() for f in flood]
        served = [f.result() for f in arrivals]
    seconds = time.perf_counter() - started
    mw.close()
    return Round(
        openings(),
        served.count(200),
        len(customers),
        sum(emulator.calls.values()),
        _counted(statuses),
        seconds,
    )


def _counted(statuses: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for status in statuses:
        out[status] = out.get(status, 0) + 1
    return dict(sorted(out.items()))


def _spread(values: list[float], fmt: str) -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def run(rounds: int = 3) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    # One throttled "shedding" warning per round would only interleave with the table.
    log = logging.getLogger("lwa_middleware")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with LWAEmulator() as emulator:
            results = {
                "ASGI": [asyncio.run(_asgi_round(emulator)) for _ in range(rounds)],
                "WSGI": [_wsgi_round(emulator) for _ in range(rounds)],
            }
    finally:
        log.setLevel(level)
    setup = (
        f"{GARBAGE} garbage tokens at once + {CUSTOMERS} new customers over"
        f" {CUSTOMERS * ARRIVAL_GAP:.0f} s, LWA latency {LATENCY * 1000:.0f} ms,"
        f" cap {OPTIONS['max_concurrent_lookups']}, timeout {OPTIONS['timeout']:.0f} s"
    )
    for label, got in results.items():
        where = f"{label}, {setup}" if label == "ASGI" else f"{label} ({THREADS} threads), same"
        rows.append(
            (
                f"flood, {where}: breaker openings (min/median/max of {rounds})",
                _spread([r.breaker_openings for r in got], "{:.0f}"),
                "0",
            )
        )
        rows.append(
            (
                f"flood, {label}: customers served 200 (min/median/max)",
                _spread([100 * r.ratio for r in got], "{:.1f} %")
                + f" of {CUSTOMERS}; garbage answered {got[0].garbage_statuses}",
                "≥ 95 %",
            )
        )
        rows.append(
            (
                f"flood, {label}: LWA calls (min/median/max)",
                _spread([r.lwa_calls for r in got], "{:.0f}")
                + f" (round took {_spread([r.seconds for r in got], '{:.1f}')} s)",
                "(context)",
            )
        )
    return rows


def main() -> None:
    print("| figure | measured | target |\n|---|---|---|")
    for row in run():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
