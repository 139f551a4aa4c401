"""The fast transport to LWA: one ``aiohttp`` session per asyncio loop (issue 23).

Measured side by side (``benchmarks/bench_http_clients.py``, 100 HTTPS GETs in
flight), aiohttp spends about a third of httpx2's CPU per GET, on one asyncio
loop or driven from a hundred threads through one I/O loop. So:

* the ASGI driver on asyncio sends with :class:`Transport` on its own loop;
* the WSGI driver hands each batch to a :class:`LoopThread`: one daemon thread
  running an asyncio loop with a :class:`Transport`, started on the first
  lookup (never at construction: a process forked after warm-up has no thread).

trio, and an ``http_client`` the application supplies (httpx2), keep the
httpx2 path in :mod:`.upstream`. Every per-request guarantee of that path
holds here too: one overall deadline (aiohttp's ``total`` timeout covers the
body reads) besides the connect deadline, a cap on the bytes read, TLS
verified with the driver's SSL context, no redirects followed, the pool
bounded by :func:`~._http.pool_shape`, and transport errors turned into
fixed phrases (:func:`~._http.failure`).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import math
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

import aiohttp

from . import _otel
from ._http import (
    TIMED_OUT,
    TOO_LARGE,
    USER_AGENT,
    Body,
    TooLarge,
    certificate_failed,
    failure,
    pool_shape,
    request_id,
)
from .flow import Outcome, UpstreamFailure, UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["LoopThread", "Transport"]

#: Bytes asked of aiohttp's stream at a time (LWA's answers are a few hundred).
_CHUNK = 64 * 1024

#: Seconds a thread waits for its batch beyond the batch's own deadline.
_SLACK = 5.0


_CONNECTION = UpstreamFailure("connection failed", "connection")
_CLOSED = UpstreamFailure("closed during the call", "connection")


def _failed(exc: Exception) -> UpstreamFailure:
    """:func:`~._http.failure`, told aiohttp's "could not connect" apart."""
    if isinstance(exc, aiohttp.ClientConnectorError) and not certificate_failed(exc):
        return _CONNECTION
    return failure(exc)


