"""Issue 24's fault scenarios for ``bench_fleet.py --faults`` (see its docstring).

Every figure is taken within the run: latencies are wall-clock times of real
HTTP requests (or middleware calls), counts are the LWA emulator's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from support.callers import WsgiCaller
from support.redis_servers import LocalCluster, RedisServer, Workers, redis_binary

from lwa_middleware import LWAWSGIMiddleware, SharedCacheError
from lwa_middleware.config import Settings
from lwa_middleware.shared_cache import SyncSharedCache
from lwa_middleware.testing import LWAEmulator

WORKERS = 4
TIMEOUT = 5.0  # the workers' LWA timeout (the default)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _wsgi(emulator: LWAEmulator, **options: Any) -> LWAWSGIMiddleware:
    def app(environ: Any, start: Any) -> list[bytes]:
        start("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return LWAWSGIMiddleware(app, client_id=emulator.client_id,
                             api_base_url=emulator.base_url, **options)


# -- 5. Cluster failover -------------------------------------------------------


def failover(emulator: LWAEmulator, binary: str, after: float) -> None:
    cluster = LocalCluster(binary, replicas=1, node_timeout_ms=2000)
    try:
        with tempfile.TemporaryDirectory() as directory:
            env = {"W_CLIENT_ID": emulator.client_id, "W_API": emulator.base_url,
                   "W_REDIS": cluster.url, "W_REDIS_TIMEOUT": "0.05"}
            workers = Workers(directory, WORKERS, env)
            try:
                workers.wait_ready()
                _failover(emulator, cluster, workers, after)
            finally:
                workers.close()
    finally:
        cluster.close()


def _failover(emulator: LWAEmulator, cluster: LocalCluster, workers: Workers,
              after: float) -> None:
    clients = [httpx2.Client(timeout=TIMEOUT + 10) for _ in workers.urls]
    revoker = _wsgi(emulator, redis_url=cluster.url, redis_timeout=0.05)
    # It meets the Cluster first, like a worker that revokes: a process whose
    # first round trip falls in the failover has no client yet to make one.
    WsgiCaller(revoker).get("/me", emulator.issue_token())
    #: (sent at, seconds or None when unanswered, status) of every request.
    samples: list[tuple[float, float | None, int]] = []
    #: (sent at, tokeninfo calls the token cost).
    costs: list[tuple[float, int]] = []
    stop = threading.Event()
    held: list[str] = []

    def ask(client: httpx2.Client, url: str, token: str) -> None:
        sent = time.monotonic()
        try:
            code = client.get(url + "/r/me", headers={"Authorization": f"Bearer {token}"}
                              ).status_code
            samples.append((sent, time.monotonic() - sent, code))
        except httpx2.HTTPError:
            samples.append((sent, None, 0))

    def traffic() -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            while not stop.is_set():
                token = emulator.issue_token()
                before, sent = emulator.calls["tokeninfo"], time.monotonic()
                list(pool.map(ask, clients, workers.urls, [token] * len(clients)))
                costs.append((sent, emulator.calls["tokeninfo"] - before))
                held.append(token)
                stop.wait(0.25)

    runner = threading.Thread(target=traffic)
    runner.start()
    try:
        time.sleep(5)  # healthy traffic first
        victim = cluster.masters()[0]
        victim.stop()
        killed = time.monotonic()
        revoked, raised = [], 0
        while len(cluster.masters()) < 3 or not cluster.healthy():
            if len(held) > len(revoked) + 5:  # revoke a token all workers hold
                token = held[len(revoked)]
                try:
                    revoker.revoke(token)
                    revoked.append(token)
                except SharedCacheError:
                    raised += 1
                    revoked.append("")
            time.sleep(0.05)
        promoted = time.monotonic()
        time.sleep(after)
    finally:
        stop.set()
        runner.join()
    window = [s for s in samples if killed <= s[0] <= promoted + 10]
    answered = [t for _, t, _ in window if t is not None]
    unanswered = sum(1 for _, t, _ in window if t is None or t > TIMEOUT + 1)
    bad = sum(1 for _, _, code in window if code != 200)
    late = [sent for sent, cost in costs if sent >= promoted and cost > 1]
    normal = (max(late) - promoted) if late else 0.0
    calls = sum(cost for sent, cost in costs if killed <= sent <= promoted + 10)
    kept = [t for t in revoked if t]
    survived = sum(
        1 for token in kept
        if all(c.get(u + "/r/me", headers={"Authorization": f"Bearer {token}"}).status_code
               == 401 for c, u in zip(clients, workers.urls, strict=True))
    )
    for client in clients:
        client.close()
    revoker.close()
    print(f"### Cluster failover, {WORKERS} uvicorn workers (3 masters + 3 replicas, "
          "cluster-node-timeout 2 s)\n")
    print("| promotion s | requests | p50 ms | p99 ms | max ms | unanswered or > timeout+1 s "
          "| non-200 | LWA calls / s | s to 1 lookup a token | revokes raised | revoked, "
          "refused by all |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    span = promoted + 10 - killed
    print(f"| {promoted - killed:.1f} | {len(window)} | "
          f"{statistics.median(answered) * 1000:.0f} | {_pct(answered, 0.99) * 1000:.0f} | "
          f"{max(answered) * 1000:.0f} | {unanswered} | {bad} | {calls / span:.1f} | "
          f"{normal:.1f} | {raised} | {survived} / {len(kept)} |\n")


# -- 6. Memory pressure ---------------------------------------------------------


def memory(emulator: LWAEmulator, binary: str, fill_tokens: int) -> None:
    print(f"### Memory pressure: maxmemory 4 MB, {fill_tokens} tokens resolved first, "
          "10 tokens held by 2 workers then revoked\n")
    print("| policy | Redis full? | revokes raised | revoke p50 ms | accepted by the other "
          "worker after 2 s | accepted by a new worker |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for policy in ("noeviction", "allkeys-lru"):
        server = RedisServer(binary, extra=["--maxmemory", "4mb",
                                            "--maxmemory-policy", policy])
        server.start()
        try:
            print(_memory_row(emulator, server, policy, fill_tokens))
        finally:
            server.close()
    print()


def _memory_row(emulator: LWAEmulator, server: RedisServer, policy: str, fill: int) -> str:
    options: dict[str, Any] = {"redis_url": server.url, "redis_timeout": 0.3}
    a, b = _wsgi(emulator, **options), _wsgi(emulator, **options)
    try:
        held = [emulator.issue_token() for _ in range(10)]
        for mw in (a, b):
            for token in held:
                WsgiCaller(mw).get("/me", token)
        filler = _wsgi(emulator, cache_maxsize=1, **options)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: WsgiCaller(filler).get("/me", emulator.issue_token()),
                          range(fill)))
        filler.close()
        with contextlib.closing(server.client()) as client:
            info = client.info("memory")
            full = int(info["used_memory"]) >= int(info["maxmemory"]) * 0.95
        raised, took = 0, []
        for token in held:
            started = time.monotonic()
            try:
                a.revoke(token)
            except SharedCacheError:
                raised += 1
            took.append(time.monotonic() - started)
        time.sleep(2)
        other = sum(WsgiCaller(b).get("/me", t).status == 200 for t in held)
        fresh = _wsgi(emulator, **options)
        new = sum(WsgiCaller(fresh).get("/me", t).status == 200 for t in held)
        fresh.close()
        return (f"| {policy} | {'yes' if full else 'no'} | {raised} | "
                f"{statistics.median(took) * 1000:.0f} | {other} / 10 | {new} / 10 |")
    finally:
        a.close()
        b.close()


# -- 7. Lost write-back -----------------------------------------------------------


def lost_write_back(emulator: LWAEmulator, binary: str, timeout: float) -> None:
    server = RedisServer(binary)
    server.start()
    try:
        options: dict[str, Any] = {"redis_url": server.url, "redis_timeout": 0.3,
                                   "cache_key_secret": "k" * 32, "timeout": timeout}
        token = emulator.issue_token()
        settings = Settings.from_options(client_id=emulator.client_id,
                                         api_base_url=emulator.base_url, **options)
        holder = SyncSharedCache(settings)
        holder.get(token)  # takes the lease, then never writes
        holder.close()
        waiters = [_wsgi(emulator, **options) for _ in range(3)]

        def timed(mw: LWAWSGIMiddleware) -> float:
            started = time.monotonic()
            WsgiCaller(mw).get("/me", token)
            return time.monotonic() - started

        with ThreadPoolExecutor(3) as pool:
            took = list(pool.map(timed, waiters))
        for mw in waiters:
            mw.close()
        print(f"### Lost write-back: 3 waiters, lookup deadline {timeout:g} s\n")
        print("| waiter answers, s |\n| --- |")
        print("| " + ", ".join(f"{t:.2f}" for t in took) + " |\n")
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 24's fault scenarios")
    parser.add_argument("--after", type=float, default=20.0,
                        help="seconds of traffic after the promotion")
    parser.add_argument("--memory-tokens", type=int, default=20_000,
                        help="tokens resolved to fill Redis")
    parser.add_argument("--only", choices=("failover", "memory", "lost"), default=None)
    args = parser.parse_args()
    binary = redis_binary()
    if binary is None:
        sys.exit("redis-server is not on PATH")
    emulator = LWAEmulator().start()
    try:
        if args.only in (None, "lost"):
            lost_write_back(emulator, binary, TIMEOUT)
        if args.only in (None, "memory"):
            memory(emulator, binary, args.memory_tokens)
        if args.only in (None, "failover"):
            failover(emulator, binary, args.after)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
