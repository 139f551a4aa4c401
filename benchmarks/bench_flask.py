"""WSGI cache hits: the Flask extension, the WSGI middleware and their floors.

Variants, all called with the same request (a cached token in ``Authorization:
Bearer``, ``GET /api/orders?page=2``):

* bare WSGI: the bare app, a floor (read the header, a dict lookup, set one
  key), the floor plus the whole-token SHA-256 every safe cache key costs,
  and :class:`~lwa_middleware.LWAWSGIMiddleware`;
* Flask: a plain Flask app, the same app with ``app.wsgi_app`` wrapped in
  :class:`~lwa_middleware.LWAWSGIMiddleware`, with a ``before_request`` hook
  that only reads the request and sets ``g.x`` (the least an extension that
  judges inside Flask pays), and with the
  :class:`~lwa_middleware.integrations.flask.LWA` extension.

Measured like ``bench_ablation.py``: instructions per request under
callgrind (load-independent; valgrind hashes in software, so the SHA-256
rows count more than the hardware runs), and CPU µs per request,
variants round-robin, min/median/max over rounds.

Run: ``python benchmarks/bench_flask.py [--rounds N] [--no-callgrind]``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_ablation  # noqa: E402
import bench_hot_path as hot  # noqa: E402
from flask import Flask, g, request  # noqa: E402

from lwa_middleware import LWAWSGIMiddleware  # noqa: E402
from lwa_middleware.integrations.flask import LWA  # noqa: E402
from lwa_middleware.testing import LWAEmulator  # noqa: E402


def _start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
    return None


def _flask_app() -> Flask:
    app = Flask("bench")

    @app.get("/api/orders")
    def orders() -> str:
        return "ok"

    return app


def _noop_hook() -> None:
    # What any extension judging inside Flask pays at least: a hook, a
    # request context lookup and a g attribute set.
    request._get_current_object()  # type: ignore[attr-defined]
    g.x = None


def build(emulator: LWAEmulator) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """(environ, variant name -> WSGI app, the middlewares whose misses must stay 1)."""
    token = emulator.issue_token(scopes=["profile"])
    while len(token) != bench_ablation.TOKEN_LENGTH:
        token = emulator.issue_token(scopes=["profile"])
    # A generous timeout: under valgrind the one lookup each runs ~50 times slower.
    options = {"client_id": emulator.client_id, "api_base_url": emulator.base_url, "timeout": 60.0}
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/api/orders",
        "QUERY_STRING": "page=2",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "api.example.com",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "bench",
        "HTTP_AUTHORIZATION": "Bearer " + token,
        "wsgi.url_scheme": "https",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    digest = hashlib.sha256(token.encode()).digest()
    wsgi = LWAWSGIMiddleware(hot._wsgi_bare, **options)
    wrapped = _flask_app()
    wrapped.wsgi_app = LWAWSGIMiddleware(wrapped.wsgi_app, **options)  # type: ignore[method-assign]
    extended = _flask_app()
    extension = LWA(extended, **options)
    hooked = _flask_app()
    hooked.before_request(_noop_hook)
    apps: dict[str, Any] = {
        "WSGI bare app": hot._wsgi_bare,
        "WSGI floor": hot._wsgi_floor({token: object()}),
        "WSGI floor + SHA-256": hot._wsgi_hashing_floor({digest: object()}),
        "LWAWSGIMiddleware": wsgi,
        "plain Flask": _flask_app(),
        "Flask, app.wsgi_app = LWAWSGIMiddleware": wrapped,
        "Flask, a before_request hook that sets g.x": hooked,
        "Flask, LWA extension": extended,
    }
    guarded = [wsgi, wrapped.wsgi_app, extension.middleware(extended)]
    for app in (wsgi, wrapped, extended):  # warm the caches: one lookup each
        _run(app, environ)
    return environ, apps, guarded


def _run(app: Any, environ: dict[str, Any]) -> None:
    body = app(dict(environ), _start_response)
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _stepper(app: Any, environ: dict[str, Any]) -> Callable[[int, int], int]:
    def step(acc: int, _: int) -> int:
        _run(app, environ)  # a fresh environ per request, as a server gives
        return acc

    return step


def _check(guarded: Iterable[Any]) -> None:
    for middleware in guarded:
        assert middleware.stats.misses == 1, "the benchmark must measure cache hits only"


def timings(rounds: int = 7, n: int = 20_000) -> dict[str, list[float]]:
    """Variant -> µs per request of each round (CPU time, round-robin)."""
    with LWAEmulator() as emulator:
        environ, apps, guarded = build(emulator)
    steps = {name: _stepper(app, environ) for name, app in apps.items()}
    for step in steps.values():
        functools.reduce(step, range(n // 10), 0)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.process_time()
            functools.reduce(step, range(n), 0)
            samples[name].append((time.process_time() - start) / n * 1e6)
    _check(guarded)
    return samples


def _child(n: int) -> None:
    """Under callgrind: one reduce() per variant, names in dump order on stdout."""
    with LWAEmulator() as emulator:
        environ, apps, guarded = build(emulator)
    steps = {name: _stepper(app, environ) for name, app in apps.items()}
    for step in steps.values():  # warm-up (specialised bytecode), not in a reduce()
        for i in range(300):
            step(0, i)
    for step in steps.values():
        functools.reduce(step, range(n), 0)
    _check(guarded)
    print(json.dumps({"names": list(steps), "n": n}))


def table(rounds: int = 7, n: int = 20_000, callgrind: bool = True) -> str:
    """The variants as a Markdown table, and the ratios the targets name."""
    times = timings(rounds, n)
    counts = bench_ablation.instructions(script=__file__) if callgrind else None
    lines = [
        "| variant | µs/request min/median/max | instructions/request |",
        "|---|---|---:|",
    ]
    for name, values in times.items():
        count = f"{counts[name]:,.0f}" if counts else "n/a"
        lines.append(
            f"| {name} | {min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f} "
            f"| {count} |"
        )

    def ratio(a: str, b: str) -> str:
        t = statistics.median(times[a]) / statistics.median(times[b])
        i = f", instructions {counts[a] / counts[b]:.2f}" if counts else ""
        return f"µs {t:.2f}{i}"

    def gap(a: str, b: str) -> str:
        t = statistics.median(times[a]) - statistics.median(times[b])
        i = f", instructions {counts[a] - counts[b]:+,.0f}" if counts else ""
        return f"µs {t:+.2f}{i}"

    lines += [
        "",
        "- LWAWSGIMiddleware ÷ WSGI floor + SHA-256: "
        f"{ratio('LWAWSGIMiddleware', 'WSGI floor + SHA-256')}",
        "- Flask extension minus Flask with the middleware: "
        f"{gap('Flask, LWA extension', 'Flask, app.wsgi_app = LWAWSGIMiddleware')}",
        f"- Flask extension ÷ plain Flask: {ratio('Flask, LWA extension', 'plain Flask')}",
        f"- Flask with the middleware ÷ plain Flask: "
        f"{ratio('Flask, app.wsgi_app = LWAWSGIMiddleware', 'plain Flask')}",
        "- Flask extension minus the least hook: "
        f"{gap('Flask, LWA extension', 'Flask, a before_request hook that sets g.x')}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_ablation.cli(__doc__, _child, table)


if __name__ == "__main__":
    main()
