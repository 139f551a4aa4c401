"""Closing what belongs to an event loop when that loop shuts down.

An async client (httpx, redis-py) and its connections belong to the loop
that made them. A middleware may see several loops (a test client that runs
one per request), and nothing tells it when one ends. But every event loop
finalizes the async generators still suspended when it shuts down (asyncio's
``shutdown_asyncgens``; trio does the same at the end of a run): a generator
that closes the client in its ``finally`` closes it then, in its own loop, so
no socket is left to the garbage collector (and its ``ResourceWarning``).
"""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

__all__ = ["keep_until_shutdown"]


async def _holding(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await close()


async def keep_until_shutdown(
    close: Callable[[], Awaitable[None]],
) -> types.AsyncGeneratorType[None, None]:
    """Arrange for ``close()`` to run when the running loop shuts down, or
    earlier through the returned keeper's ``aclose()`` (its ``ag_frame`` is
    ``None`` once it ran)."""
    keeper = cast("types.AsyncGeneratorType[None, None]", _holding(close))
    await keeper.asend(None)
    return keeper
