"""Soak: real servers, many clients, garbage tokens, an LWA outage, a token flood.

One scenario, in phases, against a real server on loopback (uvicorn in a
thread for ASGI; waitress, or ``wsgiref`` with threads, for WSGI) and the
bundled LWA emulator:

``warm``
    ``--clients`` concurrent clients send requests with ``--tokens`` tokens,
    30% of them garbage (LWA-shaped or not); now and then a brand-new valid
    or garbage token, as real traffic has.
``outage``
    LWA goes ``DOWN`` (connections refused). After ``cache_ttl`` every
    cached identity is stale. With ``stale_if_error`` the tokens resolved
    before keep being served; without it everything not fresh fails closed
    (503). Garbage is 401 (remembered) or 503, never 200.
``recovery``
    LWA comes back. Load goes on; the time until a brand-new token gets its
    200 is the recovery time.
``after``
    Everything is as in ``warm`` again.
``flood``
    Separately, tens of thousands of distinct random tokens (one in ten a
    real one) with small caches: cache sizes must stay within their maxima
    and resident memory must not grow with the number of tokens. LWA is
    then an emulator in a child process, so the RSS figures are those of the
    server, the middleware and the clients alone (in the outage scenario the
    emulator shares the process, and its request log grows with traffic).

Every answer is checked as it arrives (no 500, garbage never 200, a 200
carries the right customer, per-phase rules above); broken rules are listed
as violations and make the exit status 1. ``tests/reliability/test_soak.py``
runs this CI-sized (with a 1 s breaker cooldown; here it is the default 5 s,
which bounds the time to recover).

Run: ``python benchmarks/soak.py --seconds 60 --clients 64 --tokens 2000``
(``--server waitress``, ``--no-stale``, ``--flood 50000`` and more: ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import socket
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATUSES_OK = frozenset({200, 401, 503})
_ALPHABET = string.ascii_letters + string.digits + "-_"


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc`` (or peak RSS elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def garbage_token(rng: random.Random, lwa_shaped: bool) -> str:
    if lwa_shaped:
        return "Atza|" + "".join(rng.choices(_ALPHABET, k=rng.randint(350, 480)))
    return "".join(rng.choices(_ALPHABET, k=rng.randint(8, 64)))


# -- the protected apps ----------------------------------------------------------


async def _asgi_whoami(scope: Scope, receive: Any, send: Any) -> None:
    identity = scope.get("lwa.identity")
    body = json.dumps({"user_id": identity.user_id if identity else None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _wsgi_whoami(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    identity = environ.get("lwa.identity")
    body = json.dumps({"user_id": identity.user_id if identity else None}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


class _Lifespan:
    """Closes the middleware's pooled LWA connections on the server's own loop."""

    def __init__(self, mw: LWAMiddleware) -> None:
        self.mw = mw

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.mw(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.mw.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


# -- real servers in threads ---------------------------------------------------------


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@contextlib.contextmanager
def serve_uvicorn(app: ASGIApp) -> Iterator[str]:
    """uvicorn on a loopback port, in a thread; yields its base URL."""
    import uvicorn

    sock = _listen()
    # log_config=None: uvicorn's records propagate to the root logger, so a
    # caller (pytest's caplog) sees "Exception in ASGI application" errors.
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def serve_wsgi(app: Callable[..., Any], threads: int = 16) -> Iterator[tuple[str, str]]:
    """waitress (or ``wsgiref`` with a thread per request); yields (base URL, server name)."""
    try:
        from waitress.server import create_server
    except ImportError:
        create_server = None
    if create_server is not None:
        server = create_server(
            app,
            host="127.0.0.1",
            port=0,
            threads=threads,
            backlog=1024,
            connection_limit=1000,
            channel_timeout=30,
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.effective_port}", "waitress"
        finally:
            server.close()
            thread.join(timeout=10)
        return

    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 1024

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    wsgiref = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    thread = threading.Thread(
        target=wsgiref.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{wsgiref.server_port}", "wsgiref"
    finally:
        wsgiref.shutdown()
        wsgiref.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def protected_server(
    lwa: LWAEmulator | None,
    server: str,
    *,
    asgi_app: ASGIApp = _asgi_whoami,
    wsgi_app: Callable[..., Any] = _wsgi_whoami,
    **options: Any,
) -> Iterator[tuple[str, LWAMiddleware | LWAWSGIMiddleware, str]]:
    """An app (the who-am-I app by default) behind the right middleware, served for real.

    :param server: ``"uvicorn"`` serves ``asgi_app``; anything else ``wsgi_app``.
    Yields (base URL, middleware, server name).
    """
    if lwa is not None:
        options.setdefault("client_id", lwa.client_id)
        options.setdefault("api_base_url", lwa.base_url)
    if server == "uvicorn":
        mw = LWAMiddleware(asgi_app, **options)
        with serve_uvicorn(_Lifespan(mw)) as url:
            yield url, mw, "uvicorn"
    else:
        wmw = LWAWSGIMiddleware(wsgi_app, **options)
        try:
            with serve_wsgi(wmw) as (url, name):
                yield url, wmw, name
        finally:
            wmw.close()


# -- the scenario --------------------------------------------------------------------


@dataclass
class Plan:
    server: str = "uvicorn"
    clients: int = 32
    tokens: int = 300
    garbage_ratio: float = 0.3
    #: Chance that a request carries a brand-new token (valid or garbage).
    new_token_ratio: float = 0.03
    warm: float = 1.5
    outage: float = 1.0
    recovery_bound: float = 6.0
    after: float = 0.8
    stale_if_error: bool = True
    cache_ttl: float = 1.0
    seed: int = 1

    @property
    def grace(self) -> float:
        # Until every identity cached before the outage is stale.
        return self.cache_ttl + 0.3


@dataclass
class Report:
    server: str
    stale_if_error: bool
    requests: int = 0
    valid_tokens: int = 0
    garbage_tokens: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: (phase, token kind, status) -> count
    matrix: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    recovery_seconds: float | None = None
    rss_before: int = 0
    rss_after: int = 0
    lwa_calls: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    #: Every token sent, so a caller can check none of them leaked anywhere.
    tokens: list[str] = field(default_factory=list, repr=False)

    def violation(self, text: str) -> None:
        self.violations[text] += 1

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        out = [
            f"server={self.server} stale_if_error={self.stale_if_error} seconds={self.seconds:.1f}",
            f"requests={self.requests} ({self.requests / max(self.seconds, 1e-9):.0f}/s) "
            f"valid tokens={self.valid_tokens} garbage tokens={self.garbage_tokens} "
            f"LWA calls={self.lwa_calls}",
            f"statuses={dict(sorted(self.statuses.items()))}",
            f"RSS before={self.rss_before / mib:.1f} MiB after={self.rss_after / mib:.1f} MiB",
            "recovery="
            + (f"{self.recovery_seconds:.2f}s" if self.recovery_seconds is not None else "NEVER"),
        ]
        for phase in ("warm", "grace", "outage", "recovery", "after"):
            cells = {
                f"{kind}:{status}": n
                for (p, kind, status), n in sorted(self.matrix.items())
                if p == phase
            }
            out.append(f"  {phase:<9}{cells}")
        keys = ("hits", "misses", "lookups", "stale_served", "rejections_cached", "upstream_errors")
        out.append("  stats " + " ".join(f"{k}={self.stats.get(k, 0):.0f}" for k in keys))
        out.extend(f"  VIOLATION x{n}: {text}" for text, n in self.violations.items())
        return out


class _Soak:
    def __init__(self, lwa: LWAEmulator, plan: Plan, url: str, report: Report) -> None:
        self.lwa = lwa
        self.plan = plan
        self.url = url
        self.report = report
        self.rng = random.Random(plan.seed)
        n_garbage = round(plan.tokens * plan.garbage_ratio)
        self.valid = {}
        for _ in range(plan.tokens - n_garbage):
            token = lwa.issue_token()
            self.valid[token] = lwa.customer_for(token).user_id
        self.valid_list = list(self.valid)
        # Real traffic is skewed: a few customers make most requests.
        self.hot_list = self.valid_list[: max(10, len(self.valid_list) // 10)]
        self.garbage = {garbage_token(self.rng, i % 2 == 0) for i in range(n_garbage)}
        self.garbage_list = list(self.garbage)
        self.resolved_before_outage: set[str] = set()
        self.phase = "warm"
        self.stop = False

    def pick(self) -> tuple[str, str]:
        """(kind, token): kinds are valid, new-valid, garbage, new-garbage."""
        rng = self.rng
        fresh = rng.random() < self.plan.new_token_ratio
        if rng.random() < self.plan.garbage_ratio:
            if fresh:
                token = garbage_token(rng, rng.random() < 0.5)
                self.garbage.add(token)
                return "new-garbage", token
            return "garbage", rng.choice(self.garbage_list)
        if fresh:
            token = self.lwa.issue_token()
            self.valid[token] = self.lwa.customer_for(token).user_id
            return "new-valid", token
        return "valid", rng.choice(self.hot_list if rng.random() < 0.5 else self.valid_list)

    def judge(self, phase: str, kind: str, token: str, status: int, body: bytes) -> None:
        report = self.report
        report.requests += 1
        report.statuses[status] += 1
        report.matrix[phase, kind, status] += 1
        if status not in STATUSES_OK:
            report.violation(f"status {status} ({phase}, {kind})")
            return
        garbage = kind.endswith("garbage")
        if status == 200:
            if garbage:
                report.violation(f"garbage token answered 200 ({phase})")
                return
            try:
                user_id = json.loads(body)["user_id"]
            except (ValueError, KeyError):
                user_id = None
            if user_id != self.valid[token]:
                report.violation("a 200 carried another customer's identity")
            if self.phase in ("warm", "grace"):
                # Resolved before LWA went down (in grace only the cache answers).
                self.resolved_before_outage.add(token)
        if phase in ("warm", "after"):
            want = 401 if garbage else 200
            if status != want:
                report.violation(f"{kind} token answered {status} in {phase}, not {want}")
        elif phase == "outage":
            if garbage:
                if status not in (401, 503):
                    report.violation(f"garbage answered {status} during the outage")
            elif self.plan.stale_if_error and token in self.resolved_before_outage:
                if status != 200:
                    report.violation(
                        f"a token resolved before the outage answered {status} "
                        "during it despite stale_if_error"
                    )
            elif status != 503:
                report.violation(f"{kind} token answered {status} during the outage, not 503")

    async def client(self, http: httpx2.AsyncClient) -> None:
        while not self.stop:
            kind, token = self.pick()
            phase = self.phase
            try:
                response = await http.get("/me", headers={"Authorization": f"Bearer {token}"})
            except httpx2.TransportError as exc:
                # The server dropped the connection: the app or the middleware blew up.
                self.report.violation(f"transport error {type(exc).__name__} ({phase}, {kind})")
                continue
            # A request that straddles a phase change is judged by the general rules only.
            seen = phase if phase == self.phase else "straddle"
            self.judge(seen, kind, token, response.status_code, response.content)

    async def recovery_probe(self, http: httpx2.AsyncClient, cleared: float) -> None:
        """Until a brand-new valid token gets its 200, or the bound passes."""
        while time.monotonic() - cleared < self.plan.recovery_bound:
            token = self.lwa.issue_token()
            self.valid[token] = self.lwa.customer_for(token).user_id
            response = await http.get("/me", headers={"Authorization": f"Bearer {token}"})
            self.judge("recovery", "new-valid", token, response.status_code, response.content)
            if response.status_code == 200:
                self.report.recovery_seconds = time.monotonic() - cleared
                return
            await asyncio.sleep(0.05)

    def _seen(self, phase: str, kind: str, status: int) -> bool:
        return self.report.matrix[phase, kind, status] > 0

    @staticmethod
    async def _stretch(done: Callable[[], bool], bound: float = 20.0) -> None:
        """Prolong a phase until it saw what it is for: on a loaded machine its
        nominal length may end before a single request in it completed."""
        deadline = time.monotonic() + bound
        # Polling: the counters are written by every client task, and an
        # Event set on each judged request would cost the clients more.
        while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        plan = self.plan
        limits = httpx2.Limits(max_connections=plan.clients, max_keepalive_connections=plan.clients)
        async with httpx2.AsyncClient(base_url=self.url, limits=limits, timeout=30.0) as http:
            workers = [asyncio.create_task(self.client(http)) for _ in range(plan.clients)]
            try:
                await asyncio.sleep(plan.warm)
                await self._stretch(lambda: self._seen("warm", "valid", 200)
                                    and self._seen("warm", "garbage", 401))
                self.phase = "grace"
                self.lwa.inject(Fault.DOWN)
                await asyncio.sleep(plan.grace)
                self.phase = "outage"
                await asyncio.sleep(plan.outage)
                await self._stretch(lambda: any(p == "outage" for p, _, _ in self.report.matrix)
                                    and (not plan.stale_if_error
                                         or self._seen("outage", "valid", 200)))
                self.phase = "recovery"
                self.lwa.clear_faults()
                await self.recovery_probe(http, time.monotonic())
                if self.report.recovery_seconds is None:
                    self.report.violation(
                        f"no new token resolved within {plan.recovery_bound:.0f}s of LWA's return"
                    )
                else:
                    # Let in-flight lookups that began before the recovery settle.
                    await asyncio.sleep(0.3)
                    self.phase = "after"
                    await asyncio.sleep(plan.after)
            finally:
                self.stop = True
                await asyncio.gather(*workers, return_exceptions=True)
            for task in workers:
                if task.exception() is not None:
                    self.report.violation(f"client failed: {type(task.exception()).__name__}")


def run_soak(lwa: LWAEmulator, plan: Plan, **options: Any) -> Report:
    """Run the outage scenario once against a real server; see the module docstring."""
    lwa.clear_faults()
    options = {"cache_ttl": plan.cache_ttl, "stale_if_error": plan.stale_if_error, **options}
    calls = lwa.calls["tokeninfo"] + lwa.calls["profile"]
    with protected_server(lwa, plan.server, **options) as (url, mw, name):
        report = Report(server=name, stale_if_error=plan.stale_if_error)
        report.rss_before = rss_bytes()
        soak = _Soak(lwa, plan, url, report)
        started = time.monotonic()
        try:
            asyncio.run(soak.run())
        finally:
            lwa.clear_faults()
        report.seconds = time.monotonic() - started
        report.rss_after = rss_bytes()
        report.valid_tokens = len(soak.valid)
        report.garbage_tokens = len(soak.garbage)
        report.tokens = [*soak.valid, *soak.garbage]
        report.stats = mw.stats.snapshot()
    report.lwa_calls = lwa.calls["tokeninfo"] + lwa.calls["profile"] - calls
    return report


# -- the flood -------------------------------------------------------------------------


@dataclass
class FloodReport:
    server: str
    tokens: int
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    rss_before: int = 0
    rss_after: int = 0
    cache_size: int = 0
    cache_maxsize: int = 0
    rejections_size: int = 0
    rejections_maxsize: int = 0
    valid: int = 0
    valid_ok: int = 0
    #: Single-flight lookups still registered once the flood is over (must be 0).
    flights_left: int = 0
    #: Requests the server dropped without an answer, by exception type (must be none).
    transport_errors: Counter[str] = field(default_factory=Counter)

    def problems(self) -> list[str]:
        """Broken rules: anything here is a bug."""
        found = []
        if set(self.statuses) - {200, 401}:
            found.append(f"statuses other than 200/401: {dict(self.statuses)}")
        if self.valid_ok != self.valid:
            found.append(f"only {self.valid_ok} of {self.valid} real tokens resolved correctly")
        if self.cache_size > self.cache_maxsize:
            found.append(f"cache holds {self.cache_size} > {self.cache_maxsize}")
        if self.rejections_size > self.rejections_maxsize:
            found.append(f"negative cache holds {self.rejections_size} > {self.rejections_maxsize}")
        if self.flights_left:
            found.append(f"{self.flights_left} single-flight lookups never cleaned up")
        if self.transport_errors:
            found.append(f"connections dropped: {dict(self.transport_errors)}")
        return found

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        return [
            f"flood server={self.server} tokens={self.tokens} seconds={self.seconds:.1f} "
            f"({self.tokens / max(self.seconds, 1e-9):.0f}/s) statuses={dict(self.statuses)}",
            f"  RSS before={self.rss_before / mib:.1f} MiB after={self.rss_after / mib:.1f} MiB "
            f"growth={(self.rss_after - self.rss_before) / mib:+.1f} MiB",
            f"  cache {self.cache_size}/{self.cache_maxsize} "
            f"rejections {self.rejections_size}/{self.rejections_maxsize} "
            f"valid resolved {self.valid_ok}/{self.valid} flights left {self.flights_left}",
            f"  transport errors {dict(self.transport_errors)}",
        ]


def rejections_size(mw: LWAMiddleware | LWAWSGIMiddleware) -> int:
    # No public accessor for the negative cache's size; read it under its lock.
    cache = mw.resolver.cache
    with cache._lock:
        rejections = cache._rejections
        return len(rejections) if rejections is not None else 0


@contextlib.contextmanager
def emulator_process(client_id: str = "amzn1.application-oa2-client.flood") -> Iterator[str]:
    """An LWA emulator in a child process, so its request log is not in our RSS.

    Yields its base URL; tokens are minted through ``POST /_emulator/tokens``.
    """
    # --quiet: the first line of stdout is the base URL, and nothing else.
    command = ["emulator", "--port", "0", "--quiet", "--client-id", client_id]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwa_middleware", *command],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # it prints its base URL once bound
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError("the emulator process did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def run_flood(
    server: str = "uvicorn",
    tokens: int = 20_000,
    clients: int = 32,
    valid_every: int = 10,
    cache_maxsize: int = 200,
    negative_cache_maxsize: int = 500,
    seed: int = 2,
) -> FloodReport:
    """Distinct random tokens (one in ``valid_every`` a real one) with small caches.

    LWA is an emulator in a child process: RSS is that of the server, the
    middleware and the clients only.
    """
    rng = random.Random(seed)
    client_id = "amzn1.application-oa2-client.flood"
    with (
        emulator_process(client_id) as lwa_url,
        protected_server(
            None,
            server,
            client_id=client_id,
            api_base_url=lwa_url,
            cache_maxsize=cache_maxsize,
            negative_cache_maxsize=negative_cache_maxsize,
        ) as (url, mw, name),
    ):
        report = FloodReport(
            server=name,
            tokens=tokens,
            cache_maxsize=cache_maxsize,
            rejections_maxsize=negative_cache_maxsize,
        )
        issued: dict[str, str] = {}

        async def next_token(i: int, lwa: httpx2.AsyncClient) -> str:
            if i % valid_every == 0:
                user_id = f"amzn1.account.FLOOD{i:021d}"
                minted = await lwa.post("/_emulator/tokens", json={"user_id": user_id})
                token: str = minted.json()["access_token"]
                issued[token] = user_id
                return token
            return garbage_token(rng, rng.random() < 0.2)

        async def flood(count: int) -> None:
            queue = iter(range(count))
            limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
            async with (
                httpx2.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http,
                httpx2.AsyncClient(base_url=lwa_url, timeout=30.0) as lwa,
            ):

                async def worker() -> None:
                    for i in queue:
                        token = await next_token(i, lwa)
                        try:
                            response = await http.get(
                                "/me", headers={"Authorization": f"Bearer {token}"}
                            )
                        except httpx2.TransportError as exc:
                            report.transport_errors[type(exc).__name__] += 1
                            continue
                        report.statuses[response.status_code] += 1
                        if (
                            token in issued
                            and response.status_code == 200
                            and json.loads(response.content)["user_id"] == issued[token]
                        ):
                            report.valid_ok += 1

                await asyncio.gather(*(worker() for _ in range(clients)))

        # Warm up (imports, pools, first allocations) before taking the baseline.
        asyncio.run(flood(min(200, tokens)))
        report.statuses.clear()
        report.valid_ok = 0
        issued.clear()
        report.rss_before = rss_bytes()
        started = time.monotonic()
        asyncio.run(flood(tokens))
        report.seconds = time.monotonic() - started
        report.rss_after = rss_bytes()
        report.cache_size = len(mw.resolver.cache)
        report.rejections_size = rejections_size(mw)
        report.valid = len(issued)
        # Private, but a leak there would grow with every distinct token.
        auth = mw.resolver
        report.flights_left = len(auth._tasks) + len(auth._threads)
    return report


# -- command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of the warm + outage + after phases together (30)",
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--tokens", type=int, default=2000, help="token pool, 30%% garbage (2000)")
    parser.add_argument("--server", choices=["uvicorn", "waitress", "both"], default="both")
    parser.add_argument("--no-stale", action="store_true", help="fail closed during the outage")
    parser.add_argument("--cache-ttl", type=float, default=1.0)
    parser.add_argument(
        "--flood", type=int, default=20_000, help="distinct random tokens in the flood (0 skips it)"
    )
    args = parser.parse_args(argv)
    # waitress warns about every queued task under load; that is the point here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    servers = ["uvicorn", "waitress"] if args.server == "both" else [args.server]
    failed = False
    with LWAEmulator() as lwa:
        for server in servers:
            plan = Plan(
                server=server,
                clients=args.clients,
                tokens=args.tokens,
                warm=args.seconds * 0.5,
                outage=max(0.5, args.seconds * 0.3 - args.cache_ttl),
                after=args.seconds * 0.2,
                stale_if_error=not args.no_stale,
                cache_ttl=args.cache_ttl,
                recovery_bound=max(10.0, args.seconds * 0.2),
            )
            report = run_soak(lwa, plan)
            print("\n".join(report.lines()), flush=True)
            failed |= bool(report.violations)
            if args.flood:
                flood = run_flood(server, tokens=args.flood, clients=args.clients)
                print("\n".join(flood.lines()), flush=True)
                problems = flood.problems()
                print("".join(f"  VIOLATION: {p}\n" for p in problems), end="", flush=True)
                failed |= bool(problems)
            lwa.reset()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
