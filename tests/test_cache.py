"""The in-process caches: bounded, entries leaving at their token's expiry, negative cache, keys."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from starlette.testclient import TestClient
from support.clock import FakeClock
from support.private import Entry, IdentityCache, cache_entries, token_digest
from werkzeug.test import Client

from lwa_middleware import Identity, InvalidToken, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

IDENTITY = Identity(
    user_id="amzn1.account.AFUSER000000000000000000001",
    scopes=frozenset({"profile"}),
    client_id="amzn1.application-oa2-client.ours",
    expires_at=time.time() + 3600,
)


def key(token: str) -> bytes:
    return token_digest(token.encode("ascii"))


def test_entry_lives_until_cache_ttl() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=60, clock=clock)
    entry = cache.make_entry(IDENTITY, clock() + 3600, True)
    cache.put(key("a"), entry)
    assert cache.get(key("a")) is entry
    assert len(cache) == 1
    clock.advance(59.9)
    assert cache.get(key("a")) is entry
    clock.advance(0.2)
    assert cache.get(key("a")) is None


def test_entry_never_outlives_the_token() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=3600, clock=clock)
    entry = cache.make_entry(IDENTITY, clock() + 20, True)
    assert entry.fresh_until == clock() + 20
    assert entry.expires_mono == clock() + 20
    cache.put(key("a"), entry)
    assert cache.get(key("a")) is entry
    clock.advance(21)
    assert cache.get(key("a")) is None
    peeked = cache.peek(key("a"))
    # A lock-free read may still see it, but never as fresh.
    assert peeked is None or peeked.fresh_until < clock()


def test_stale_entries_kept_until_token_expiry_but_not_fresh() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=10, keep_stale=True, clock=clock)
    entry = cache.make_entry(IDENTITY, clock() + 40, True)
    cache.put(key("a"), entry)
    clock.advance(15)
    kept = cache.get(key("a"))
    assert kept is entry
    assert kept.fresh_until < clock()
    clock.advance(30)
    assert cache.get(key("a")) is None


def test_fresh_for_shortens_but_never_lengthens() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=10, clock=clock)
    now = clock()
    shorter = cache.make_entry(IDENTITY, now + 3600, True, fresh_for=1)
    assert shorter.fresh_until == now + 1
    longer = cache.make_entry(IDENTITY, now + 3600, True, fresh_for=100)
    assert longer.fresh_until == now + 10


def test_cache_ttl_zero_caches_nothing() -> None:
    cache = IdentityCache(maxsize=10, ttl=0)
    cache.put(key("a"), cache.make_entry(IDENTITY, time.monotonic() + 3600, True))
    assert cache.get(key("a")) is None
    assert len(cache) == 0


def test_maxsize_bounds_the_cache() -> None:
    cache = IdentityCache(maxsize=2, ttl=100)
    for name in ("a", "b", "c", "d"):
        cache.put(key(name), cache.make_entry(IDENTITY, time.monotonic() + 3600, True))
    assert len(cache) == 2
    live = [name for name in ("a", "b", "c", "d") if cache.peek(key(name)) is not None]
    assert len(live) <= 2
    assert cache.get(key("d")) is not None


def test_negative_cache_ttl() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=100, negative_ttl=30, clock=clock)
    error = InvalidToken("rejected")
    cache.reject(key("bad"), error)
    remembered = cache.rejection(key("bad"))
    assert remembered is not None
    assert remembered.description == "rejected"
    # A fresh exception each time: re-raising one instance would chain every
    # request's frames (holding the token) onto its traceback.
    assert remembered is not error
    assert cache.rejection(key("bad")) is not remembered
    assert cache.rejection(key("other")) is None
    clock.advance(29.9)
    assert cache.rejection(key("bad")) is not None
    clock.advance(0.2)
    assert cache.rejection(key("bad")) is None


def test_repeated_rejection_does_not_grow_a_traceback() -> None:
    cache = IdentityCache(maxsize=10, ttl=100, negative_ttl=30)
    cache.reject(key("bad"), InvalidToken("rejected"))
    depths = []
    for _ in range(50):
        try:
            rejection = cache.rejection(key("bad"))
            assert rejection is not None
            raise rejection
        except InvalidToken as exc:
            depth, tb = 0, exc.__traceback__
            while tb is not None:
                depth, tb = depth + 1, tb.tb_next
            depths.append(depth)
    assert max(depths) == 1


def test_revoked_key_is_not_brought_back_by_a_late_put() -> None:
    cache = IdentityCache(maxsize=10, ttl=100)
    identity = Identity(user_id="u", client_id="c", expires_at=time.time() + 100)
    cache.revoke(key("t"), time.monotonic() + 100)
    cache.put(key("t"), cache.make_entry(identity, time.monotonic() + 100, True))
    assert cache.peek(key("t")) is None
    rejection = cache.rejection(key("t"))
    assert rejection is not None
    assert "revoked" in rejection.description


def test_remember_false_is_not_cached() -> None:
    cache = IdentityCache(maxsize=10, ttl=100, negative_ttl=30)
    cache.reject(key("bad"), InvalidToken("inconsistent", remember=False))
    assert cache.rejection(key("bad")) is None


def test_negative_ttl_zero_disables_rejections() -> None:
    cache = IdentityCache(maxsize=10, ttl=100, negative_ttl=0)
    cache.reject(key("bad"), InvalidToken("rejected"))
    assert cache.rejection(key("bad")) is None


def test_rejection_and_entry_replace_each_other() -> None:
    cache = IdentityCache(maxsize=10, ttl=100, negative_ttl=30)
    cache.put(key("t"), cache.make_entry(IDENTITY, time.monotonic() + 3600, True))
    cache.reject(key("t"), InvalidToken("revoked"))
    assert cache.get(key("t")) is None
    assert cache.rejection(key("t")) is not None
    cache.put(key("t"), cache.make_entry(IDENTITY, time.monotonic() + 3600, True))
    assert cache.rejection(key("t")) is None
    cache.discard(key("t"))
    assert cache.get(key("t")) is None
    assert cache.rejection(key("t")) is None


def test_keys_cover_the_whole_token() -> None:
    prefix = "Atza|" + "P" * 1995
    a, b = prefix + "AAAAA", prefix + "AAAAB"
    assert len(a) == len(b) == 2005
    assert key(a) != key(b)
    assert key(prefix) not in (key(a), key(b))
    assert key(a) == key(a)
    assert b"PPPP" not in key(a)
    assert len(key(a)) <= 64


def test_long_shared_prefix_tokens_never_share_an_entry(
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    token = lwa_emulator.issue_token()
    # Same first len(token) characters, one more at the end / last one changed.
    impostors = [token + "x", token[:-1] + ("A" if token[-1] != "A" else "B"), token[:-1]]
    asgi = make_asgi()
    with TestClient(asgi) as client:
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        for impostor in impostors:
            r = client.get("/me", headers={"Authorization": f"Bearer {impostor}"})
            assert r.status_code == 401, impostor[-10:]
    wsgi = make_wsgi()
    wclient = Client(wsgi)
    assert wclient.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for impostor in impostors:
        assert wclient.get("/me", headers={"x-amz-access-token": impostor}).status_code == 401
    wsgi.close()


def test_cache_ttl_in_the_middlewares(
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    token = lwa_emulator.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    clock = FakeClock()
    asgi = make_asgi(cache_ttl=60, clock=clock)
    wsgi = make_wsgi(cache_ttl=60, clock=clock)
    wclient = Client(wsgi)
    with TestClient(asgi) as client:
        for _ in range(3):
            assert client.get("/me", headers=headers).status_code == 200
            assert wclient.get("/me", headers=headers).status_code == 200
        assert lwa_emulator.calls["tokeninfo"] == 2
        clock.advance(59.9)
        assert client.get("/me", headers=headers).status_code == 200
        assert wclient.get("/me", headers=headers).status_code == 200
        assert lwa_emulator.calls["tokeninfo"] == 2
        clock.advance(0.2)
        assert client.get("/me", headers=headers).status_code == 200
        assert wclient.get("/me", headers=headers).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 4
    wsgi.close()


def test_revocation_is_seen_after_cache_ttl_and_invalidate_forgets(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    wsgi = make_wsgi()
    client = Client(wsgi)
    assert client.get("/me", headers=headers).status_code == 200
    lwa_emulator.revoke(token)
    assert client.get("/me", headers=headers).status_code == 200  # cached, by design
    wsgi.invalidate(token)
    assert client.get("/me", headers=headers).status_code == 401
    wsgi.close()


def test_cache_maxsize_in_the_middleware(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    wsgi = make_wsgi(cache_maxsize=2)
    client = Client(wsgi)
    tokens = [lwa_emulator.issue_token() for _ in range(5)]
    for token in tokens:
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert len(wsgi.resolver.cache) <= 2
    wsgi.close()


def _entry(cache: IdentityCache, lives: float, fresh_for: float | None = None) -> Entry:
    return cache.make_entry(IDENTITY, cache.clock() + lives, True, fresh_for=fresh_for)


def test_a_full_cache_drops_the_entry_that_would_leave_soonest() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=3, ttl=3600, clock=clock)
    for name, lives in (("a", 300), ("b", 100), ("c", 200)):
        cache.put(key(name), _entry(cache, lives))
    cache.put(key("d"), _entry(cache, 400))
    assert [n for n in "abcd" if cache.get(key(n)) is not None] == ["a", "c", "d"]
    # Half a second later is later: c goes, not e.
    cache.put(key("e"), _entry(cache, 200.5))
    assert [n for n in "acde" if cache.get(key(n)) is not None] == ["a", "d", "e"]


def test_expired_entries_leave_memory_on_the_next_write() -> None:
    # Not only never served: an expired identity is not kept either.
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=60, clock=clock)
    cache.put(key("a"), _entry(cache, 3600))
    cache.put(key("b"), _entry(cache, 10))
    clock.advance(61)
    cache.put(key("c"), _entry(cache, 3600))
    assert set(cache_entries(cache).data) == {key("c")}
    assert len(cache) == 1


def test_an_entry_stored_again_lives_by_its_new_deadline() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=3600, clock=clock)
    cache.put(key("a"), _entry(cache, 10))
    renewed = _entry(cache, 100)
    cache.put(key("a"), renewed)
    clock.advance(50)
    cache.put(key("b"), _entry(cache, 100))  # a write runs the expiry
    assert cache.get(key("a")) is renewed
    clock.advance(51)
    assert cache.get(key("a")) is None
    # Shortened instead: it leaves at the new, earlier deadline.
    cache.put(key("c"), _entry(cache, 100))
    cache.put(key("c"), _entry(cache, 5))
    clock.advance(6)
    assert cache.get(key("c")) is None


def test_churn_does_not_grow_the_expiry_queues() -> None:
    # Entries removed before their deadline (invalidate, reject) leave their
    # key queued; the queues are rebuilt before they hold twice the items.
    clock = FakeClock()
    cache = IdentityCache(maxsize=1000, ttl=3600, clock=clock)
    for i in range(5000):
        cache.put(key(f"t{i}"), _entry(cache, 3600))
        cache.discard(key(f"t{i}"))
    cache.put(key("kept"), _entry(cache, 3600))
    entries = cache_entries(cache)
    assert entries._queued <= 2 * len(entries.data) + 64
    assert cache.get(key("kept")) is not None


def test_the_negative_cache_is_bounded() -> None:
    clock = FakeClock()
    cache = IdentityCache(maxsize=10, ttl=100, negative_maxsize=3, clock=clock)
    for i in range(5):
        clock.advance(1)
        cache.reject(key(f"bad{i}"), InvalidToken("rejected"))
    held = [i for i in range(5) if cache.rejection(key(f"bad{i}")) is not None]
    assert held == [2, 3, 4]


def test_cache_bookkeeping_per_entry_is_small() -> None:
    # The container's own bytes per entry (dict slot, expiry bookkeeping),
    # with the entries and keys built beforehand: cachetools' TLRU cache and
    # its lock-free mirror took about 250 B; the target is 750 B per cached
    # identity in all (benchmarks/bench_memory.py), of which ~680 are the
    # identity, its entry, key and dict slot.
    count = 20_000
    clock = FakeClock()
    cache = IdentityCache(maxsize=count, ttl=3600, clock=clock)
    items = [(key(f"t{i}"), _entry(cache, 3600 + i % 600)) for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k, entry in items:
            cache.put(k, entry)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == count
    assert grown / count < 100, f"{grown / count:.0f} B per entry"
