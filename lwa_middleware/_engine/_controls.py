"""What a middleware offers its users over its :class:`~.resolver.Resolver`
(moved out of ``resolver.py`` to keep that module on a screenful of pages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .resolver import Resolver
    from .stats import Stats

__all__ = ["AsyncControls", "BlockingControls"]


class BlockingControls:
    """What a blocking middleware offers its users, over its ``resolver``.

    Shared by the WSGI middleware and the Django integration.
    """

    resolver: Resolver

    @property
    def stats(self) -> Stats:
        """Cache and upstream counters (hits, misses, coalesced, …)."""
        return self.resolver.stats

    def invalidate(self, token: str) -> None:
        """Forget what is cached about ``token``; see ``LWAMiddleware.invalidate``.

        Raises :class:`~.errors.SharedCacheError` if Redis could not be written.
        """
        self.resolver.invalidate(token)

    def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires (logout); see ``LWAMiddleware.revoke``.

        Raises :class:`~.errors.SharedCacheError` if Redis could not be written
        (the token is refused in this process all the same).
        """
        self.resolver.revoke(token)

    def close(self) -> None:
        """Close pooled connections to LWA (and Redis)."""
        self.resolver.close()


class AsyncControls:
    """What the ASGI middleware offers its users, over its ``resolver``."""

    resolver: Resolver

    @property
    def stats(self) -> Stats:
        """Cache and upstream counters (hits, misses, coalesced, …)."""
        return self.resolver.stats

    async def invalidate(self, token: str) -> None:
        """Forget what is cached about ``token``, here and in the shared cache, so
        the next request asks LWA again. To refuse it from now on (logout), use
        :meth:`revoke`. Raises :class:`~lwa_middleware.SharedCacheError` if Redis
        could not be written."""
        await self.resolver.ainvalidate(token)

    async def revoke(self, token: str) -> None:
        """Refuse ``token`` until it expires (logout), here and on every worker
        sharing the Redis cache (pushed to their memory at once). Raises
        :class:`~lwa_middleware.SharedCacheError` if Redis could not be written
        (refused here all the same, and published when Redis is back)."""
        await self.resolver.arevoke(token)

    async def aclose(self) -> None:
        """Close pooled connections to LWA (and Redis); lifespan shutdown does it too."""
        await self.resolver.aclose()
