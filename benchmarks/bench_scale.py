"""Cold tokens at scale, over TLS: lookups/s against the theoretical bound.

2,000 distinct new tokens, 50 concurrent clients, LWA latency L = 20 ms, the
emulator serving HTTPS in its own process (``remote_emulator.py``). A lookup
sends tokeninfo and profile in parallel, so it costs ~1 L and 50 clients can
at best do 50 / L = 2,500 lookups/s; the figure is measured ÷ that bound.
It also counts the TCP connections LWA accepted (pooled clients reuse them).

Variants run round-robin in one process, so their ratios are comparable:

* HTTP stack: aiohttp (the runtime's, issue 23) or httpx2 in clients of
  ``SHARD_CONNECTIONS`` connections (the runtime's before it), switched by
  ``lwa_middleware.upstream.AIOHTTP``;
* ASGI (50 asyncio tasks calling the app directly) or WSGI (50 threads calling
  it directly, as a threaded server would).

``revalidate()`` routes (every request asks LWA) are compared with a naive
resolver written as Amazon's sample code does it: for each request a fresh
``httpx2.get`` to tokeninfo, then one to profile.

Run: ``python benchmarks/bench_scale.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2

import lwa_middleware._engine._http as _http
import lwa_middleware._engine.upstream as upstream
from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, revalidate

CLIENTS = 50
TOKENS = 2000
LATENCY = 0.02
THEORY = CLIENTS / LATENCY  # lookups/s: each lookup costs ~1 L


DEFAULT_SHARD = _http.SHARD_CONNECTIONS
#: HTTP stacks compared: name -> upstream.AIOHTTP.
STACKS = {
    f"httpx2, pools of {DEFAULT_SHARD} (before issue 23)": False,
    "aiohttp (issue 23)": True,
}


def _use(aiohttp: bool) -> None:
    upstream.AIOHTTP = aiohttp


async def _asgi_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


def _options(lwa: Any, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": lwa.client_id,
        "api_base_url": lwa.base_url,
        "verify": lwa.ca_file,
        **extra,
    }


async def _asgi_run(app: LWAMiddleware, tokens: list[str], clients: int) -> tuple[float, list[int]]:
    statuses: list[int] = []
    feed: Iterator[str] = iter(tokens)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def client() -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        for token in feed:
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/",
                "query_string": b"",
                "headers": [(b"authorization", b"Bearer " + token.encode())],
            }
            await app(scope, receive, send)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, statuses


def asgi_rate(app: LWAMiddleware, tokens: list[str], clients: int = CLIENTS) -> tuple[float, int]:
    async def main() -> tuple[float, list[int]]:
        try:
            return await _asgi_run(app, tokens, clients)
        finally:
            await app.aclose()

    seconds, statuses = asyncio.run(main())
    return len(tokens) / seconds, sum(s != 200 for s in statuses)


def threaded_rate(
    call: Callable[[str], int], tokens: list[str], clients: int = CLIENTS
) -> tuple[float, int]:
    feed = iter(tokens)
    lock = threading.Lock()
    bad = [0]

    def worker() -> None:
        while True:
            with lock:
                token = next(feed, None)
            if token is None:
                return
            if call(token) != 200:
                with lock:
                    bad[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(tokens) / (time.perf_counter() - start), bad[0]


def wsgi_call(app: LWAWSGIMiddleware) -> Callable[[str], int]:
    def call(token: str) -> int:
        status: list[str] = []
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "HTTP_AUTHORIZATION": "Bearer " + token,
        }
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))  # type: ignore[misc]
        return int(status[0][:3])

    return call


def naive_call(lwa: Any) -> Callable[[str], int]:
    """Amazon's sample code: a fresh request to tokeninfo, check aud, then profile."""

    def call(token: str) -> int:
        info = httpx2.get(
            lwa.base_url + "/auth/o2/tokeninfo",
            headers={"x-amz-access-token": token},
            verify=lwa.ca_file,
        )
        if info.status_code != 200 or info.json().get("aud") != lwa.client_id:
            return 401
        profile = httpx2.get(
            lwa.base_url + "/user/profile",
            headers={"Authorization": "bearer " + token},
            verify=lwa.ca_file,
        )
        return 200 if profile.status_code == 200 else 503

    return call


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def measure(
    lwa: Any, rounds: int, variants: dict[str, Callable[[], tuple[float, int, int]]]
) -> dict[str, list[tuple[float, int, int]]]:
    """Each variant returns (rate, errors, connections opened); round-robin."""
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        for name in order:
            results[name].append(variants[name]())
        order.append(order.pop(0))
    return results


