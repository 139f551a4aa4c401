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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from support.callers import WsgiCaller
from support.redis_servers import (
    LocalCluster,
    RedisServer,
    SentinelTopology,
    Workers,
    redis_binary,
)

from lwa_middleware import LWAWSGIMiddleware, SharedCacheError
from lwa_middleware._engine.config import Settings
from lwa_middleware._engine.shared_cache import SyncSharedCache
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


# -- 5. Cluster failover, and Sentinel failover ---------------------------------

#: The figures of one failover run, in the tables' column order.
FIGURES = ("promotion s", "requests", "p50 ms", "p99 ms", "max ms",
           "unanswered or > timeout+1 s", "non-200", "LWA calls / s",
           "s to 1 lookup a token", "revokes raised", "revoked, refused by all")


def failover(emulator: LWAEmulator, binary: str, after: float) -> None:
    cluster = LocalCluster(binary, replicas=1, node_timeout_ms=2000)
    try:
        def kill() -> Callable[[], bool]:
            cluster.masters()[0].stop()
            return lambda: len(cluster.masters()) == 3 and cluster.healthy()

        figures = _with_workers(emulator, cluster.url, kill, after)
    finally:
        cluster.close()
    print(f"### Cluster failover, {WORKERS} uvicorn workers (3 masters + 3 replicas, "
          "cluster-node-timeout 2 s)\n")
    _table([_cells(figures)])


def sentinel_failover(emulator: LWAEmulator, binary: str, after: float, runs: int) -> None:
    """The Cluster row's figures for a Sentinel failover (a primary, one
    replica, 3 Sentinels, ``down-after-milliseconds`` 800): ``runs`` runs,
    each on a fresh topology; min / median / max of each figure."""
    results = []
    for _ in range(runs):
        sentinel = SentinelTopology(binary, replicas=1, sentinels=3)
        try:
            def kill(sentinel: SentinelTopology = sentinel) -> Callable[[], bool]:
                old = sentinel.primary.port
                sentinel.primary.stop()
                return lambda: sentinel.primary_port() not in (None, old)

            results.append(_with_workers(emulator, sentinel.url, kill, after))
        finally:
            sentinel.close()
    print(f"### Sentinel failover, {WORKERS} uvicorn workers (a primary + 1 replica, "
          f"3 Sentinels, down-after-milliseconds 800), {runs} runs\n")
    spread = []
    for i, name in enumerate(FIGURES):
        values = [r[i] for r in results]
        if isinstance(values[0], tuple):  # refused by all / revoked: summed
            spread.append(f"{sum(v[0] for v in values)} / {sum(v[1] for v in values)}")
        else:
            spread.append(" / ".join(_cell(name, f(values))
                                     for f in (min, statistics.median, max)))
    _table([spread], "min / median / max of each; the last column summed over the runs")


def _cell(name: str, value: Any) -> str:
    return f"{value:.1f}" if name in ("promotion s", "LWA calls / s",
                                      "s to 1 lookup a token") else f"{value:.0f}"


def _cells(figures: tuple[Any, ...]) -> list[str]:
    return [f"{f[1]} / {f[0]}" if isinstance(f, tuple) else _cell(name, f)
            for name, f in zip(FIGURES, figures, strict=True)]


def _table(rows: list[list[str]], note: str = "") -> None:
    if note:
        print(f"({note})\n")
    print("| " + " | ".join(FIGURES) + " |")
    print("| " + " | ".join("---:" for _ in FIGURES) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def _with_workers(emulator: LWAEmulator, url: str, kill: Callable[[], Callable[[], bool]],
                  after: float) -> tuple[Any, ...]:
    with tempfile.TemporaryDirectory() as directory:
        env = {"W_CLIENT_ID": emulator.client_id, "W_API": emulator.base_url,
               "W_REDIS": url, "W_REDIS_TIMEOUT": "0.05"}
        workers = Workers(directory, WORKERS, env)
        try:
            workers.wait_ready()
            return _failover(emulator, url, workers, kill, after)
        finally:
            workers.close()


def _failover(emulator: LWAEmulator, url: str, workers: Workers,
              kill: Callable[[], Callable[[], bool]], after: float) -> tuple[Any, ...]:
    """Traffic on ``workers``; ``kill()`` a primary (it returns whether a
    replica was promoted yet); the figures of :data:`FIGURES`."""
    clients = [httpx2.Client(timeout=TIMEOUT + 10) for _ in workers.urls]
    revoker = _wsgi(emulator, redis_url=url, redis_timeout=0.05)
    # It meets Redis first, like a worker that revokes: a process whose
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
        promoted_yet = kill()
        killed = time.monotonic()
        revoked, raised = [], 0
        while not promoted_yet():
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
    span = promoted + 10 - killed
    return (promoted - killed, len(window), statistics.median(answered) * 1000,
            _pct(answered, 0.99) * 1000, max(answered) * 1000, unanswered, bad,
            calls / span, normal, raised, (survived, len(kept)))


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
    parser.add_argument("--runs", type=int, default=3, help="Sentinel failover runs")
    parser.add_argument("--only", choices=("failover", "sentinel", "memory", "lost"),
                        default=None)
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
        if args.only in (None, "sentinel"):
            sentinel_failover(emulator, binary, args.after, args.runs)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
