"""Issue 18, items 4 and 5: the revocation channel checks the seal first, and
the fleet converges within about a second after Redis loses its data.

Every test runs several middlewares (each with its own in-process cache and
its own subscriber thread, standing for a worker) against one real
``redis-server`` and the LWA emulator, served by ``wsgiref`` so ``revoke()``
is a plain call. Real waits are polled against generous bounds; the data-loss
tests hold the fleet to the issue's target (every worker refuses a
logged-out token within 5 s) and print what they measured.

Amazon facts: none beyond the emulator's tokeninfo (see LWA-FACTS.md); a
revocation is this library's own logout, LWA keeps vouching for the token
(assumption the emulator follows: LWA documents no token revocation call).
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from shared_cache_support import RedisServer, redis_binary, wsgi_server
from support.private import (
    CATCH_UP_PAGE,
    CHANNEL,
    MAX_MESSAGE,
    STREAM,
    private_fleet,
    token_digest,
)

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

#: The issue's target: a logged-out token refused by every worker within 5 s.
TARGET = 5.0
#: The bound for a push on a live channel: generous for a loaded 2-core machine.
BOUND = 3.0
SECRET_KEY = "lwa:v1:secret"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    srv = RedisServer(binary)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def rclient(server: RedisServer) -> Iterator[redis.Redis]:
    with server.client() as client:
        client.flushall()
        yield client


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


@pytest.fixture
def fleet_of(
    make_wsgi: Callable[..., Any], server: RedisServer, rclient: redis.Redis
) -> Iterator[Callable[..., list[tuple[Any, str]]]]:
    """``fleet_of(count, **options)``: ``count`` served WSGI workers sharing
    the test's Redis, as ``(middleware, base URL)``; closed at the end."""
    with contextlib.ExitStack() as stack:

        def start(count: int, **options: Any) -> list[tuple[Any, str]]:
            options.setdefault("redis_url", server.url)
            options.setdefault("redis_timeout", 0.5)
            made = []
            for _ in range(count):
                mw = make_wsgi(**options)
                stack.callback(mw.close)
                made.append((mw, stack.enter_context(wsgi_server(mw))))
            return made

        yield start


