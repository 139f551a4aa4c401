"""Real sockets: requests/s of uvicorn serving a trivial app, bare vs wrapped.

Three uvicorn processes (one worker each) serve ``asgi_apps.bare``, ``asgi_apps.floor`` and
``asgi_apps.wrapped``; wrk (Debian package ``wrk``) loads them in turns with
the same cached token, a few rounds each, and the medians are compared.

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


def _wrk(port: int, token: str, seconds: int, connections: int) -> float:
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
    assert match, out
    return float(match.group(1))


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
        ports = {"bare": _free_port(), "floor": _free_port(), "wrapped": _free_port()}
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
            order = list(ports)
            for _ in range(rounds):
                # Rotate who goes first: the first run of a round measured
                # consistently slower here, whichever app it was.
                for app in order:
                    results[app].append(_wrk(ports[app], token, seconds, connections))
                order.append(order.pop(0))
            assert sum(emulator.calls.values()) == calls_after_warmup, "only hits measured"
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
    bare = statistics.median(results["bare"])
    floor = statistics.median(results["floor"])
    wrapped = statistics.median(results["wrapped"])

    def ratios(app: str) -> str:
        per_round = [a / b for a, b in zip(results[app], results["bare"], strict=True)]
        low, mid, high = min(per_round), statistics.median(per_round), max(per_round)
        return f"{low:.3f}/{mid:.3f}/{high:.3f}"

    stack = f"{_HTTP} + {_LOOP}, 1 worker, {connections} keep-alive connections, {rounds} rounds"
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
    ]


def main() -> None:
    for row in run():
        print(" | ".join(row))


if __name__ == "__main__":
    main()
