"""Single-flight: concurrent lookups of one token share one lookup.

The first request for a token *leads*: it runs the lookup. Requests for the
same token that arrive meanwhile *follow*: they wait for the leader's answer
instead of asking LWA again. Threads and tasks wait differently, so there
are two small algorithms, with one contract:

* ``lead()`` runs the lookup and returns an entry or raises an
  :class:`~.errors.AuthError`;
* ``accept(entry)`` tells whether a joined answer is good enough for this
  follower. It may not be: a lookup that fetched tokeninfo only does not
  serve a route that needs the profile. The follower then tries again, and
  the first one back leads an upgrade the others join, at most
  :data:`MAX_JOINS` times before it looks up on its own;
* a follower that joins calls ``on_join()`` (for the ``coalesced`` counter).

A failure is handed to each follower as a copy (:meth:`AuthError.copy`): one
exception object raised again and again would chain every follower's frames,
and their locals, onto it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import sniffio

from .errors import AuthError, UpstreamUnavailable

__all__ = ["MAX_JOINS", "TaskFlights", "ThreadFlights"]

#: How many in-flight lookups one request joins before looking up itself.
MAX_JOINS = 3

_T = TypeVar("_T")


class _ThreadFlight(Generic[_T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: _T | None = None
        self.error: AuthError | None = None


class ThreadFlights(Generic[_T]):
    """Single-flight across the threads of one process.

    :param wait: seconds a follower waits for its leader before giving up
        with a 503 (the leader's own lookup is bounded by its deadline).
    :param retry_after: the ``Retry-After`` of that 503.
    """

    def __init__(self, wait: float, retry_after: int) -> None:
        self._wait = wait
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _ThreadFlight[_T]] = {}

    def __len__(self) -> int:
        """Flights in progress (a leak would grow it with every distinct token)."""
        return len(self._flights)

    def run(
        self,
        slot: Hashable,
        lead: Callable[[], _T],
        accept: Callable[[_T], _T | None],
        on_join: Callable[[], None],
    ) -> _T:
        for _ in range(MAX_JOINS):
            with self._lock:
                flight = self._flights.get(slot)
                leader = flight is None
                if flight is None:
                    flight = self._flights[slot] = _ThreadFlight()
            if leader:
                return self._lead(slot, flight, lead)
            on_join()
            if not flight.done.wait(self._wait):
                raise UpstreamUnavailable("LWA lookup timed out.", self._retry_after)
            if flight.error is not None:
                raise flight.error.copy()
            if flight.result is not None:
                found = accept(flight.result)
                if found is not None:
                    return found
        return lead()

    def _lead(self, slot: Hashable, flight: _ThreadFlight[_T], lead: Callable[[], _T]) -> _T:
        try:
            flight.result = lead()
            return flight.result
        except AuthError as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                self._flights.pop(slot, None)
            flight.done.set()


class _TaskFlight(Generic[_T]):
    __slots__ = ("crash", "done", "error", "loop", "result", "task")

    def __init__(self, loop: object) -> None:
        self.loop = loop
        self.done = anyio.Event()
        self.result: _T | None = None
        self.error: AuthError | None = None
        self.crash: BaseException | None = None
        self.task: asyncio.Task[None] | None = None


class TaskFlights(Generic[_T]):
    """Single-flight across the tasks of one event loop, on any anyio backend
    (asyncio or trio).

    The lookup outlives the request that started it: its client may go away,
    but the followers still wait for the answer (and the lookup is bounded by
    its own deadline anyway). Under asyncio it runs as a task of its own,
    since a shield does not stop ``Task.cancel()``; under trio, in a shielded
    cancel scope. A flight belongs to the event loop that started it; a
    request on another loop (a test client making one per request) leads its
    own.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _TaskFlight[_T]] = {}

    def __len__(self) -> int:
        """Flights in progress (a leak would grow it with every distinct token)."""
        return len(self._flights)

    def __contains__(self, slot: Hashable) -> bool:
        """Whether a flight for ``slot`` is in progress (on any loop)."""
        return slot in self._flights

    async def run(
        self,
        slot: Hashable,
        lead: Callable[[], Awaitable[_T]],
        accept: Callable[[_T], _T | None],
        on_join: Callable[[], None],
    ) -> _T:
        loop = anyio.lowlevel.current_token()
        for _ in range(MAX_JOINS):
            flight = self._flights.get(slot)
            if flight is None or flight.loop != loop:
                flight = _TaskFlight(loop)
                self._flights[slot] = flight
                await self._fly(slot, flight, lead)
                if flight.error is not None:
                    raise flight.error
                if flight.crash is not None:
                    raise flight.crash
                assert flight.result is not None
                return flight.result
            on_join()
            # A follower that goes away stops waiting; the flight goes on.
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error.copy()
            if flight.result is not None:
                found = accept(flight.result)
                if found is not None:
                    return found
        return await lead()

    async def _fly(
        self, slot: Hashable, flight: _TaskFlight[_T], lead: Callable[[], Awaitable[_T]]
    ) -> None:
        if sniffio.current_async_library() == "asyncio":
            flight.task = asyncio.get_running_loop().create_task(self._land(slot, flight, lead))
            await flight.done.wait()
        else:
            with anyio.CancelScope(shield=True):
                await self._land(slot, flight, lead)

    async def _land(
        self, slot: Hashable, flight: _TaskFlight[_T], lead: Callable[[], Awaitable[_T]]
    ) -> None:
        try:
            flight.result = await lead()
        except AuthError as error:
            flight.error = error
        except BaseException as crash:  # a bug: the leader re-raises it
            flight.crash = crash
        finally:
            # Forget the flight before waking anyone: a follower back for an
            # upgrade must not find this finished one.
            if self._flights.get(slot) is flight:
                del self._flights[slot]
            flight.done.set()