def cold_variants(
    lwa: Any,
    stacks: dict[str, bool],
    cpu: dict[str, list[float]] | None = None,
    calls: dict[str, list[float]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Variant name -> run; ``cpu`` (if given) collects each run's CPU ms per
    lookup, ``calls`` its LWA calls per token."""
    variants: dict[str, Any] = {}

    def counted(name: str, run: Callable[[list[str]], tuple[float, int]], aiohttp: bool) -> Any:
        def go() -> tuple[float, int, int]:
            tokens = lwa.mint(TOKENS)
            _use(aiohttp)
            try:
                before, asked = lwa.stats()
                started = time.process_time()  # this process, every thread
                rate, errors = run(tokens)
                spent = time.process_time() - started
                after, answered = lwa.stats()
            finally:
                _use(True)
            if cpu is not None:
                cpu.setdefault(name, []).append(spent / len(tokens) * 1e3)
            if calls is not None:
                made = sum(answered.values()) - sum(asked.values())
                calls.setdefault(name, []).append(made / len(tokens))
            return rate, errors, after - before

        return go

    def asgi_run(t: list[str]) -> tuple[float, int]:
        return asgi_rate(LWAMiddleware(_asgi_ok, **_options(lwa, **options)), t)

    def wsgi_run(t: list[str]) -> tuple[float, int]:
        app = LWAWSGIMiddleware(_wsgi_ok, **_options(lwa, **options))
        try:
            return threaded_rate(wsgi_call(app), t)
        finally:
            app.close()

    for name, aiohttp in stacks.items():
        for adapter, run in (("ASGI", asgi_run), ("WSGI", wsgi_run)):
            label = f"{name}, {adapter}"
            variants[label] = counted(label, run, aiohttp)
    return variants


def cold_rows(lwa: Any, rounds: int) -> list[tuple[str, str, str]]:
    cpu: dict[str, list[float]] = {}
    calls: dict[str, list[float]] = {}
    results = measure(lwa, rounds, cold_variants(lwa, STACKS, cpu, calls))
    rows = []
    for name, samples in results.items():
        rates = [r / THEORY for r, _, _ in samples]
        rows.append(
            (
                f"{TOKENS} cold tokens, {CLIENTS} clients, TLS, L={LATENCY * 1000:.0f} ms, "
                f"{name}: lookups/s ÷ {THEORY:,.0f}",
                f"{_spread(rates)} ({_spread([r for r, _, _ in samples], '{:,.0f}')}/s; "
                f"non-200 {max(e for _, e, _ in samples)}; LWA connections "
                f"{_spread([float(c) for _, _, c in samples], '{:.0f}')}; CPU per lookup "
                f"{_spread(cpu[name])} ms; LWA calls per token {_spread(calls[name])})",
                "≥ 0.5; connections ≤ pool",
            )
        )
    return [*rows, raw_httpx2_row(lwa, rounds)]


def raw_httpx2_row(lwa: Any, rounds: int, requests: int = 2000) -> tuple[str, str, str]:
    """What stands in the way: httpx2's own CPU per HTTPS GET, no middleware.

    100 requests in flight (a lookup's two, for 50 clients) over pooled
    clients shaped as the runtime's, on one asyncio loop, as the ASGI adapter
    runs. A lookup needs two such requests, so 1 / (2 x this) is the most
    lookups/s one core can do with httpx2, whatever the middleware does.
    """

    async def once() -> float:
        context = ssl.create_default_context(cafile=lwa.ca_file)
        clients, connections = upstream.pool_shape(_settings(lwa))
        pool = [
            httpx2.AsyncClient(
                verify=context,
                limits=httpx2.Limits(
                    max_connections=connections, max_keepalive_connections=connections
                ),
            )
            for _ in range(clients)
        ]
        url = lwa.base_url + "/auth/o2/tokeninfo"
        turn = iter(range(10**9))

        async def go(tokens: Iterator[str]) -> None:
            for token in tokens:
                client = pool[next(turn) % len(pool)]
                await client.get(url, headers={"x-amz-access-token": token})

        warm = iter(lwa.mint(300))
        await asyncio.gather(*(go(warm) for _ in range(2 * CLIENTS)))
        feed = iter(lwa.mint(requests))
        started = time.process_time()
        await asyncio.gather(*(go(feed) for _ in range(2 * CLIENTS)))
        spent = time.process_time() - started
        for client in pool:
            await client.aclose()
        return spent / requests * 1e3

    per_request = [asyncio.run(once()) for _ in range(rounds)]
    bound = [1e3 / (2 * ms) / THEORY for ms in per_request]
    return (
        f"what stands in the way: httpx2 alone, {2 * CLIENTS} HTTPS GETs in flight, one "
        "asyncio loop: CPU per request (and the lookups/s ÷ 2,500 one core allows, 2 per lookup)",
        f"{_spread(per_request, '{:.3f}')} ms ({_spread(bound)})",
        "(context)",
    )


def _settings(lwa: Any) -> Any:
    from lwa_middleware._engine.config import Settings

    return Settings.from_options(**_options(lwa))


def revalidate_rows(lwa: Any, rounds: int, requests: int = 600) -> list[tuple[str, str, str]]:
    tokens = lwa.mint(CLIENTS)
    routes = {"/**": revalidate()}

    def repeat() -> list[str]:
        return [tokens[i % len(tokens)] for i in range(requests)]

    def asgi() -> tuple[float, int, int]:
        app = LWAMiddleware(_asgi_ok, **_options(lwa, routes=routes))
        rate, errors = asgi_rate(app, repeat())
        return rate, errors, 0

    def wsgi() -> tuple[float, int, int]:
        app = LWAWSGIMiddleware(_wsgi_ok, **_options(lwa, routes=routes))
        try:
            rate, errors = threaded_rate(wsgi_call(app), repeat())
        finally:
            app.close()
        return rate, errors, 0

    def naive() -> tuple[float, int, int]:
        rate, errors = threaded_rate(naive_call(lwa), repeat()[: requests // 3])
        return rate, errors, 0

    results = measure(lwa, rounds, {"ASGI": asgi, "WSGI": wsgi, "naive": naive})
    naive_rates = [r for r, _, _ in results["naive"]]
    rows = []
    for name in ("ASGI", "WSGI"):
        ratios = [r / n for (r, _, _), n in zip(results[name], naive_rates, strict=True)]
        rows.append(
            (
                f"revalidate() route, {CLIENTS} clients, TLS, {name}: requests/s ÷ naive "
                "(fresh httpx2.get per call, Amazon's sample code)",
                f"{_spread(ratios)} ({statistics.median(r for r, _, _ in results[name]):,.0f}"
                f" vs {statistics.median(naive_rates):,.0f} req/s)",
                "≥ 3",
            )
        )
    return rows


def _trust_bundle(lwa: Any) -> str:
    """A CA bundle as big as a real one (certifi's, when installed) plus the
    emulator's CA: what building the default SSL context costs, against our LWA."""
    parts = []
    with contextlib.suppress(ImportError):
        import certifi

        parts.append(Path(certifi.where()).read_text())
    parts.append(Path(lwa.ca_file).read_text())
    fd, path = tempfile.mkstemp(suffix=".pem")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(parts))
    return path


def first_token_rows(lwa: Any, rounds: int) -> list[tuple[str, str, str]]:
    """A fresh worker's first token (its own interpreter each time) ÷ L."""
    bundle = _trust_bundle(lwa)
    script = str(Path(__file__).resolve().parent / "first_token.py")
    variants = [(a, m) for a in ("asgi", "wsgi") for m in ("lazy", "warm")]
    results: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    try:
        for _ in range(rounds):
            for adapter, mode in variants:
                (token,) = lwa.mint(1)
                out = subprocess.run(
                    [sys.executable, script, adapter, mode, lwa.base_url, bundle,
                     lwa.client_id, token],
                    capture_output=True, text=True, check=True,
                ).stdout
                results[adapter, mode].append(float(out.strip().splitlines()[-1]) / LATENCY)
            variants.append(variants.pop(0))
    finally:
        os.remove(bundle)
    rows = []
    for adapter in ("asgi", "wsgi"):
        how = "lifespan startup" if adapter == "asgi" else "at construction"
        rows.append(
            (
                f"first token of a fresh {adapter.upper()} worker, in process, TLS,"
                f" L={LATENCY * 1000:.0f} ms: latency ÷ L, warm start ({how})",
                f"{_spread(results[adapter, 'warm'])} (without warm start: "
                f"{_spread(results[adapter, 'lazy'])})",
                "(context: real servers, bench_first_token.py)",
            )
        )
    return rows


def run(rounds: int = 3) -> list[tuple[str, str, str]]:
    from remote_emulator import RemoteEmulator

    with RemoteEmulator(tls=True, latency=LATENCY) as lwa:
        return (
            cold_rows(lwa, rounds)
            + revalidate_rows(lwa, rounds)
            + first_token_rows(lwa, max(rounds, 5))
        )


def cold_only(rounds: int) -> list[tuple[str, str, str]]:
    from remote_emulator import RemoteEmulator

    with RemoteEmulator(tls=True, latency=LATENCY) as lwa:
        return cold_rows(lwa, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="only the cold-token storm rows")
    args = parser.parse_args()
    print("| figure | measured | target |\n|---|---|---|")
    for row in cold_only(args.rounds) if args.cold else run(args.rounds):
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
