"""Real sockets: requests/s of uvicorn serving a trivial app, bare vs wrapped.

Four uvicorn processes (one worker each) serve ``asgi_apps.bare``,
``asgi_apps.floor``, ``asgi_apps.hashing_floor`` (the floor plus SHA-256 of
the token) and ``asgi_apps.wrapped``; wrk (Debian package ``wrk``) loads them
in turns with the same cached token, a few rounds each, and the medians are
compared.

Two figures per round: requests/s (what the issue's target is written in, and
what other processes on a shared machine disturb most), and the server's CPU
time per request, read from ``/proc/<pid>/stat`` (utime + stime) around each
wrk run and divided by the requests wrk completed. The second is what the
middleware costs the server, and far less sensitive to load: a server that
is descheduled does not accrue CPU time.

Run: ``python benchmarks/bench_uvicorn.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from lwa_middleware.testing import LWAEmulator

HERE = Path(__file__).resolve().parent
# The fast stack when installed (uvicorn[standard]), else the pure-Python one.
_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
_HTTP = "httptools" if importlib.util.find_spec("httptools") else "h11"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"asgi_apps:{app}",
            "--port",
            str(port),
            "--no-access-log",
            "--loop",
            _LOOP,
            "--http",
            _HTTP,
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
    )


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not start on port {port}")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of process ``pid`` (Linux), in seconds."""
    # Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def _wrk(port: int, token: str, seconds: int, connections: int) -> tuple[float, int]:
    """(requests/s, requests completed) of one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Authorization: Bearer {token}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError("wrk saw errors: " + out)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    assert match, out
    assert done, out
    return float(match.group(1)), int(done.group(1))


def run(rounds: int = 6, seconds: int = 3, connections: int = 32) -> list[tuple[str, str, str]]:
    if shutil.which("wrk") is None:
        return [("uvicorn wrapped ÷ bare requests/s", "skipped: wrk not installed", "≥ 0.97")]
    with LWAEmulator() as emulator:
        token = emulator.issue_token(scopes=["profile"])
        env = dict(os.environ)
        env.update(
            LWA_CLIENT_ID=emulator.client_id,
            LWA_API_BASE_URL=emulator.base_url,
            PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
        )
        ports = {
            "bare": _free_port(),
            "floor": _free_port(),
            "hashing_floor": _free_port(),
            "wrapped": _free_port(),
        }
        servers = [_serve(app, port, env) for app, port in ports.items()]
        try:
            for port in ports.values():
                _wait(port)
            response = httpx2.get(
                f"http://127.0.0.1:{ports['wrapped']}/",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text
            calls_after_warmup = sum(emulator.calls.values())
            results: dict[str, list[float]] = {app: [] for app in ports}
            # µs per request: user + system, and user alone (the Python work)
            cpu: dict[str, list[float]] = {app: [] for app in ports}
            user: dict[str, list[float]] = {app: [] for app in ports}
            pids = dict(zip(ports, (server.pid for server in servers), strict=True))
            order = list(ports)
            for _ in range(rounds):
                # Rotate who goes first: the first run of a round measured
                # consistently slower here, whichever app it was.
                for app in order:
                    u0, s0 = _cpu_seconds(pids[app])
                    rate, done = _wrk(ports[app], token, seconds, connections)
                    u1, s1 = _cpu_seconds(pids[app])
                    results[app].append(rate)
                    cpu[app].append((u1 - u0 + s1 - s0) / done * 1e6)
                    user[app].append((u1 - u0) / done * 1e6)
                order.append(order.pop(0))
            assert sum(emulator.calls.values()) == calls_after_warmup, "only hits measured"
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
    bare = statistics.median(results["bare"])
    floor = statistics.median(results["floor"])
    wrapped = statistics.median(results["wrapped"])

    def spread(per_round: list[float]) -> str:
        low, mid, high = min(per_round), statistics.median(per_round), max(per_round)
        return f"{low:.3f}/{mid:.3f}/{high:.3f}"

    def ratios(app: str) -> str:
        return spread([a / b for a, b in zip(results[app], results["bare"], strict=True)])

    def cpu_ratios(app: str, of: dict[str, list[float]] = cpu) -> str:
        # bare's CPU per request ÷ app's, round by round: the requests/s ratio
        # the server's own CPU cost allows, were it CPU-bound.
        return spread([b / a for a, b in zip(of[app], of["bare"], strict=True)])

    def cpu_us(app: str, of: dict[str, list[float]] = cpu) -> float:
        return statistics.median(of[app])

    stack = f"{_HTTP} + {_LOOP}, 1 worker, {connections} keep-alive connections, {rounds} rounds"
    hashing = statistics.median(results["hashing_floor"])
    return [
        (
            f"uvicorn ({stack}), cache hits, wrk: wrapped ÷ bare requests/s",
            f"{ratios('wrapped')} (medians {wrapped:,.0f} vs {bare:,.0f} req/s)",
            "≥ 0.97",
        ),
        (
            "uvicorn, wrk: floor middleware ÷ bare requests/s (what any extra ASGI layer costs)",
            f"{ratios('floor')} ({floor:,.0f} req/s)",
            "(context: the noise)",
        ),
        (
            "uvicorn, wrk: floor + SHA-256 of the token ÷ bare requests/s",
            f"{ratios('hashing_floor')} ({hashing:,.0f} req/s)",
            "(context: the least a safe cache key costs)",
        ),
        (
            "uvicorn, server CPU time per request (/proc/<pid>/stat): bare ÷ wrapped",
            f"{cpu_ratios('wrapped')} (medians {cpu_us('wrapped'):.1f} vs "
            f"{cpu_us('bare'):.1f} µs of CPU per request)",
            "≥ 0.97",
        ),
        (
            "uvicorn, server user-space CPU per request (utime alone): bare ÷ wrapped",
            f"{cpu_ratios('wrapped', user)} (medians {cpu_us('wrapped', user):.1f} vs "
            f"{cpu_us('bare', user):.1f} µs; floor {cpu_us('floor', user):.1f}, "
            f"floor + SHA-256 {cpu_us('hashing_floor', user):.1f} µs)",
            "(context: the Python work)",
        ),
        (
            "uvicorn, server CPU time per request: bare ÷ floor middleware",
            f"{cpu_ratios('floor')} ({cpu_us('floor'):.1f} µs)",
            "(context: any extra layer)",
        ),
        (
            "uvicorn, server CPU time per request: bare ÷ floor + SHA-256",
            f"{cpu_ratios('hashing_floor')} ({cpu_us('hashing_floor'):.1f} µs)",
            "(context: the least a safe cache key costs)",
        ),
    ]


def main() -> None:
    for row in run():
        print(" | ".join(row))


if __name__ == "__main__":
    main()
