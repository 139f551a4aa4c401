"""What the gate needs from a session token source (``token_sources`` ``"session"``).

Kept apart, free of heavy imports, so :mod:`lwa_middleware.gate` can name it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from .._engine.errors import AuthError

if TYPE_CHECKING:
    from .._engine.resolver import Resolver


class CrossSiteRequest(AuthError):
    """403: a cookie-authenticated unsafe request that did not come from the app's origin."""

    status = 403
    error = "cross_site_request"
    challenge_error = False

    def __init__(
        self, description: str = "A signed-in request that changes state must come from this site."
    ) -> None:
        super().__init__(description)


class SessionSource(Protocol):
    """Maps a session cookie to the session's current access token."""

    #: The app's origin (``https://app.example``): unsafe cookie requests must come from it.
    origin: str

    def session_id(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The session id in the request's ``Cookie`` headers, if any."""
        ...

    def same_origin(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether ``Origin`` (else ``Sec-Fetch-Site``) says it comes from :attr:`origin`."""
        ...

    def access_token(self, session_id: str) -> str | None:
        """The session's access token, refreshed if near expiry; ``None`` if the
        session is gone. Blocking. Raises ``UpstreamUnavailable`` on an outage."""
        ...

    async def access_token_async(self, session_id: str) -> str | None:
        """:meth:`access_token` for the event loop."""
        ...

    def attach(self, resolver: Resolver) -> None:
        """Called by each middleware using the source, with its resolver (for
        identities at sign-in and revocation at logout)."""
        ...