def wait_for(condition: Callable[[], bool], bound: float) -> float:
    """Poll ``condition`` (real servers are acting); the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > bound:
            raise AssertionError(f"not within {bound} s")
        time.sleep(0.01)
    return time.monotonic() - started


def status(http: httpx2.Client, base: str, token: str) -> int:
    return http.get(base + "/me", headers={"Authorization": f"Bearer {token}"}).status_code


def fleet(mw: Any) -> Any:
    return private_fleet(mw)


def subscribed(mw: Any) -> bool:
    return fleet(mw) is not None and fleet(mw).subscribed


def hold(http: httpx2.Client, workers: list[tuple[Any, str]], token: str) -> None:
    """Every worker looks ``token`` up (and holds it), and is subscribed."""
    for _, base in workers:
        assert status(http, base, token) == 200
    wait_for(lambda: all(subscribed(mw) for mw, _ in workers), 15)


def announcements(client: redis.Redis) -> int:
    """Messages announced so far: the stream's entries but the subscribers' markers."""
    return sum(1 for _, fields in client.xrange(STREAM) if fields.get(b"m") != b"hello")


# -- item 4: the seal first ------------------------------------------------------


def test_a_forged_huge_stream_id_does_not_silence_later_pushes(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    (a, _), (b, ub) = workers = fleet_of(2)
    earlier, token = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    hold(http, workers, earlier)
    hold(http, workers, token)
    listener = rclient.pubsub()
    listener.subscribe(CHANNEL)
    a.revoke(earlier)
    wait_for(lambda: status(http, ub, earlier) == 401, BOUND)
    genuine = None
    while genuine is None:
        message = listener.get_message(timeout=2)
        assert message is not None
        if message["type"] == "message":
            genuine = message["data"].partition(b" ")[2]
    listener.close()
    # Someone who can PUBLISH, without the secret: a garbage seal, and a
    # genuine sealed message replayed, each under a stream id far ahead.
    rclient.publish(CHANNEL, b"99999999999999-0 " + b"0" * 64 + b" r " + b"a" * 64 + b" 1")
    rclient.publish(CHANNEL, b"99999999999999-1 " + genuine)
    rclient.publish(CHANNEL, b"18446744073709551615-18446744073709551615 " + genuine)
    wait_for(lambda: fleet(b).forged >= 1, BOUND)
    time.sleep(0.2)  # let the replays land before the real revocation
    a.revoke(token)
    wait_for(lambda: status(http, ub, token) == 401, BOUND)
    assert b.resolver.cache.rejection(token_digest(token.encode())) is not None
    # Nor can one break the next reconnect: ids beyond Redis's own (each part
    # is 64-bit), or where the stream holds no such message, are not resumed from.
    later = lwa_emulator.issue_token()
    hold(http, workers, later)
    rclient.publish(CHANNEL, b"99999999999999999999-0 " + genuine)
    time.sleep(0.2)
    connects = fleet(b).connects
    rclient.client_kill_filter(_type="pubsub")
    wait_for(lambda: fleet(b).connects > connects and subscribed(b), 15)
    a.revoke(later)
    wait_for(lambda: status(http, ub, later) == 401, BOUND)


def test_malformed_pushes_are_counted_and_dropped_and_the_loop_lives(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    (a, _), (b, ub) = workers = fleet_of(2)
    token = lwa_emulator.issue_token()
    hold(http, workers, token)
    connects = fleet(b).connects
    garbage = [
        b"", b"garbage", b"1-0", b"x-y zz", b"\xff\xfe\x00", b"-1 ", b"1-2-3 4",
        b"1-0 " + b"f" * 64, b"1-0 " + b"0" * 64 + b" \xff", b"9" * 400 + b"-0 x",
        b"1-0 " + b"z" * (1 << 20),
    ]
    for raw in garbage:
        rclient.publish(CHANNEL, raw)
    a.revoke(token)  # published after the garbage: taken once it is dropped
    wait_for(lambda: status(http, ub, token) == 401, BOUND)
    assert fleet(b).connects == connects  # never crashed into a reconnect
    assert subscribed(b)
    assert b.stats.fleet_pushed == 1
    assert fleet(b).forged + fleet(b).malformed == len(garbage)


def test_garbage_and_a_reconnect_do_not_amplify_announcements(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    (a, ua), (b, _) = workers = fleet_of(2)
    hold(http, workers, lwa_emulator.issue_token())
    for _ in range(300):
        a.revoke(lwa_emulator.issue_token())
    made = announcements(rclient)
    assert made == 300
    connects = fleet(a).connects + fleet(b).connects
    for raw in (b"junk", b"1-0", b"x y z", b"", b"\x00" * 10):
        rclient.publish(CHANNEL, raw)
    time.sleep(0.5)
    rclient.client_kill_filter(_type="pubsub")  # every subscriber reconnects
    wait_for(
        lambda: fleet(a).connects + fleet(b).connects >= connects + 2
        and subscribed(a) and subscribed(b),
        15,
    )
    time.sleep(1.5)  # anything announced on the reconnects has landed
    # Re-asserted in Redis on the reconnect, but announced to no one: the
    # other workers had them already.
    print(f"300 revocations, 5 garbage publishes, every subscriber reconnected: "
          f"{announcements(rclient)} announcements in all")
    assert announcements(rclient) <= made + 5
    assert len(list(rclient.scan_iter(match="lwa:v1:{???}:rev:*", count=1000))) == 300
    assert status(http, ua, lwa_emulator.issue_token()) == 200


def test_catching_up_past_junk_entries_is_bounded_in_memory(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    (a, _), (b, ub) = workers = fleet_of(2)
    token = lwa_emulator.issue_token()
    hold(http, workers, token)
    subscriber = fleet(b)
    subscriber.stop()
    junk = b"j" * (1 << 20)
    for _ in range(150):
        rclient.xadd(STREAM, {"m": junk})
    for _ in range(3):
        rclient.xadd(STREAM, {"m": junk, "x": b"1"})
    a.revoke(token)  # after the junk: must still be replayed
    connects = subscriber.connects
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        subscriber.start()
        wait_for(lambda: subscriber.connects > connects, 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = (peak - base) / (1 << 20)
    print(f"catch-up past 153 x 1 MiB junk entries: traced peak growth {grown:.2f} MiB")
    assert grown < 4
    assert subscriber.malformed >= 153
    assert b.resolver.cache.rejection(token_digest(token.encode())) is not None
    assert status(http, ub, token) == 401


def test_security_md_states_the_catch_up_page_and_message_bound() -> None:
    """SECURITY.md ("The revocation channel") gives the page the subscriber
    reads the stream by, and the most bytes an entry it reads may have."""
    text = (Path(__file__).resolve().parents[1] / "SECURITY.md").read_text(encoding="utf-8")
    section = text[text.index("### The revocation channel") : text.index("### Data loss")]
    assert f"{CATCH_UP_PAGE} entries a round trip" in section
    assert f"of at most {MAX_MESSAGE} bytes" in section


# -- item 5: data loss -----------------------------------------------------------


def test_after_a_flushall_a_relearnt_revoked_token_is_refused_everywhere_within_5s(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    workers = fleet_of(3)
    (a, _), (_, ub), (_, uc) = workers
    hold(http, workers, lwa_emulator.issue_token())  # every worker met Redis
    for _attempt in range(3):
        token = lwa_emulator.issue_token()
        a.revoke(token)  # made on A, which then stays idle
        assert status(http, ub, token) == 401  # B read it from Redis: kept in memory
        rclient.flushall()
        flushed = time.monotonic()
        # C, which never met the token, learns it again: Redis forgot the
        # revocation, LWA vouches for it. (Unless A noticed the loss within
        # the few milliseconds in between: then the scenario is run again.)
        if status(http, uc, token) == 200:
            break
    else:
        raise AssertionError("C never learnt the token again: the test proved nothing")
    took = wait_for(lambda: all(status(http, u, token) == 401 for _, u in workers), TARGET)
    print(f"after FLUSHALL: every worker refused the token C had learnt again {took:.2f} s "
          f"later, {time.monotonic() - flushed:.2f} s after the flush")


def test_after_the_generated_secret_is_deleted_a_revocation_on_any_worker_reaches_all(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    old = fleet_of(2)
    first, second, earlier = (lwa_emulator.issue_token() for _ in range(3))
    hold(http, old, first)
    hold(http, old, second)
    old[0][0].revoke(earlier)
    before = rclient.get(SECRET_KEY)
    rclient.delete(SECRET_KEY)
    deleted = time.monotonic()
    [fresh] = fleet_of(1)  # a worker started meanwhile: it mints no secret of its own
    # ... so it reads the revocations made before under the secret they share.
    assert status(http, fresh[1], earlier) == 401
    wait_for(lambda: all(status(http, u, earlier) == 401 for _, u in [*old, fresh]), TARGET)
    print(f"secret deleted: a token revoked before was refused by every worker, the new "
          f"one included, {time.monotonic() - deleted:.2f} s after the deletion")
    hold(http, [fresh], first)
    hold(http, [fresh], second)
    assert rclient.get(SECRET_KEY) == before
    workers = [*old, fresh]
    took = []
    for maker, token in ((old[0][0], first), (fresh[0], second)):
        maker.revoke(token)
        took.append(
            wait_for(lambda t=token: all(status(http, u, t) == 401 for _, u in workers), TARGET)
        )
    print(f"secret deleted: revocations reached every worker after {took[0]:.2f} s "
          f"(made on an old worker) and {took[1]:.2f} s (made on the new one)")
    assert rclient.get(SECRET_KEY) == before


def test_the_idle_data_loss_check_costs_little(
    fleet_of: Any, lwa_emulator: LWAEmulator, rclient: redis.Redis, http: httpx2.Client
) -> None:
    """Measured: the round trips one idle subscribed worker makes to Redis a
    second (its heartbeat PING, the data set's marker, the generated secret),
    and the commands they run in Redis (the scripts' GETs included)."""
    workers = fleet_of(1)
    hold(http, workers, lwa_emulator.issue_token())
    time.sleep(1.0)
    rclient.config_resetstat()
    time.sleep(5.0)
    stats = rclient.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    for ours in ("info", "config|resetstat"):
        calls.pop(ours, None)
    trips = calls.get("ping", 0) + calls.get("evalsha", 0)
    print(f"an idle worker: {trips / 5:.1f} round trips/s, {sum(calls.values()) / 5:.1f} "
          f"commands/s in Redis ({calls})")
    # One PING a HEARTBEAT, one marker and one secret check a CHECK_INTERVAL.
    assert trips / 5 <= 4
    assert set(calls) <= {"ping", "evalsha", "get"}
