"""Single-flight: ``ThreadFlights`` across threads, ``TaskFlights`` across tasks
(asyncio and trio). Leaders are held on events, never on sleeps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from support.private import MAX_JOINS, TaskFlights, ThreadFlights

from lwa_middleware import InvalidToken, UpstreamUnavailable


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.n += 1


def _accept_all(value: str) -> str | None:
    return value


# -- threads -----------------------------------------------------------------------


def _followers(flights: ThreadFlights[str], count: int, joined: Counter, **run: Any) -> Any:
    """Start ``count`` followers once the leader is in flight; return their futures."""
    pool = ThreadPoolExecutor(max_workers=count)
    accept: Callable[[str], str | None] = run.get("accept", _accept_all)
    futures = [
        pool.submit(flights.run, "slot", run["lead"], accept, joined) for _ in range(count)
    ]
    return pool, futures


def _until(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    for _ in range(3000):  # a bound, not a timing: each round waits at most 10 ms
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition never held")


def test_threads_join_one_leader() -> None:
    flights: ThreadFlights[str] = ThreadFlights(wait=30, retry_after=3)
    release, calls, joined = threading.Event(), Counter(), Counter()

    def lead() -> str:
        calls()
        release.wait(30)
        return "entry"

    leader = ThreadPoolExecutor(1).submit(flights.run, "slot", lead, _accept_all, joined)
    _until(lambda: len(flights) == 1)
    pool, futures = _followers(flights, 8, joined, lead=lead)
    _until(lambda: joined.n == 8)
    release.set()
    assert leader.result(30) == "entry"
    assert [f.result(30) for f in futures] == ["entry"] * 8
    pool.shutdown()
    assert calls.n == 1
    assert len(flights) == 0


def test_threads_followers_get_copies_of_the_error() -> None:
    flights: ThreadFlights[str] = ThreadFlights(wait=30, retry_after=3)
    release, joined = threading.Event(), Counter()
    original = InvalidToken("no good")

    def lead() -> str:
        release.wait(30)
        raise original

    leader = ThreadPoolExecutor(1).submit(flights.run, "slot", lead, _accept_all, joined)
    _until(lambda: len(flights) == 1)
    pool, futures = _followers(flights, 4, joined, lead=lead)
    _until(lambda: joined.n == 4)
    release.set()
    with pytest.raises(InvalidToken) as caught:
        leader.result(30)
    assert caught.value is original
    errors = [f.exception(30) for f in futures]
    pool.shutdown()
    assert all(isinstance(e, InvalidToken) for e in errors)
    assert all(e is not original for e in errors)
    assert len({id(e) for e in errors}) == 4  # one copy each, no shared traceback
    assert {e.description for e in errors if isinstance(e, InvalidToken)} == {"no good"}


def test_threads_accept_upgrade_loop_then_own_lookup() -> None:
    # A follower that does not accept what it joined (tokeninfo only, say)
    # tries again; after MAX_JOINS joins it looks up on its own. Each leader
    # holds until the follower joined it; the follower's accept() starts the
    # next leader before it returns, so every round has a flight to join.
    flights: ThreadFlights[str] = ThreadFlights(wait=30, retry_after=3)
    joined, own_calls = Counter(), Counter()
    pool = ThreadPoolExecutor(MAX_JOINS + 1)
    leaders: list[Any] = []

    def start_leader(index: int) -> None:
        def lead() -> str:
            _until(lambda: joined.n >= index + 1)
            return f"thin-{index}"

        leaders.append(pool.submit(flights.run, "slot", lead, _accept_all, Counter()))
        _until(lambda: len(flights) == 1)

    seen: list[str] = []

    def accept(value: str) -> str | None:
        seen.append(value)
        if len(seen) < MAX_JOINS:
            start_leader(len(seen))
        return None  # never good enough

    def own() -> str:
        own_calls()
        return "full"

    start_leader(0)
    assert flights.run("slot", own, accept, joined) == "full"
    assert [f.result(30) for f in leaders] == [f"thin-{i}" for i in range(MAX_JOINS)]
    pool.shutdown()
    assert seen == [f"thin-{i}" for i in range(MAX_JOINS)]
    assert joined.n == MAX_JOINS
    assert own_calls.n == 1


def test_threads_a_follower_stops_waiting_with_a_503() -> None:
    flights: ThreadFlights[str] = ThreadFlights(wait=0.05, retry_after=7)
    release = threading.Event()
    pool = ThreadPoolExecutor(1)
    leader = pool.submit(flights.run, "slot", lambda: release.wait(30) and "late", _accept_all,
                         Counter())
    _until(lambda: len(flights) == 1)
    # The leader is held until the follower gave up: its wait must expire.
    with pytest.raises(UpstreamUnavailable) as caught:
        flights.run("slot", lambda: "never", _accept_all, Counter())
    assert caught.value.retry_after == 7
    release.set()
    assert leader.result(30) == "late"
    pool.shutdown()


# -- tasks -------------------------------------------------------------------------


async def _yield_until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds; no time passes."""
    for _ in range(100_000):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_tasks_join_one_leader_and_copy_errors(anyio_backend: str) -> None:
    flights: TaskFlights[str] = TaskFlights()
    release, calls, joined = anyio.Event(), Counter(), Counter()

    async def lead() -> str:
        calls()
        await release.wait()
        return "entry"

    results: list[str] = []

    async def one() -> None:
        results.append(await flights.run("slot", lead, _accept_all, joined))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
        while joined.n < 5:
            await anyio.lowlevel.checkpoint()  # yield to the other tasks; no time passes
        release.set()
    assert results == ["entry"] * 6
    assert calls.n == 1
    assert len(flights) == 0

    failing = anyio.Event()
    original = InvalidToken("no")

    async def bad() -> str:
        await failing.wait()
        raise original

    errors: list[BaseException] = []

    async def fail_one() -> None:
        try:
            await flights.run("bad", bad, _accept_all, joined)
        except InvalidToken as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(fail_one)
        while len(flights) == 0 or joined.n < 7:
            await anyio.lowlevel.checkpoint()
        failing.set()
    assert len(errors) == 3
    assert sum(e is original for e in errors) == 1  # the leader's own; copies for the rest
    assert len({id(e) for e in errors}) == 3


