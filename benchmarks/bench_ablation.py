"""Where the µs of an ASGI cache hit go: the middleware with each stage stubbed in turn.

Variants, all called with the same request (a cached token in ``Authorization:
Bearer`` among six other headers, ``GET /api/orders?page=2``):

* the bare app, a floor middleware (find the header, a dict lookup, set one
  key), the floor plus the whole-token SHA-256 every safe cache key costs;
* the full :class:`~lwa_middleware.LWAMiddleware`, as servers run it;
* the control: the full middleware's ``__call__`` recompiled here with
  nothing replaced, on a copied instance (a copy's attributes live in a real
  dict, a few hundred instructions slower to read); the stubbed variants
  are compared with it;
* the full middleware with one stage stubbed: its ``__call__`` is recompiled
  here from the library's own source with that stage's lines replaced by a
  constant (the exact text replaced is listed in :data:`STAGES`; a stage whose
  text is no longer in the source fails loudly instead of measuring nothing).
  Nothing in the library is changed.

Each variant is measured two ways:

* **instructions per request**, under ``valgrind --tool=callgrind`` (exact and
  load-independent: a shared machine cannot disturb it). The requests run
  inside one ``functools.reduce`` call per variant, and callgrind counts only
  inside that C function and dumps after each call. One caveat: valgrind's
  CPU has no SHA extensions, so OpenSSL hashes in software there and the
  SHA-256 rows count more instructions than the hardware runs (natively a
  444-byte token's ``sha256().digest()`` is ~0.55 µs, ~0.42 µs of it
  OpenSSL's fixed per-hash set-up, which any SHA-256 from Python pays);
* **µs per request**, CPU time of this process (``time.process_time``),
  variants round-robin, min/median/max over rounds.

Requests are driven without an event loop (``coroutine.send``: a cache hit
never suspends), which every variant pays alike.

Run: ``python benchmarks/bench_ablation.py [--rounds N] [--no-callgrind]``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_hot_path as hot  # noqa: E402

import lwa_middleware._engine.asgi as asgi_module  # noqa: E402
from lwa_middleware import LWAMiddleware  # noqa: E402
from lwa_middleware.testing import LWAEmulator  # noqa: E402

#: Characters in the benchmark's token (the emulator mints 380 to 500).
TOKEN_LENGTH = 444

#: Stage name -> (what stubbing it means, [(library source text, replacement)]).
#: Stubs read ``_S`` (the request's precomputed values), injected into the
#: recompiled function's globals.
STAGES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "route lookup": (
        "the policy is a constant",
        [
            ("policy = self._lookup_mounted(path, root_path)", "policy = _S.policy"),
            ("policy = memo_get(path) or self._lookup(path)", "policy = _S.policy"),
        ],
    ),
    "header scan": (
        "the raw token is a constant, no header is read",
        [
            ("raw = None", "raw = _S.raw"),
            ("seen = 0", "seen = 1"),
            ("for name, value in scope[\"headers\"]:", "for name, value in ():"),
        ],
    ),
    "query check": (
        "the query string is not read",
        [
            (
                "if query and (_PERCENT in query or query.find(b\"access_token\") >= 0):",
                "if False:",
            ),
            ("query = scope.get(\"query_string\")", "pass"),
        ],
    ),
    "SHA-256": ("the digest is a constant", [("sha256(raw).digest()", "_S.digest")]),
    "cache probe": ("the entry is a constant", [("peek(_S.digest)", "_S.entry")]),
    "freshness + scope check": (
        "no clock read, no subset test",
        [
            ("or entry.fresh_until <= clock()", ""),
            ("or not policy.hot <= entry.holds", ""),
        ],
    ),
    "stats + event": (
        "no counter, no on_event call",
        [
            ("self._stats.hits += 1", "pass"),
            ("if self._hooked:", "if False:"),
        ],
    ),
    "identity attach": (
        "nothing written to the scope",
        [
            ("scope[\"lwa.identity\"] = scope[\"user\"] = entry.identity", "pass"),
            ("scope[REALM_KEY] = self._realm", "pass"),
            ("scope[\"auth\"] = entry.extra", "pass"),
        ],
    ),
}


class _Values:
    """What the stubs return: the values the real stages compute for the request."""

    def __init__(self, lwa: LWAMiddleware, scope: dict[str, Any], token: str) -> None:
        self.policy = lwa.gate.policy(scope["path"], scope.get("root_path", ""))
        self.raw = token.encode()
        self.digest = hashlib.sha256(self.raw).digest()
        self.entry = lwa.resolver.cache.peek(self.digest)
        assert self.entry is not None, "warm the cache first"


#: The methods of the hit path, recompiled with the stubs.
METHODS = ("__call__", "_hit")


def _source() -> str:
    return "\n".join(
        textwrap.dedent(inspect.getsource(getattr(LWAMiddleware, name))) for name in METHODS
    )


def _stubbed(replacements: list[tuple[str, str]], values: _Values) -> type[LWAMiddleware]:
    """A subclass whose hit path (:data:`METHODS`) has ``replacements`` applied."""
    source = _source()
    for old, new in replacements:
        if old not in source:
            raise RuntimeError(f"stage text not found in LWAMiddleware's hit path: {old!r}")
        source = source.replace(old, new)
    namespace: dict[str, Any] = dict(vars(asgi_module), _S=values)
    exec(compile(source, "<ablated LWAMiddleware hit path>", "exec"), namespace)
    return type("Ablated", (LWAMiddleware,), {name: namespace[name] for name in METHODS})


def _chain(*stages: str) -> list[tuple[str, str]]:
    replacements: list[tuple[str, str]] = []
    for stage in stages:
        replacements += STAGES[stage][1]
    return replacements


def build(emulator: LWAEmulator) -> tuple[dict[str, Any], dict[str, Any], LWAMiddleware]:
    """(scope, variant name -> ASGI app, the full middleware), its cache warmed."""
    token = emulator.issue_token(scopes=["profile"])
    while len(token) != TOKEN_LENGTH:  # SHA-256's cost depends on it: fix it across runs
        token = emulator.issue_token(scopes=["profile"])
    options = {"client_id": emulator.client_id, "api_base_url": emulator.base_url}
    # The full one is never copied: copying an object reads its __dict__,
    # which makes CPython keep a real dict for its attributes from then on
    # (slower attribute reads). The variants are copies of ``template``.
    lwa = LWAMiddleware(hot.bare_app, timeout=60.0, **options)
    template = LWAMiddleware(hot.bare_app, timeout=60.0, **options)
    scope = hot._scope(token)
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        for middleware in (lwa, template):
            loop.run_until_complete(middleware(dict(scope), hot._receive, hot._send))
    finally:
        # As asyncio.run does: the middleware's HTTP session closes when its loop shuts down.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert lwa.stats.misses == template.stats.misses == 1
    values = _Values(lwa, scope, token)

    def ablated(*stages: str) -> Any:
        variant = copy.copy(template)  # shares the resolver, so the same warm cache
        variant.__class__ = _stubbed(_chain(*stages), values)
        return variant

    apps: dict[str, Any] = {
        "bare app": hot.bare_app,
        "floor middleware": hot.FloorMiddleware(hot.bare_app, {values.raw: object()}),
        "floor + SHA-256": hot.HashingFloorMiddleware(hot.bare_app, {values.digest: object()}),
        "LWAMiddleware (full)": lwa,
        # The control: recompiled here with nothing replaced, on a copy like
        # every stubbed variant: the Δ columns are against it.
        "full, recompiled, nothing stubbed": ablated(),
    }
    for stage in STAGES:
        # The cache probe is only stubbable once the digest is a constant.
        stages = ("SHA-256", stage) if stage == "cache probe" else (stage,)
        label = " + ".join(stages)
        apps[f"full, {label} stubbed"] = ablated(*stages)
    apps["full, every stage stubbed"] = ablated(*STAGES)
    return scope, apps, lwa


def _stepper(app: Any, scope: dict[str, Any]) -> Callable[[int, int], int]:
    headers, receive, send = scope["headers"], hot._receive, hot._send

    def step(acc: int, _: int) -> int:
        # A fresh scope per request, as a server gives; every variant pays it.
        fresh = dict(scope)
        fresh["headers"] = headers
        coro = app(fresh, receive, send)
        try:
            coro.send(None)
        except StopIteration:
            return acc
        raise RuntimeError("a cache hit suspended")

    return step


def _check(apps: dict[str, Any], scope: dict[str, Any], lwa: LWAMiddleware) -> None:
    """Every variant answers (and the full one from the cache, not LWA)."""
    for app in apps.values():
        functools.reduce(_stepper(app, scope), range(50), 0)
    assert lwa.stats.misses == 1, "the ablation must measure cache hits only"


def timings(rounds: int = 7, n: int = 20_000) -> dict[str, list[float]]:
    """Variant -> µs per request of each round (CPU time, round-robin)."""
    with LWAEmulator() as emulator:
        scope, apps, lwa = build(emulator)
    _check(apps, scope, lwa)
    steps = {name: _stepper(app, scope) for name, app in apps.items()}
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for step in steps.values():
        functools.reduce(step, range(n // 10), 0)
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.process_time()
            functools.reduce(step, range(n), 0)
            samples[name].append((time.process_time() - start) / n * 1e6)
    return samples


def _child(n: int) -> None:
    """Under callgrind: one reduce() per variant, names in dump order on stdout."""
    with LWAEmulator() as emulator:
        scope, apps, lwa = build(emulator)
    steps = {name: _stepper(app, scope) for name, app in apps.items()}
    for step in steps.values():  # warm-up (specialised bytecode), not in a reduce()
        for i in range(300):
            step(0, i)
    assert lwa.stats.misses == 1
    for step in steps.values():
        functools.reduce(step, range(n), 0)
    print(json.dumps({"names": list(steps), "n": n}))


def instructions(n: int = 2_000, script: str = __file__) -> dict[str, float] | None:
    """Variant -> instructions per request, or ``None`` without valgrind.

    ``script --child N`` must run each variant's requests in one
    ``functools.reduce`` call and print ``{"names": [...], "n": N}`` last
    (as :func:`_child` does; ``bench_flask.py`` reuses this)."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                "--dump-after=functools_reduce",
                f"--callgrind-out-file={out}/cg.out",
                sys.executable,
                script,
                "--child",
                str(n),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=True,
        )
        meta = json.loads(proc.stdout.strip().splitlines()[-1])
        dumps = sorted(
            (p for p in Path(out).iterdir() if p.name.startswith("cg.out.")),
            key=lambda p: int(p.name.rsplit(".", 1)[1]),
        )
        totals = []
        for dump in dumps:
            for line in dump.read_text().splitlines():
                if line.startswith("totals:"):
                    totals.append(int(line.split()[1]))
        # The last len(names) dumps are the measured reduce() calls, in order.
        measured = totals[-len(meta["names"]) :]
        names, n = meta["names"], meta["n"]
        return {name: total / n for name, total in zip(names, measured, strict=True)}


