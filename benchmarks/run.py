"""Run every benchmark and print one Markdown table (``--write`` also saves BENCHMARKS.md).

Run: ``python benchmarks/run.py [--write] [--quick] [--flood]`` (``--flood``:
only the garbage-flood benchmark, ``bench_flood.py``). Figures are ratios of
variants measured side by side in one run, since shared machines are noisy.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_ablation  # noqa: E402
import bench_cold_path  # noqa: E402
import bench_first_token  # noqa: E402
import bench_flood  # noqa: E402
import bench_hot_path  # noqa: E402
import bench_http_clients  # noqa: E402
import bench_memory  # noqa: E402
import bench_scale  # noqa: E402
import bench_uvicorn  # noqa: E402

from lwa_middleware.testing import LWAEmulator  # noqa: E402


def _hot_rows(rounds: int, n: int) -> list[tuple[str, str, str]]:
    with LWAEmulator() as emulator:
        asgi = bench_hot_path.bench_asgi(emulator, rounds=rounds, n=n)
        wsgi = bench_hot_path.bench_wsgi(emulator, rounds=rounds, n=n)
    lwa, star, floor = (
        asgi["LWAMiddleware"],
        asgi["Starlette AuthenticationMiddleware"],
        asgi["floor middleware"],
    )
    wlwa, wfloor = wsgi["LWAWSGIMiddleware"], wsgi["floor middleware"]
    return [
        (
            "ASGI cache hit ÷ Starlette AuthenticationMiddleware (dict backend)",
            f"{lwa / star:.2f} ({lwa:.2f} vs {star:.2f} µs/request)",
            "≤ 0.6",
        ),
        (
            "ASGI cache hit ÷ Starlette AuthenticationMiddleware, dict backend keyed on the "
            "token's SHA-256 (as a safe cache must be)",
            f"{lwa / asgi['Starlette AuthenticationMiddleware, SHA-256 key']:.2f} "
            f"({asgi['Starlette AuthenticationMiddleware, SHA-256 key']:.2f} µs/request)",
            "(context)",
        ),
        (
            "ASGI cache hit ÷ bare floor middleware",
            f"{lwa / floor:.2f} ({lwa:.2f} vs {floor:.2f} µs; bare app {asgi['bare app']:.2f} µs)",
            "≤ 1.3",
        ),
        (
            "ASGI cache hit ÷ floor that also hashes the token (SHA-256)",
            f"{lwa / asgi['floor + SHA-256']:.2f} ({asgi['floor + SHA-256']:.2f} µs)",
            "(context)",
        ),
        (
            "WSGI cache hit ÷ bare WSGI floor",
            f"{wlwa / wfloor:.2f} ({wlwa:.2f} vs {wfloor:.2f} µs;"
            f" bare app {wsgi['bare app']:.2f} µs)",
            "≤ 1.5",
        ),
        (
            "WSGI cache hit ÷ WSGI floor that also hashes the token (SHA-256)",
            f"{wlwa / wsgi['floor + SHA-256']:.2f} ({wsgi['floor + SHA-256']:.2f} µs)",
            "(context)",
        ),
    ]


def _shared_section() -> str:
    """bench_shared_cache.py's own tables (it starts its own redis-server)."""
    script = HERE / "bench_shared_cache.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        return "\n### Shared Redis cache\n\nfailed: " + out.stderr.strip()[-300:] + "\n"
    return "\n### Shared Redis cache (`benchmarks/bench_shared_cache.py`)\n\n" + out.stdout


def _ablation_section(rounds: int, n: int) -> str:
    """bench_ablation.py's table: where an ASGI cache hit's µs and instructions go."""
    return (
        "\n### Where an ASGI cache hit goes (`benchmarks/bench_ablation.py`)\n\n"
        + bench_ablation.table(rounds, n)
    )


def _flood_section() -> str:
    """bench_flood.py's figures: a garbage flood must not open the breaker."""
    rows = bench_flood.run(rounds=3)
    return (
        "\n### Garbage-token flood at a healthy, slow LWA (`benchmarks/bench_flood.py`)\n\n"
        "| figure | measured | target |\n|---|---|---|\n"
        + "".join("| " + " | ".join(row) + " |\n" for row in rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="also write BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument(
        "--flood", action="store_true", help="only the garbage-flood benchmark (bench_flood.py)"
    )
    args = parser.parse_args()
    rounds, n = (3, 5_000) if args.quick else (7, 20_000)

    rows: list[tuple[str, str, str]] = []
    if not args.flood:
        rows += _hot_rows(rounds, n)
        rows += bench_cold_path.run(n=5 if args.quick else 15)
        rows += bench_scale.run(rounds=1 if args.quick else 3)
        rows += bench_first_token.run(rounds=3 if args.quick else 7, in_process_too=False)
        rows += bench_http_clients.run(rounds=1 if args.quick else 3)
        rows += bench_uvicorn.run(rounds=3 if args.quick else 6, seconds=2 if args.quick else 3)
        rows += bench_memory.run()

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    date = os.environ.get("BENCH_DATE") or datetime.date.today().isoformat()
    header = (
        f"Measured {date} on {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"command: `python benchmarks/run.py{' --quick' if args.quick else ''}"
        f"{' --flood' if args.flood else ''}`.\n\n"
    )
    table = "| figure | measured | target |\n|---|---|---|\n" + "".join(
        "| " + " | ".join(row) + " |\n" for row in rows
    )
    shared = "" if args.flood else _ablation_section(rounds, n)
    shared += "" if args.quick or args.flood else _shared_section()
    flood = _flood_section()
    if args.flood:
        print(header + flood.lstrip("\n"))
        return
    print(header + table + shared + flood)
    if args.write:
        (HERE.parent / "BENCHMARKS.md").write_text(
            "# Benchmarks\n\n" + header + table + shared + flood + "\nSee benchmarks/*.py for what "
            "each figure measures and how.\n"
        )


if __name__ == "__main__":
    main()
