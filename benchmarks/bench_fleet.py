"""A fleet that behaves like one process (issue 14): what 4 workers cost LWA.

Starts its own ``redis-server`` and LWA emulator, and 4 separate uvicorn
worker processes (``tests/shared_cache_support.Workers``), then measures:

1. **Revocation propagation.** Each token is resolved on every worker (so
   each holds it in memory), then revoked by a middleware in this process;
   each worker is polled over HTTP until it refuses the token. The time from
   the start of ``revoke()`` to a worker's first 401, over every worker and
   token: p50, p99, max. (A worker with the token in memory answers 200 until
   the push reaches it: a Redis read would refuse it, but it makes none.)
2. **LWA calls per new token** across the 4 workers, each new token sent to
   all four at once, with LWA answering in 50 ms and in 1.2 s.
3. **During a Redis outage** (Redis killed): LWA calls per second while the
   4 workers serve a fixed set of known tokens, against 4 workers without
   Redis. Both should be about the same: the degraded fleet falls back to
   the no-Redis cache lifetime instead of asking LWA every few seconds.
4. **A Redis hit ÷ an in-process hit**, through the middleware called
   directly (as in ``bench_shared_cache.py``), with the default MAC-sealed
   values and with ``cache_key_secret`` (AES-GCM, HKDF per value).

Issue 24 adds, with ``--faults`` (instead of the above):

5. **Cluster failover.** A 3-master + 3-replica Cluster (``cluster-node-timeout``
   2 s), 4 uvicorn workers, a new token every 0.25 s sent to all four at once;
   one master is killed. Promotion time, latency percentiles and the slowest
   answer from the kill to 10 s after the promotion, unanswered requests
   (over ``timeout`` + 1 s, or no answer), LWA calls per second, and the time
   from the promotion to the last token that cost more than one lookup;
   revocations made during the failover: how many raised, and whether the
   others are refused by every worker afterwards. The same figures for a
   **Sentinel failover** (a primary, one replica, 3 Sentinels,
   ``down-after-milliseconds`` 800), min / median / max over ``--runs`` runs
   (3), each on a fresh topology (``--only sentinel``).
6. **Memory pressure.** Per ``maxmemory-policy``, a small ``maxmemory``
   filled by resolving ``--memory-tokens`` tokens through one worker; then 10
   tokens held by two workers are revoked: how many revokes raised, and how
   many revoked tokens the other worker and a new worker still accept.
7. **Lost write-back.** A holder takes a lease and is never heard of again;
   3 waiters ask the same token: their answer times.

Run: ``python benchmarks/bench_fleet.py`` (about a minute; needs
``redis-server``), ``--faults`` for 5 to 7. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import httpx2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from bench_shared_cache import _asgi_per_request, _ok, _wsgi_ok, _wsgi_per_request
from shared_cache_support import RedisServer, Workers, redis_binary

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

WORKERS = 4


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _get(client: httpx2.Client, url: str, token: str) -> int:
    return client.get(url + "/r/me", headers={"Authorization": f"Bearer {token}"}).status_code


def propagation(emulator: LWAEmulator, workers: Workers, redis_url: str, tokens: int
                ) -> list[float]:
    revoker = LWAWSGIMiddleware(lambda e, s: [], client_id=emulator.client_id,
                                api_base_url=emulator.base_url, redis_url=redis_url,
                                redis_timeout=0.5)
    clients = [httpx2.Client(timeout=10) for _ in workers.urls]
    samples: list[float] = []
    try:
        for _ in range(tokens):
            token = emulator.issue_token()
            for client, url in zip(clients, workers.urls, strict=True):
                assert _get(client, url, token) == 200
                assert _get(client, url, token) == 200  # now from memory
            started = time.perf_counter()
            found: list[float] = []

            def poll(client: httpx2.Client, url: str, token: str = token,
                     started: float = started, found: list[float] = found) -> None:
                deadline = started + 10
                while time.perf_counter() < deadline:
                    if _get(client, url, token) == 401:
                        found.append(time.perf_counter() - started)
                        return

            threads = [threading.Thread(target=poll, args=(c, u))
                       for c, u in zip(clients, workers.urls, strict=True)]
            revoker.revoke(token)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=15)
            samples.extend(found)
    finally:
        for client in clients:
            client.close()
        revoker.close()
    return samples


def cold(emulator: LWAEmulator, urls: list[str], prefix: str, tokens: int) -> tuple[float, float]:
    """Tokeninfo and profile calls per token, each sent to every worker at once."""
    clients = [httpx2.Client(timeout=30) for _ in urls]
    try:
        for client, url in zip(clients, urls, strict=True):
            warm = emulator.issue_token()
            client.get(url + prefix + "/me", headers={"Authorization": f"Bearer {warm}"})
        before = dict(emulator.calls)
        for _ in range(tokens):
            token = emulator.issue_token()
            barrier = threading.Barrier(len(urls))

            def hit(client: httpx2.Client, url: str, token: str = token,
                    barrier: threading.Barrier = barrier) -> None:
                barrier.wait(timeout=30)
                client.get(url + prefix + "/me", headers={"Authorization": f"Bearer {token}"})

            threads = [threading.Thread(target=hit, args=(c, u))
                       for c, u in zip(clients, urls, strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        for client in clients:
            client.close()
    return ((emulator.calls["tokeninfo"] - before["tokeninfo"]) / tokens,
            (emulator.calls["profile"] - before["profile"]) / tokens)


def outage(emulator: LWAEmulator, urls: list[str], prefix: str, seconds: float,
           known: int = 8) -> float:
    """LWA calls per second while ``urls`` serve ``known`` tokens in a loop."""
    tokens = [emulator.issue_token() for _ in range(known)]
    clients = [httpx2.Client(timeout=10) for _ in urls]
    try:
        for client, url in zip(clients, urls, strict=True):
            for token in tokens:
                client.get(url + prefix + "/me", headers={"Authorization": f"Bearer {token}"})
        before = emulator.calls["tokeninfo"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for client, url in zip(clients, urls, strict=True):
                for token in tokens:
                    client.get(url + prefix + "/me",
                               headers={"Authorization": f"Bearer {token}"})
        return (emulator.calls["tokeninfo"] - before) / seconds
    finally:
        for client in clients:
            client.close()


def hit_cost(emulator: LWAEmulator, redis_url: str, n: int) -> list[tuple[str, float, float]]:
    """(label, in-process µs, Redis µs) per adapter and sealing."""
    common: dict[str, object] = {"client_id": emulator.client_id,
                                 "api_base_url": emulator.base_url}
    tokens = [emulator.issue_token(), emulator.issue_token()]
    rows = []
    for sealing, extra in (("MAC", {}), ("AES-GCM", {"cache_key_secret": b"k" * 32})):
        async def asgi_side(extra: dict[str, object] = extra) -> tuple[float, float]:
            local = LWAMiddleware(_ok, **common)
            shared = LWAMiddleware(_ok, redis_url=redis_url, cache_maxsize=1, **common, **extra)
            result = (await _asgi_per_request(local, tokens[:1], n),
                      await _asgi_per_request(shared, tokens, n))
            await local.aclose()
            await shared.aclose()
            return result

        import asyncio

        rows.append((f"ASGI, {sealing}", *asyncio.run(asgi_side())))
        local_w = LWAWSGIMiddleware(_wsgi_ok, **common)
        shared_w = LWAWSGIMiddleware(_wsgi_ok, redis_url=redis_url, cache_maxsize=1, **common,
                                     **extra)
        rows.append((f"WSGI, {sealing}", _wsgi_per_request(local_w, tokens[:1], n),
                     _wsgi_per_request(shared_w, tokens, n)))
        local_w.close()
        shared_w.close()
    return rows


def main() -> None:
    if "--faults" in sys.argv:
        from bench_fleet_faults import main as faults

        sys.argv.remove("--faults")
        faults()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=50, help="revoked tokens")
    parser.add_argument("--cold", type=int, default=10, help="cold tokens per latency")
    parser.add_argument("--outage", type=float, default=12.0, help="seconds of outage")
    parser.add_argument("--hits", type=int, default=2000, help="requests per hit measurement")
    args = parser.parse_args()
    binary = redis_binary()
    if binary is None:
        sys.exit("redis-server is not on PATH")
    server = RedisServer(binary)
    server.start()
    emulator = LWAEmulator().start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            env = {"W_CLIENT_ID": emulator.client_id, "W_API": emulator.base_url,
                   "W_REDIS": server.url, "PYTHON": sys.executable}
            workers = Workers(directory, WORKERS, env)
            try:
                workers.wait_ready()
                samples = propagation(emulator, workers, server.url, args.tokens)
                print(f"### Revocation propagation, {WORKERS} worker processes, "
                      f"{args.tokens} tokens\n")
                print("| samples | p50 ms | p99 ms | max ms |")
                print("| ---: | ---: | ---: | ---: |")
                print(f"| {len(samples)} | {statistics.median(samples) * 1000:.1f} | "
                      f"{_pct(samples, 0.99) * 1000:.1f} | {max(samples) * 1000:.1f} |\n")

                print(f"### LWA calls per new token, {WORKERS} workers at once\n")
                print("| LWA latency | mode | tokeninfo / token | profile / token |")
                print("| ---: | --- | ---: | ---: |")
                for latency in (0.05, 1.2):
                    emulator.set_latency(latency)
                    for label, prefix in (("no Redis", "/n"), ("Redis", "/r")):
                        tokeninfo, profile = cold(emulator, workers.urls, prefix, args.cold)
                        print(f"| {latency * 1000:.0f} ms | {label} | {tokeninfo:.2f} | "
                              f"{profile:.2f} |")
                emulator.set_latency(0)
                print()

                print(f"### A Redis hit ÷ an in-process hit, µs per request ({args.hits} "
                      "requests, loopback Redis)\n")
                print("| adapter, sealing | in-process hit | Redis hit | ratio |")
                print("| --- | ---: | ---: | ---: |")
                for label, local, shared in hit_cost(emulator, server.url, args.hits):
                    print(f"| {label} | {local:.1f} | {shared:.1f} | {shared / local:.0f} |")
                print()

                server.stop()
                down = outage(emulator, workers.urls, "/r", args.outage)
                plain = outage(emulator, workers.urls, "/n", args.outage)
                print(f"### LWA tokeninfo calls per second, {WORKERS} workers serving 8 known "
                      f"tokens for {args.outage:g} s\n")
                print("| fleet | calls / s |")
                print("| --- | ---: |")
                print(f"| Redis down (degraded) | {down:.2f} |")
                print(f"| no Redis | {plain:.2f} |")
            finally:
                workers.close()
    finally:
        emulator.stop()
        server.close()


if __name__ == "__main__":
    main()