def table(rounds: int = 7, n: int = 20_000, callgrind: bool = True) -> str:
    """The ablation as a Markdown table."""
    times = timings(rounds, n)
    counts = instructions() if callgrind else None
    control = "full, recompiled, nothing stubbed"
    full_t = statistics.median(times[control])
    full_i = counts[control] if counts else 0.0
    lines = [
        "| variant | µs/request min/median/max | Δ µs vs control | instructions/request "
        "| Δ instructions vs control |",
        "|---|---|---:|---:|---:|",
    ]
    for name, values in times.items():
        mid = statistics.median(values)
        count = f"{counts[name]:,.0f}" if counts else "n/a"
        delta_i = f"{counts[name] - full_i:+,.0f}" if counts else "n/a"
        lines.append(
            f"| {name} | {min(values):.2f}/{mid:.2f}/{max(values):.2f} | {mid - full_t:+.2f} "
            f"| {count} | {delta_i} |"
        )
    stubs = "; ".join(f"{stage}: {what}" for stage, (what, _) in STAGES.items())
    return "\n".join(lines) + f"\n\nStubs: {stubs}.\n"


def cli(description: str | None, child: Callable[[int], None], make: Callable[..., str]) -> None:
    """The command line of this benchmark and of ``bench_flask.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(make(args.rounds, args.n, callgrind=not args.no_callgrind))


def main() -> None:
    cli(__doc__, _child, table)


if __name__ == "__main__":
    main()
