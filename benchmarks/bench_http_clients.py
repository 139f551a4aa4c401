"""CPU per HTTPS GET, HTTP client by HTTP client, side by side in one run (issue 23).

What the login storm (``bench_scale.py``: 2,000 cold tokens, 50 clients, TLS,
L = 20 ms) spends most of its CPU on is the HTTP client: a lookup is two GETs
to LWA. This measures, for each candidate, the CPU time of this process
(``time.process_time``, every thread) per HTTPS GET with 100 GETs in flight
(a lookup's two for each of 50 clients) to the emulator in its own process
(``remote_emulator.py``), over pooled keep-alive connections, after a warm-up
that opens them. Candidates run round-robin, so their figures are comparable
on a loaded machine; min/median/max over rounds.

* ``httpx2 asyncio``: ``httpx2.AsyncClient`` on one asyncio loop (what the
  ASGI adapter used before);
* ``httpx2 threads``: ``httpx2.Client`` from 100 threads (the WSGI adapter before);
* ``urllib3 threads``: one ``urllib3.HTTPSConnectionPool`` from 100 threads;
* ``aiohttp asyncio``: one ``aiohttp.ClientSession`` on one asyncio loop;
* ``aiohttp, 100 threads -> 1 I/O loop``: 100 threads each hand their GET to one
  asyncio loop in its own thread and wait (what the WSGI adapter does now);
* ``pycurl threads``: only if pycurl is installed (it is not a dependency).

1 / (2 x CPU per GET) is the most lookups/s one core allows with that client.

Run: ``python benchmarks/bench_http_clients.py [--rounds N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale import threaded_rate  # noqa: E402

IN_FLIGHT = 100
LATENCY = 0.02
THEORY = 2500.0  # lookups/s: 50 clients / L


def _context(lwa: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=lwa.ca_file)


def _threads(get: Callable[[str], int], tokens: list[str]) -> None:
    """``get(token)`` for every token, from IN_FLIGHT threads."""
    _, failed = threaded_rate(get, tokens, IN_FLIGHT)
    assert failed == 0


async def _tasks(get: Callable[[str], Any], tokens: list[str]) -> None:
    feed: Iterator[str] = iter(tokens)

    async def worker() -> None:
        for token in feed:
            assert await get(token) == 200

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def _timed(run: Callable[[list[str]], None], lwa: Any, requests: int) -> float:
    run(lwa.mint(2 * IN_FLIGHT))  # warm-up: opens the pooled connections
    tokens = lwa.mint(requests)
    started = time.process_time()
    run(tokens)
    return (time.process_time() - started) / requests * 1e6


def httpx2_asyncio(lwa: Any, requests: int) -> float:
    import httpx2

    url = lwa.base_url + "/auth/o2/tokeninfo"

    async def main() -> float:
        # Shaped as the driver shaped them: clients of 4 connections each.
        limits = httpx2.Limits(max_connections=4, max_keepalive_connections=4)
        context = _context(lwa)
        pool = [httpx2.AsyncClient(verify=context, limits=limits) for _ in range(IN_FLIGHT // 2)]
        turn = iter(range(10**9))

        async def get(token: str) -> int:
            client = pool[next(turn) % len(pool)]
            response = await client.get(url, headers={"x-amz-access-token": token})
            return response.status_code

        spent = await _atimed(get, lwa, requests)
        for client in pool:
            await client.aclose()
        return spent

    return asyncio.run(main())


async def _atimed(get: Callable[[str], Any], lwa: Any, requests: int) -> float:
    await _tasks(get, lwa.mint(2 * IN_FLIGHT))
    tokens = lwa.mint(requests)
    started = time.process_time()
    await _tasks(get, tokens)
    return (time.process_time() - started) / requests * 1e6


def httpx2_threads(lwa: Any, requests: int) -> float:
    import httpx2

    url = lwa.base_url + "/auth/o2/tokeninfo"
    limits = httpx2.Limits(max_connections=4, max_keepalive_connections=4)
    context = _context(lwa)
    pool = [httpx2.Client(verify=context, limits=limits) for _ in range(IN_FLIGHT // 2)]
    turn = iter(range(10**9))

    def get(token: str) -> int:
        client = pool[next(turn) % len(pool)]
        return client.get(url, headers={"x-amz-access-token": token}).status_code

    try:
        return _timed(lambda tokens: _threads(get, tokens), lwa, requests)
    finally:
        for client in pool:
            client.close()


def urllib3_threads(lwa: Any, requests: int) -> float:
    import urllib3

    pool = urllib3.connection_from_url(
        lwa.base_url, maxsize=IN_FLIGHT, block=True, ssl_context=_context(lwa)
    )

    def get(token: str) -> int:
        response = pool.request("GET", "/auth/o2/tokeninfo", headers={"x-amz-access-token": token})
        return int(response.status)

    try:
        return _timed(lambda tokens: _threads(get, tokens), lwa, requests)
    finally:
        pool.close()


def _aiohttp_session(lwa: Any) -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT, ssl=_context(lwa)))


def aiohttp_asyncio(lwa: Any, requests: int) -> float:
    url = lwa.base_url + "/auth/o2/tokeninfo"

    async def main() -> float:
        async with _aiohttp_session(lwa) as session:

            async def get(token: str) -> int:
                async with session.get(url, headers={"x-amz-access-token": token}) as response:
                    await response.read()
                    return int(response.status)

            return await _atimed(get, lwa, requests)

    return asyncio.run(main())


def aiohttp_loop_thread(lwa: Any, requests: int) -> float:
    url = lwa.base_url + "/auth/o2/tokeninfo"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> Any:
        return _aiohttp_session(lwa)

    session = asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def aget(token: str) -> int:
        async with session.get(url, headers={"x-amz-access-token": token}) as response:
            await response.read()
            return int(response.status)

    def get(token: str) -> int:
        result: concurrent.futures.Future[int] = asyncio.run_coroutine_threadsafe(aget(token), loop)
        return result.result()

    try:
        return _timed(lambda tokens: _threads(get, tokens), lwa, requests)
    finally:
        asyncio.run_coroutine_threadsafe(session.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def pycurl_threads(lwa: Any, requests: int) -> float:
    import io

    import pycurl

    url = lwa.base_url + "/auth/o2/tokeninfo"
    local = threading.local()

    def get(token: str) -> int:
        curl = getattr(local, "curl", None)
        if curl is None:
            curl = local.curl = pycurl.Curl()
            curl.setopt(pycurl.CAINFO, lwa.ca_file)
        body = io.BytesIO()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTPHEADER, ["x-amz-access-token: " + token])
        curl.setopt(pycurl.WRITEDATA, body)
        curl.perform()
        return int(curl.getinfo(pycurl.RESPONSE_CODE))

    return _timed(lambda tokens: _threads(get, tokens), lwa, requests)


CANDIDATES: dict[str, Callable[[Any, int], float]] = {
    "httpx2 asyncio": httpx2_asyncio,
    "httpx2 threads": httpx2_threads,
    "urllib3 threads": urllib3_threads,
    "aiohttp asyncio": aiohttp_asyncio,
    f"aiohttp, {IN_FLIGHT} threads -> 1 I/O loop": aiohttp_loop_thread,
    "pycurl threads": pycurl_threads,
}


def _spread(values: list[float], fmt: str) -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def run(rounds: int = 3, requests: int = 2000) -> list[tuple[str, str, str]]:
    from remote_emulator import RemoteEmulator

    results: dict[str, list[float]] = {}
    order = list(CANDIDATES)
    with RemoteEmulator(tls=True, latency=LATENCY) as lwa:
        for _ in range(rounds):
            for name in order:
                with contextlib.suppress(ImportError):  # pycurl is optional
                    results.setdefault(name, []).append(CANDIDATES[name](lwa, requests))
            order.append(order.pop(0))
    rows = []
    for name, samples in results.items():
        if not samples:
            continue
        bound = [1e6 / (2 * us) / THEORY for us in samples]
        rows.append(
            (
                f"HTTP client alone, {IN_FLIGHT} HTTPS GETs in flight, {name}: CPU µs per GET "
                "(and the lookups/s ÷ 2,500 one core allows, 2 GETs per lookup)",
                f"{_spread(samples, '{:.0f}')} µs ({_spread(bound, '{:.2f}')})",
                "(context: choosing the HTTP stack)",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print("| figure | measured | target |\n|---|---|---|")
    for row in run(args.rounds, args.requests):
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
