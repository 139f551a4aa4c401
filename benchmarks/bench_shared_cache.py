"""The shared Redis cache: LWA calls saved across workers, and what a hit costs.

Starts its own ``redis-server`` and LWA emulator (latency 50 ms per answer),
then measures:

1. **Cold tokens across 4 worker processes.** Four separate uvicorn
   processes; each new token is sent to all four at once. Compared: no
   Redis, Redis without the lease, Redis with the lease (the default). Shows
   LWA calls per token and the latency of those requests.
2. **A Redis hit versus an in-process hit**, side by side in one run,
   through the middleware called directly (no HTTP server), ASGI and WSGI.
   The Redis-hit middleware has ``cache_maxsize=1`` and alternates two
   tokens, so every request misses in process and hits Redis.
3. **A Redis hit ÷ one plain GET round trip** (issue 23), with
   ``cache_key_secret`` (the AES-GCM envelope), ASGI against redis-py's
   asyncio ``GET`` and WSGI against its blocking ``GET``, interleaved in
   rounds in one run: min / median / max of the rounds' µs per request.

Run: ``python benchmarks/bench_shared_cache.py`` (about 30 s; needs
``redis-server`` on ``PATH``); ``--ratio-only`` runs part 3 alone. Prints
Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import httpx2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from shared_cache_support import RedisServer, Workers, redis_binary

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

LATENCY = 0.05
WORKERS = 4


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cold_bursts(
    emulator: LWAEmulator, urls: list[str], prefix: str, tokens: int
) -> tuple[float, float, list[float], int]:
    """Send each of ``tokens`` new tokens to every worker at once.

    :returns: tokeninfo calls per token, profile calls per token, latencies,
        non-200 answers.
    """
    clients = [httpx2.Client(timeout=10) for _ in urls]
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    before = dict(emulator.calls)
    try:
        # Warm the connections (to the worker, and the worker's to LWA and Redis).
        for client, url in zip(clients, urls, strict=True):
            warm = emulator.issue_token()
            client.get(url + prefix + "/me", headers={"Authorization": f"Bearer {warm}"})
        before = dict(emulator.calls)
        for _ in range(tokens):
            token = emulator.issue_token()
            barrier = threading.Barrier(len(urls))

            def hit(client: httpx2.Client, url: str, token: str = token,
                    barrier: threading.Barrier = barrier) -> None:
                nonlocal failures
                barrier.wait(timeout=10)
                started = time.perf_counter()
                response = client.get(
                    url + prefix + "/me", headers={"Authorization": f"Bearer {token}"}
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    failures += response.status_code != 200

            threads = [
                threading.Thread(target=hit, args=(client, url))
                for client, url in zip(clients, urls, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=15)
    finally:
        for client in clients:
            client.close()
    tokeninfo = (emulator.calls["tokeninfo"] - before.get("tokeninfo", 0)) / tokens
    profile = (emulator.calls["profile"] - before.get("profile", 0)) / tokens
    return tokeninfo, profile, latencies, failures


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/me", "raw_path": b"/me",
        "query_string": b"", "root_path": "",
        "headers": [(b"host", b"app"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }


async def _asgi_per_request(
    app: LWAMiddleware, tokens: list[str], n: int, cpu: list[float] | None = None
) -> float:
    scopes = [_scope(t) for t in tokens]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for i in range(50):  # warm-up
        await app(dict(scopes[i % len(scopes)]), receive, send)
    statuses.clear()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(n):
        await app(dict(scopes[i % len(scopes)]), receive, send)
    elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append((time.process_time() - cpu_started) / n * 1e6)
    assert statuses == [200] * n, set(statuses)
    return elapsed / n * 1e6


def _wsgi_per_request(
    app: LWAWSGIMiddleware, tokens: list[str], n: int, cpu: list[float] | None = None
) -> float:
    environs = [
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/me", "SCRIPT_NAME": "", "QUERY_STRING": "",
         "SERVER_NAME": "app", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
         "HTTP_AUTHORIZATION": f"Bearer {t}"}
        for t in tokens
    ]
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    for i in range(50):
        app(dict(environs[i % len(environs)]), start_response)
    statuses.clear()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(n):
        app(dict(environs[i % len(environs)]), start_response)
    elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append((time.process_time() - cpu_started) / n * 1e6)
    assert len(statuses) == n
    assert all(s.startswith("200") for s in statuses), set(statuses)
    return elapsed / n * 1e6


def _spread(samples: list[float]) -> str:
    return (f"{min(samples):.1f} / {statistics.median(samples):.1f} / "
            f"{max(samples):.1f}")


def _hit_ratio(server: RedisServer, emulator: LWAEmulator, rounds: int, n: int) -> None:
    """Part 3: a middleware Redis hit against a plain GET, each adapter.

    Wall-clock µs per request, and this process's CPU µs per request (steadier
    on a shared machine: what the client adds, without the waits)."""
    import redis
    import redis.asyncio

    from lwa_middleware._engine.shared_cache._scripts import SCRIPTS

    common = {"client_id": emulator.client_id, "api_base_url": emulator.base_url,
              "redis_url": server.url, "cache_maxsize": 1,
              "cache_key_secret": "bench-secret-" + "x" * 32}
    tokens = [emulator.issue_token(), emulator.issue_token()]
    value = b"x" * 300
    # The floor: the read script alone, on keys laid out as for a hit (6 keys,
    # 5 arguments; the identity holds a value of a hit's size).
    keys = [f"bench:{{b}}:{k}" for k in ("id", "rej", "lease", "rev", "epoch", "fence")]
    script_args = [*keys, "0123456789abcdef", 0, "0", b"m", "fedcba9876543210"]
    wall: dict[str, list[float]] = {
        k: [] for k in ("aget", "aeval", "asgi", "get", "eval", "wsgi")
    }
    cpu: dict[str, list[float]] = {k: [] for k in wall}

    def timed(name: str, began: float, cpu_began: float) -> None:
        wall[name].append((time.perf_counter() - began) / n * 1e6)
        cpu[name].append((time.process_time() - cpu_began) / n * 1e6)

    async def asgi_rounds() -> int:
        app = LWAMiddleware(_ok, **common)
        client = redis.asyncio.Redis.from_url(server.url)
        await client.set("bench:k", value)
        await client.set(keys[0], value, px=3_600_000)
        await client.set(keys[4], b"m")
        sha = await client.script_load(SCRIPTS["read"])
        for _ in range(50):
            await client.get("bench:k")
        for _ in range(rounds):
            began, cpu_began = time.perf_counter(), time.process_time()
            for _ in range(n):
                await client.get("bench:k")
            timed("aget", began, cpu_began)
            began, cpu_began = time.perf_counter(), time.process_time()
            for _ in range(n):
                await client.evalsha(sha, len(keys), *script_args)
            timed("aeval", began, cpu_began)
            wall["asgi"].append(await _asgi_per_request(app, tokens, n, cpu["asgi"]))
        hits = app.stats.shared_hits
        await client.aclose()
        await app.aclose()
        return hits

    a_hits = asyncio.run(asgi_rounds())
    app = LWAWSGIMiddleware(_wsgi_ok, **common)
    client = redis.Redis.from_url(server.url)
    sha = client.script_load(SCRIPTS["read"])
    for _ in range(rounds):
        began, cpu_began = time.perf_counter(), time.process_time()
        for _ in range(n):
            client.get("bench:k")
        timed("get", began, cpu_began)
        began, cpu_began = time.perf_counter(), time.process_time()
        for _ in range(n):
            client.evalsha(sha, len(keys), *script_args)
        timed("eval", began, cpu_began)
        wall["wsgi"].append(_wsgi_per_request(app, tokens, n, cpu["wsgi"]))
    w_hits = app.stats.shared_hits
    client.delete("bench:k", *keys)
    client.close()
    app.close()
    print(f"\n### A Redis hit ÷ one plain GET round trip, with cache_key_secret "
          f"(µs per request, min / median / max of {rounds} rounds of {n})\n")
    print("| adapter | plain GET | read script alone | Redis hit | hit ÷ GET | script ÷ GET "
          "| CPU: GET / script / hit | Redis hits seen |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, get, script, hit, hits in (("ASGI", "aget", "aeval", "asgi", a_hits),
                                          ("WSGI", "get", "eval", "wsgi", w_hits)):
        base = statistics.median(wall[get])
        ratio, floor = (statistics.median(wall[k]) / base for k in (hit, script))
        spent = " / ".join(f"{statistics.median(cpu[k]):.1f}" for k in (get, script, hit))
        print(f"| {label} | {_spread(wall[get])} | {_spread(wall[script])} "
              f"| {_spread(wall[hit])} | {ratio:.2f} | {floor:.2f} | {spent} | {hits} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=20, help="cold tokens per mode")
    parser.add_argument("--hits", type=int, default=3000, help="requests per hit measurement")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the GET ratio")
    parser.add_argument("--ratio-only", action="store_true", help="only part 3")
    args = parser.parse_args()

    binary = redis_binary()
    if binary is None:
        sys.exit("redis-server is not on PATH")
    server = RedisServer(binary)
    server.start()
    emulator = LWAEmulator().start()
    started = time.monotonic()
    try:
        if args.ratio_only:
            _hit_ratio(server, emulator, args.rounds, max(1, args.hits // args.rounds))
            return
        emulator.set_latency(LATENCY)
        rows = []
        with tempfile.TemporaryDirectory() as lease_dir, \
                tempfile.TemporaryDirectory() as plain_dir:
            env = {"W_CLIENT_ID": emulator.client_id, "W_API": emulator.base_url,
                   "W_REDIS": server.url, "PYTHON": sys.executable}
            leased = Workers(lease_dir, WORKERS, env)
            unleased = Workers(plain_dir, WORKERS, dict(env, W_NO_LEASE="1"))
            try:
                leased.wait_ready()
                unleased.wait_ready()
                for label, urls, prefix in (
                    ("no Redis", leased.urls, "/n"),
                    ("Redis, no lease", unleased.urls, "/r"),
                    ("Redis + lease (default)", leased.urls, "/r"),
                ):
                    tokeninfo, profile, lat, failures = _cold_bursts(
                        emulator, urls, prefix, args.tokens
                    )
                    rows.append((label, tokeninfo, profile, lat, failures))
            finally:
                leased.close()
                unleased.close()

        print(f"### Cold tokens, {WORKERS} worker processes, LWA latency "
              f"{LATENCY * 1000:.0f} ms, {args.tokens} tokens x {WORKERS} concurrent requests\n")
        print("| mode | tokeninfo calls / token | profile calls / token | p50 ms | p99 ms "
              "| non-200 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, tokeninfo, profile, lat, failures in rows:
            print(f"| {label} | {tokeninfo:.2f} | {profile:.2f} | "
                  f"{statistics.median(lat) * 1000:.1f} | {_pct(lat, 0.99) * 1000:.1f} "
                  f"| {failures} |")

        # -- hit cost ----------------------------------------------------------
        emulator.set_latency(0)
        common = {"client_id": emulator.client_id, "api_base_url": emulator.base_url}
        tokens = [emulator.issue_token(), emulator.issue_token()]
        n = args.hits

        async def asgi_side() -> tuple[float, float, int]:
            local = LWAMiddleware(_ok, **common)
            shared = LWAMiddleware(_ok, redis_url=server.url, cache_maxsize=1, **common)
            in_process = await _asgi_per_request(local, tokens[:1], n)
            redis_hit = await _asgi_per_request(shared, tokens, n)
            hits = shared.stats.shared_hits
            await local.aclose()
            await shared.aclose()
            return in_process, redis_hit, hits

        a_local, a_redis, a_hits = asyncio.run(asgi_side())
        w_local_app = LWAWSGIMiddleware(_wsgi_ok, **common)
        w_shared_app = LWAWSGIMiddleware(_wsgi_ok, redis_url=server.url, cache_maxsize=1, **common)
        w_local = _wsgi_per_request(w_local_app, tokens[:1], n)
        w_redis = _wsgi_per_request(w_shared_app, tokens, n)
        w_hits = w_shared_app.stats.shared_hits
        w_local_app.close()
        w_shared_app.close()

        with server.client() as raw:
            raw.set("bench:k", b"x" * 300)
            began = time.perf_counter()
            for _ in range(n):
                raw.get("bench:k")
            rtt = (time.perf_counter() - began) / n * 1e6
            raw.delete("bench:k")

        print(f"\n### Cost of a hit, µs per request through the middleware ({n} requests, "
              "loopback Redis)\n")
        print("| adapter | in-process hit | Redis hit | added by Redis | Redis hits seen |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, local_us, redis_us, hits in (
            ("ASGI", a_local, a_redis, a_hits),
            ("WSGI", w_local, w_redis, w_hits),
        ):
            print(f"| {label} | {local_us:.1f} | {redis_us:.1f} | {redis_us - local_us:+.1f} "
                  f"| {hits} |")
        print(f"\nFor scale: one plain GET round trip to this Redis (sync client): {rtt:.1f} µs.")
        _hit_ratio(server, emulator, args.rounds, max(1, n // args.rounds))
        print(f"\n_{time.monotonic() - started:.0f} s, redis-server {server.port}, "
              f"{os.cpu_count()} CPUs_")
    finally:
        emulator.stop()
        server.close()


if __name__ == "__main__":
    main()
