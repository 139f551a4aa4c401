"""First token of a fresh worker under real servers (issue 23, target 3).

A real uvicorn worker (``--lifespan on``, its fastest loop and parser) and a
real gunicorn gthread worker serve ``first_token_app.py`` against the LWA
emulator in its own process (TLS, latency L on every call). As soon as the
worker says it is ready (uvicorn: "Uvicorn running on", after its startup; gunicorn:
its ``post_worker_init`` hook, after the app is imported), one connection is
opened and one request with a never-seen token is timed, then a second one
with another fresh token (the floor: the same lookup on warm connections).
The bare app's first request, under the same server, is its own share.
Every round starts a fresh worker. The in-process figure of
``first_token.py`` (what BENCHMARKS.md gave before) is measured in the same
run for comparison. Trust: certifi's bundle plus the emulator's CA, so the
SSL context costs what a real deployment's does.

Run: ``python benchmarks/bench_first_token.py [--rounds 7]``; prints
latency ÷ L, min/median/max, and the LWA requests that arrived before the
first token (the warm start must send none).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import _trust_bundle
from remote_emulator import RemoteEmulator

LATENCY = 0.020
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
_READY = "LWA-BENCH-READY"
_GUNICORN_CONF = (
    f"def post_worker_init(worker):\n    import sys\n    print({_READY!r}, file=sys.stderr)\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(server: str, port: int, conf: str, bare: bool) -> tuple[list[str], str]:
    if server == "uvicorn":
        app = "first_token_app:" + ("bare_asgi" if bare else "asgi")
        argv = ["uvicorn", app, "--lifespan", "on", "--port", str(port)]
        return [sys.executable, "-m", *argv], "Uvicorn running on"  # bound, after startup
    app = "first_token_app:" + ("bare_wsgi" if bare else "wsgi")
    argv = ["gunicorn", "-k", "gthread", "--threads", "4", "--workers", "1", "-c", conf]
    return [sys.executable, "-m", *argv, "-b", f"127.0.0.1:{port}", app], _READY


def _get(connection: http.client.HTTPConnection, token: str) -> float:
    start = time.perf_counter()
    connection.request("GET", "/", headers={"authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    took = time.perf_counter() - start
    assert response.status == 200, response.status
    return took


def one_worker(
    server: str, lwa: RemoteEmulator, env: dict[str, str], conf: str, bare: bool = False
) -> tuple[float, float, int]:
    """(first token s, second token s, LWA calls before the first token) of one
    fresh worker (``bare``: the app alone, its first two requests)."""
    first, second = lwa.mint(2)
    port = _free_port()
    argv, ready = _command(server, port, conf, bare)
    before = sum(lwa.stats()[1].values())
    process = subprocess.Popen(
        argv, cwd=_HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{server} did not start")
        # The rest of its log is read away, so a full pipe never blocks it.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        warm_calls = sum(lwa.stats()[1].values()) - before
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.connect()
        took = _get(connection, first), _get(connection, second)
        connection.close()
        return took[0], took[1], warm_calls
    finally:
        process.terminate()
        process.wait(10)


def in_process(adapter: str, lwa: RemoteEmulator, bundle: str) -> float:
    (token,) = lwa.mint(1)
    out = subprocess.run(
        [
            sys.executable,
            str(_HERE / "first_token.py"),
            adapter,
            "warm",
            lwa.base_url,
            bundle,
            lwa.client_id,
            token,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in (min(values), statistics.median(values), max(values)))


def _measure(rounds: int, in_process_too: bool) -> dict[str, list[Any]]:
    """Every round: a fresh worker of each server, wrapped and bare (and in process)."""
    with RemoteEmulator(tls=True, latency=LATENCY) as lwa, tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "gunicorn_conf.py")
        Path(conf).write_text(_GUNICORN_CONF)
        bundle = _trust_bundle(lwa)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), str(_HERE)]),
            "LWA_API_BASE_URL": lwa.base_url,
            "LWA_VERIFY": bundle,
            "LWA_CLIENT_ID": lwa.client_id,
        }
        results: dict[str, list[Any]] = {}
        try:
            for _ in range(rounds):
                for server in ("uvicorn", "gunicorn"):
                    results.setdefault(server, []).append(one_worker(server, lwa, env, conf))
                    bare = one_worker(server, lwa, env, conf, bare=True)
                    results.setdefault(f"bare {server}", []).append(bare)
                for adapter in ("asgi", "wsgi") if in_process_too else ():
                    results.setdefault(adapter, []).append(in_process(adapter, lwa, bundle))
        finally:
            os.remove(bundle)
    return results


def run(rounds: int = 7, in_process_too: bool = True) -> list[tuple[str, str, str]]:
    """The rows (figure, measured, target); ``benchmarks/run.py`` leaves the
    in-process ones to ``bench_scale.py`` (which also times no warm start)."""
    results = _measure(rounds, in_process_too)
    rows = []
    for server, how in (("uvicorn", "uvicorn worker"), ("gunicorn", "gunicorn gthread worker")):
        firsts = [r[0] / LATENCY for r in results[server]]
        seconds = [r[1] / LATENCY for r in results[server]]
        extra = [(r[0] - r[1]) / LATENCY for r in results[server]]
        sent = sum(r[2] for r in results[server])
        rows.append(
            (
                f"first token of a fresh {how} (real server, warm start), TLS,"
                f" L={LATENCY * 1000:.0f} ms: latency ÷ L",
                f"{_spread(firsts)} (the next token: {_spread(seconds)}; first minus next,"
                f" per worker: {_spread(extra)}; LWA requests before the first token: {sent})",
                "≤ 1.3 (issue 23)",
            )
        )
        bare = [r[0] / LATENCY for r in results[f"bare {server}"]]
        bare_extra = [(r[0] - r[1]) / LATENCY for r in results[f"bare {server}"]]
        what = f"the bare app's first request, fresh {how}: latency ÷ L"
        measured = f"{_spread(bare)} (first minus next, per worker: {_spread(bare_extra)})"
        rows.append((what, measured, "(context: the server's own share)"))
    for adapter in ("asgi", "wsgi") if in_process_too else ():
        values = [v / LATENCY for v in results[adapter]]
        what = f"first token, in process ({adapter.upper()}, first_token.py warm): latency ÷ L"
        rows.append((what, _spread(values), "(context)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}")
    print("| figure | measured | target |\n|---|---|---|")
    for row in run(args.rounds):
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
