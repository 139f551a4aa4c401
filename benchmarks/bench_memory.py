"""Memory per cached identity, measured with tracemalloc over 100 000 entries.

Each entry is built the way the middleware builds it (an ``Identity`` with
unique strings, the cache's ``Entry``, Starlette credentials shared per scope
set) and stored under its token digest, so the figure includes the key, the
TLRU bookkeeping and the lock-free mirror.

Run: ``python benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

from lwa_middleware._asgi_parts import credentials_for
from lwa_middleware.cache import IdentityCache, token_digest
from lwa_middleware.identity import Identity, infer_scopes


def per_entry(count: int = 100_000) -> float:
    cache = IdentityCache(maxsize=count, ttl=3600)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
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
            client_id="amzn1.application-oa2-client.bench",
            expires_at=time.time() + 3600,
        )
        key = token_digest(f"Atza|IwEBI{i:0400d}".encode())
        cache.put(key, cache.make_entry(identity, expires, True, credentials_for(identity)))
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(cache) == count
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / count


def run() -> list[tuple[str, str, str]]:
    size = per_entry()
    return [("memory per cached identity (tracemalloc, 100k entries)", f"{size:.0f} B", "≤ 1024 B")]


def main() -> None:
    for row in run():
        print(" | ".join(row))


if __name__ == "__main__":
    main()