@pytest.mark.anyio
async def test_tasks_accept_upgrade_loop(anyio_backend: str) -> None:
    flights: TaskFlights[str] = TaskFlights()
    joined = Counter()
    release = anyio.Event()

    async def thin() -> str:
        await release.wait()
        return "thin"

    async def full() -> str:
        return "full"

    got: list[str] = []

    async def leader() -> None:
        got.append(await flights.run("slot", thin, _accept_all, Counter()))

    async def picky() -> None:
        accept: Callable[[str], str | None] = lambda v: v if v == "full" else None  # noqa: E731
        got.append(await flights.run("slot", full, accept, joined))

    async with anyio.create_task_group() as group:
        group.start_soon(leader)
        while len(flights) == 0:
            await anyio.lowlevel.checkpoint()
        group.start_soon(picky)
        while joined.n < 1:
            await anyio.lowlevel.checkpoint()
        release.set()
    # The picky follower did not take "thin": it led its own lookup.
    assert sorted(got) == ["full", "thin"]


@pytest.mark.anyio
async def test_tasks_a_crash_in_the_lookup_reaches_the_leader(anyio_backend: str) -> None:
    flights: TaskFlights[str] = TaskFlights()

    async def crash() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await flights.run("slot", crash, _accept_all, Counter())
    assert len(flights) == 0


def test_leader_cancelled_under_asyncio_keeps_the_flight_alive() -> None:
    flights: TaskFlights[str] = TaskFlights()
    calls, joined = Counter(), Counter()

    async def main() -> tuple[str, bool]:
        release = asyncio.Event()

        async def lead() -> str:
            calls()
            await release.wait()
            return "entry"

        leader = asyncio.ensure_future(flights.run("slot", lead, _accept_all, Counter()))
        await _yield_until(lambda: len(flights) == 1)
        follower = asyncio.ensure_future(flights.run("slot", lead, _accept_all, joined))
        await _yield_until(lambda: joined.n == 1)
        leader.cancel()  # its client went away
        await asyncio.sleep(0)
        alive = len(flights) == 1  # the lookup itself goes on
        release.set()
        result = await follower
        with pytest.raises(asyncio.CancelledError):
            await leader
        return result, alive

    result, alive = asyncio.run(main())
    assert result == "entry"
    assert alive
    assert calls.n == 1
    assert len(flights) == 0


def test_a_flight_belongs_to_its_event_loop() -> None:
    # A request on another loop (a test client making one per request) leads its own.
    flights: TaskFlights[str] = TaskFlights()
    calls = Counter()
    stuck: dict[str, Any] = {}

    async def first() -> None:
        stuck["event"] = asyncio.Event()

        async def lead() -> str:
            calls()
            await stuck["event"].wait()
            return "never"

        stuck["task"] = asyncio.ensure_future(flights.run("slot", lead, _accept_all, Counter()))
        await _yield_until(lambda: len(flights) == 1)

    async def second() -> str:
        async def lead() -> str:
            calls()
            return "own"

        return await flights.run("slot", lead, _accept_all, Counter())

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        assert asyncio.run(second()) == "own"
    finally:
        stuck["task"].cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert calls.n == 2