def _env_proxy(url: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy of the environment for ``url`` (``HTTP(S)_PROXY``, ``NO_PROXY``)
    and the ``proxy-authorization`` header of its credentials (RFC 7617):
    aiohttp would drop the ``user:password`` of the URL.

    Read with the standard library, not aiohttp's reader: that one skips an
    ``https://`` proxy (the call would go straight to LWA, past the proxy)
    and is not public API.
    """
    target = urllib.parse.urlsplit(url)
    configured = urllib.request.getproxies().get(target.scheme)
    if configured is None or (
        target.hostname is not None and urllib.request.proxy_bypass(target.hostname)
    ):
        return None, None
    proxy = urllib.parse.urlsplit(configured)
    userinfo, at, hostport = proxy.netloc.rpartition("@")
    bare = proxy._replace(netloc=hostport).geturl()
    if not at:
        return bare, None
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return bare, {"proxy-authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class Transport:
    """One pooled ``aiohttp.ClientSession``; make it, use it and close it on one loop."""

    def __init__(self, settings: Settings, context: ssl.SSLContext) -> None:
        clients, connections = pool_shape(settings)
        self._settings = settings
        self._limit = settings.max_response_bytes
        # One pool of every connection the lookups in flight may use at once;
        # aiohttp hands back the connection released last (warm ones first).
        connector = aiohttp.TCPConnector(
            limit=clients * connections, limit_per_host=0, ssl=context, keepalive_timeout=60.0
        )
        # trust_env=False: aiohttp would read the proxy environment (and
        # ~/.netrc) on every request; the proxy is looked up once per URL
        # below instead, as httpx2 honours HTTP(S)_PROXY and NO_PROXY.
        # No cookie jar: nothing LWA sets may travel with another customer's lookup.
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": USER_AGENT},
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._proxies: dict[str, tuple[str | None, dict[str, str] | None]] = {}

    def _proxy(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        """The proxy for ``url`` and its headers: aiohttp hands back the
        ``user:password`` of ``HTTP(S)_PROXY`` apart from the URL (httpx2 sent them)."""
        try:
            return self._proxies[url]
        except KeyError:
            found = self._proxies[url] = _env_proxy(url)
            return found

    async def batch(self, batch: list[UpstreamRequest], deadline: float) -> list[Outcome]:
        """Every request of ``batch`` at once; their outcomes, in order.

        The first is sent in the calling task, the others in tasks of their
        own (no task group: its cancel scopes cost more than the GET here).
        """
        loop = asyncio.get_running_loop()
        others = [loop.create_task(self._send(request, deadline)) for request in batch[1:]]
        try:
            first = await self._send(batch[0], deadline)
            return [first, *[await task for task in others]]
        finally:
            for task in others:  # cancelled with the caller: never left behind
                task.cancel()

    async def _send(self, request: UpstreamRequest, deadline: float) -> Outcome:
        with _otel.call_span(request.endpoint) as span:
            outcome = await self._fetch(request, deadline)
            _otel.call_result(span, outcome)
            return outcome

    async def _fetch(self, request: UpstreamRequest, deadline: float) -> Outcome:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return TIMED_OUT
        # sock_connect: TCP and TLS handshake, as httpx2's connect timeout. No
        # ceil_threshold rounding: aiohttp would round a deadline past 5 s up
        # to a whole second of the loop's clock, past the lookup's deadline.
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            sock_connect=min(remaining, self._settings.connect_timeout),
            ceil_threshold=math.inf,
        )
        proxy, proxy_headers = self._proxy(request.url)
        headers = request.headers
        if proxy_headers is not None and not request.url.startswith("https:"):
            # aiohttp puts proxy_headers on the CONNECT of an HTTPS call only:
            # a plain-HTTP call goes to the proxy whole, with its own headers.
            headers = {**headers, **proxy_headers}
        try:
            # A POST (the sign-in's token call) is never resent: aiohttp
            # resends only idempotent requests whose connection dropped.
            async with self._session.request(
                request.method,
                request.url,
                headers=headers,
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as response:
                body = Body(response, self._limit, deadline)
                async for chunk in response.content.iter_chunked(_CHUNK):
                    body.feed(chunk)
                return UpstreamResponse(
                    response.status,
                    b"".join(body.chunks),
                    response.headers.get("retry-after"),
                    request_id(response),
                )
        except TooLarge:
            return TOO_LARGE
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return _failed(exc)

    async def close(self) -> None:
        await self._session.close()


def _bury(loop: asyncio.AbstractEventLoop, transport: Transport) -> None:
    """Close the session and the loop of an I/O thread that died (its loop runs
    nowhere). Batches caught on it end now (their threads get _CLOSED)."""
    with contextlib.suppress(Exception):
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(transport.close())
    with contextlib.suppress(Exception):
        loop.close()


class LoopThread:
    """One asyncio loop in a daemon thread, sending the batches of many threads.

    Started on the first :meth:`batch`, and again in a process forked since
    (the parent's thread does not exist there). The caller's context goes
    with each batch (``run_coroutine_threadsafe`` copies it), so a batch
    stays in the caller's trace.
    """

    def __init__(self, settings: Settings, context: ssl.SSLContext) -> None:
        self._settings = settings
        self._context = context
        self._lock = threading.Lock()
        self._started: tuple[int, asyncio.AbstractEventLoop, threading.Thread, Transport] | None
        self._started = None

    def _running(self) -> tuple[asyncio.AbstractEventLoop, Transport]:
        started = self._started
        if started is None or started[0] != os.getpid() or not started[2].is_alive():
            with self._lock:
                started = self._started
                if started is not None and started[0] == os.getpid():
                    if started[2].is_alive():
                        return started[1], started[3]
                    # Its loop stopped (a BaseException out of a callback):
                    # batches sent there would wait out their deadline, every one.
                    _bury(started[1], started[3])
                started = self._start()
        return started[1], started[3]

    def _start(self) -> tuple[int, asyncio.AbstractEventLoop, threading.Thread, Transport]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="lwa-upstream", daemon=True)
        thread.start()

        async def make() -> Transport:
            return Transport(self._settings, self._context)

        transport = asyncio.run_coroutine_threadsafe(make(), loop).result()
        self._started = started = (os.getpid(), loop, thread, transport)
        return started

    def batch(self, batch: list[UpstreamRequest], deadline: float) -> list[Outcome]:
        loop, transport = self._running()
        future = asyncio.run_coroutine_threadsafe(transport.batch(batch, deadline), loop)
        try:
            # The transport keeps the deadline: the slack is a last resort.
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + _SLACK)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return [TIMED_OUT] * len(batch)
        except concurrent.futures.CancelledError:  # close() during the lookup
            return [_CLOSED] * len(batch)

    def close(self) -> None:
        """Close the session, stop the loop and wait for its thread (briefly)."""
        with self._lock:
            started, self._started = self._started, None
        if started is None or started[0] != os.getpid():
            return
        if threading.current_thread() is started[2]:
            # The garbage collector ran the driver's finalizer on this loop's
            # own thread: waiting here for the loop would wait for itself.
            threading.Thread(target=_stop, args=(started,), name="lwa-upstream-close").start()
            return
        _stop(started)


def _stop(started: tuple[int, asyncio.AbstractEventLoop, threading.Thread, Transport]) -> None:
    """Close the session of a started :class:`LoopThread`, stop its loop and wait
    for its thread (briefly)."""
    _, loop, thread, transport = started

    async def shut() -> None:
        # Batches still in flight end now (their threads get _CLOSED),
        # not at their deadline: the loop is about to stop under them.
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await transport.close()

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=_SLACK)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=_SLACK)
    if not thread.is_alive():
        loop.close()
