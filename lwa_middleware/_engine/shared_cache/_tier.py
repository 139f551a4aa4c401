"""The Redis tier as the resolver sees it: one typed interface.

:class:`~lwa_middleware.resolver.Resolver` calls the shared cache only through
:class:`SharedTier`, so mypy checks every call it makes. The two drivers are
one interface in two colours: :class:`._drivers.SyncSharedCache` is a
``SharedTier[Found, None]``, :class:`._drivers.AsyncSharedCache` a
``SharedTier[Awaitable[Found], Awaitable[None]]`` (its methods are coroutines).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from ..errors import InvalidToken
from ._codec import SharedHit

if TYPE_CHECKING:
    from ..errors import AuthError
    from ..flow import Resolved

class SharedRevocation(InvalidToken):
    """A revocation read from Redis, with the seconds it has left there: the
    reader keeps it that long (until the token expires), not just
    ``negative_cache_ttl``."""

    def __init__(self, description: str, seconds: float) -> None:
        super().__init__(description)
        self.seconds = seconds


#: What :meth:`SharedTier.get` finds: an identity, a shared rejection or
#: revocation, or ``None`` (a miss: ask LWA).
Found = SharedHit | InvalidToken | None

_Found_co = TypeVar("_Found_co", covariant=True)
_Done_co = TypeVar("_Done_co", covariant=True)


class SharedTier(Protocol[_Found_co, _Done_co]):
    """The shared cache's operations, blocking (``_Found_co`` is :data:`Found`)
    or async (it is an awaitable of it); ``_Done_co`` likewise of ``None``."""

    @property
    def degraded(self) -> bool:
        """Whether Redis is not usable now (its breaker is not closed)."""
        ...

    def get(self, token: str, revocation_only: bool = False, lease: bool = True) -> _Found_co:
        """The shared verdict on ``token``; only a revocation with ``revocation_only``;
        without ``lease``, a miss takes no lease (nor waits on another's)."""
        ...

    def put(self, token: str, resolved: Resolved) -> _Done_co:
        """Share a resolved token and release this worker's lease on it."""
        ...

    def record_failure(self, token: str, error: AuthError) -> _Done_co:
        """Share a rejection (or only release the lease, for a transient failure)."""
        ...

    def discard(self, token: str) -> _Done_co:
        """Forget ``token`` for every worker (raises if Redis could not be written)."""
        ...

    def revoke(self, token: str, seconds: float) -> _Done_co:
        """Refuse ``token`` on every worker for ``seconds`` (as :meth:`discard`)."""
        ...
