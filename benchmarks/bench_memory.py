"""Memory per cached identity over 100 000 entries, by RSS and by tracemalloc.

Each entry is built the way the middleware builds it (an ``Identity`` with
unique strings and the *configured* client id string, which the flow
references instead of the copy LWA's answer gave; the cache's ``Entry``;
Starlette credentials shared per scope set) and stored under its token
digest, so the figure includes the key, the dict slot and the expiry
bookkeeping. RSS is read from ``/proc/self/statm`` before and after.

Run: ``python benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import tracemalloc

from lwa_middleware import Identity
from lwa_middleware._engine._asgi_parts import credentials_for
from lwa_middleware._engine.cache import IdentityCache, token_digest
from lwa_middleware._engine.identity import infer_scopes

CLIENT_ID = "amzn1.application-oa2-client.bench"
#: Seconds the deadlines of the second RSS figure spread over (a token lives an hour).
SPREAD = 3000


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def per_entry(count: int = 100_000, trace: bool = True, spread: int = 0) -> float:
    """Bytes per entry; ``spread``: deadlines spread over that many seconds."""
    cache = IdentityCache(maxsize=count, ttl=3600)
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    rss = _rss()
    expires = time.monotonic() + 3600
    for i in range(count):
        user_id = f"amzn1.account.AF{i:024d}"
        name = f"Customer Number {i}"
        email = f"customer.{i}@example.com"
        postal = f"{i % 100000:05d}"
        identity = Identity(
            user_id=user_id,
            name=name,
            email=email,
            postal_code=postal,
            scopes=infer_scopes(user_id=user_id, name=name, email=email, postal_code=postal),
            client_id=CLIENT_ID,
            expires_at=time.time() + 3600,
        )
        key = token_digest(f"Atza|IwEBI{i:0400d}".encode())
        until = expires - spread + i % spread if spread else expires
        entry = cache.make_entry(identity, until, True)
        credentials_for(entry)  # the ASGI adapter's slot, filled on first use
        cache.put(key, entry)
    gc.collect()
    assert len(cache) == count
    if not trace:
        return (_rss() - rss) / count
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / count


def _rss_in_fresh_process(spread: int = 0) -> float:
    # A fresh interpreter: no freed arenas of earlier benchmarks to reuse.
    out = subprocess.run(
        [sys.executable, __file__, "--rss", str(spread)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def run() -> list[tuple[str, str, str]]:
    rss = _rss_in_fresh_process()
    spread = _rss_in_fresh_process(SPREAD)
    size = per_entry()
    return [
        ("memory per cached identity (RSS, 100k entries)", f"{rss:.0f} B", "≤ 750 B"),
        (
            "memory per cached identity (RSS, 100k entries, deadlines spread over 50 min)",
            f"{spread:.0f} B",
            "≤ 750 B",
        ),
        ("memory per cached identity (tracemalloc, 100k entries)", f"{size:.0f} B", "(context)"),
    ]


def main() -> None:
    if sys.argv[1:2] == ["--rss"]:
        print(per_entry(trace=False, spread=int(sys.argv[2]) if sys.argv[2:] else 0))
        return
    for row in run():
        print(" | ".join(row))


if __name__ == "__main__":
    main()
