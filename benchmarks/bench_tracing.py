"""What OpenTelemetry costs a cache hit (issue 21): with and without a tracer provider.

A tracer provider is process-global and can be set only once, so each mode
runs in a child process of its own:

* ``no opentelemetry``: ``import opentelemetry`` fails (the ``otel`` extra
  is not installed);
* ``no provider``: ``opentelemetry-api`` installed, no provider set (the
  library makes no span, and its hit path is the one without tracing);
* ``SDK provider``: ``opentelemetry-sdk``'s ``TracerProvider`` set, with a
  processor that drops every span, so the figure is the library's span and
  the SDK's bookkeeping, not an exporter's;
* ``baseline <rev>`` (``--baseline REV``): the library as it was at ``REV``
  (``git archive``), no provider: the hit path before tracing existed.

Each child times ASGI and WSGI cache hits in-process (``time.process_time``,
``coroutine.send`` for ASGI as ``bench_ablation.py`` does), ``--rounds`` rounds
of ``--n`` requests, and the parent runs the modes round-robin ``--repeat``
times; figures are medians. Ratios are against ``no provider``.

Run: ``python benchmarks/bench_tracing.py [--baseline main]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHILD = r"""
import functools, json, sys, time
mode, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "absent":
    sys.modules["opentelemetry"] = None
if mode == "sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())  # drops every span
    trace.set_tracer_provider(provider)
import bench_hot_path as hot
from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

with LWAEmulator() as lwa:
    token = lwa.issue_token(scopes=["profile"])
    asgi = LWAMiddleware(hot.bare_app, client_id=lwa.client_id, api_base_url=lwa.base_url)
    wsgi = LWAWSGIMiddleware(hot._wsgi_bare, client_id=lwa.client_id, api_base_url=lwa.base_url)
    scope = hot._scope(token)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/orders", "QUERY_STRING": "page=2",
               "HTTP_AUTHORIZATION": "Bearer " + token, "wsgi.url_scheme": "http"}
    import asyncio
    asyncio.run(asgi(dict(scope), hot._receive, hot._send))
    list(wsgi(dict(environ), lambda *a: None))

def asgi_step(acc, _):
    coro = asgi(dict(scope), hot._receive, hot._send)
    try:
        coro.send(None)
    except StopIteration:
        return acc
    raise RuntimeError("a cache hit suspended")

def wsgi_step(acc, _):
    list(wsgi(dict(environ), start))
    return acc

def start(status, headers, exc_info=None):
    return None

out = {"asgi": [], "wsgi": []}
for name, step in (("asgi", asgi_step), ("wsgi", wsgi_step)):
    functools.reduce(step, range(n // 10), 0)
for _ in range(rounds):
    for name, step in (("asgi", asgi_step), ("wsgi", wsgi_step)):
        began = time.process_time()
        functools.reduce(step, range(n), 0)
        out[name].append((time.process_time() - began) / n * 1e6)
assert asgi.stats.misses == 1 and wsgi.stats.misses == 1, "hits only"
print(json.dumps(out))
"""

MODES = {"no opentelemetry": "absent", "no provider": "none", "SDK provider": "sdk"}


def _baseline(rev: str, into: Path) -> Path:
    """The library at ``rev``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "lwa_middleware"],
        check=True,
        capture_output=True,
    ).stdout
    path = into / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into


def _child(mode: str, library: Path, rounds: int, n: int) -> dict[str, list[float]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(library), str(HERE)])
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(rounds), str(n)],
        env=env,
        cwd=HERE,  # not the repository: "-c" puts the working directory first on sys.path
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(
    rounds: int = 5, n: int = 20_000, repeat: int = 3, baseline: str | None = None
) -> dict[str, dict[str, list[float]]]:
    """Mode -> adapter -> every round's µs per request."""
    with tempfile.TemporaryDirectory() as tmp:
        modes = {label: (mode, REPO) for label, mode in MODES.items()}
        if baseline is not None:
            modes[f"baseline {baseline}"] = ("none", _baseline(baseline, Path(tmp)))
        samples: dict[str, dict[str, list[float]]] = {
            label: {"asgi": [], "wsgi": []} for label in modes
        }
        for _ in range(repeat):
            for label, (mode, library) in modes.items():
                for adapter, values in _child(mode, library, rounds, n).items():
                    samples[label][adapter] += values
    return samples


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def table(samples: dict[str, dict[str, list[float]]]) -> str:
    """Each mode's µs per hit (min / median / max of every round) and the
    ratio of its median to ``no provider``'s, ASGI and WSGI side by side."""
    base = {a: statistics.median(samples["no provider"][a]) for a in ("asgi", "wsgi")}
    lines = [
        "| mode | ASGI hit µs (min / median / max) | ÷ no provider "
        "| WSGI hit µs (min / median / max) | ÷ no provider |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, by in samples.items():
        asgi, wsgi = statistics.median(by["asgi"]), statistics.median(by["wsgi"])
        lines.append(
            f"| {label} | {_spread(by['asgi'])} | {asgi / base['asgi']:.2f} | "
            f"{_spread(by['wsgi'])} | {wsgi / base['wsgi']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="a git revision to compare with (no provider)")
    args = parser.parse_args()
    print(table(measure(args.rounds, args.n, args.repeat, args.baseline)))


if __name__ == "__main__":
    main()
