"""The code exchange of the callback, kept apart from :mod:`.core` (the steps)
so each stays short: the code for a grant, the grant's token for an identity,
and every way that fails worded as the page to answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._engine._observe import fields, text, with_request_id
from .._engine.errors import AuthError, UpstreamUnavailable
from .._engine.identity import Identity
from ._pages import PageKind
from ._parts import Refusals, Reply, _Grant, _Refused
from ._transport import identity_of

if TYPE_CHECKING:
    from .._engine.resolver import Resolver

__all__ = ["Exchanging"]

logger = logging.getLogger("lwa_middleware.signin")


class Exchanging:
    """SignIn's code exchange, as a base class of it: its steps read SignIn's
    state as their own (declared here for the type checker; SignIn defines them)."""

    if TYPE_CHECKING:
        client_id: str
        redirect_uri: str
        retry_after: int
        _secret: str
        _refusals: Refusals

        def _post(self, form: Mapping[str, str]) -> _Grant: ...
        def _resolver(self) -> Resolver: ...
        def _failed(self, status: int, message: str, *extra: tuple[str, str]) -> Reply: ...
        def _page(
            self, kind: PageKind, status: int, title: str, message: str, *extra: tuple[str, str]
        ) -> Reply: ...

    def _exchange(
        self, code: str, verifier: str, clear: tuple[str, str]
    ) -> tuple[_Grant, Identity] | Reply:
        """The code's grant and the identity of its access token, or the page to answer."""
        try:
            grant = self._post(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                    "code_verifier": verifier,
                }
            )
            return grant, identity_of(self._resolver(), grant.access_token)
        except _Refused as refused:
            if refused.error == "invalid_client":
                # The app's credentials, not the user's sign-in: say what to fix.
                logger.error(
                    "%s",
                    with_request_id(
                        "sign-in: LWA refused the client credentials (invalid_client): check "
                        "client_secret (and client_id) against the LWA security profile",
                        refused.request_id,
                    ),
                    extra=fields(
                        "signin_failed", reason="invalid_client", request_id=refused.request_id
                    ),
                )
                return self._failed(
                    502, "Amazon refused this site's credentials: check client_secret.", clear
                )
            self._refusals.warn(
                with_request_id(
                    f"sign-in: LWA refused the code ({refused.error!r:.40})", refused.request_id
                ),
                "code_refused",
                refused.request_id,
            )
            status = 400 if refused.error == "invalid_grant" else 502
            return self._failed(status, "Amazon refused this sign-in.", clear)
        except UpstreamUnavailable as down:
            if down.lwa_endpoint == "token":  # the lookup's failures are logged by the resolver
                self._refusals.warn(
                    f"sign-in: {text(down)}",
                    down.lwa_reason,
                    down.lwa_request_id,
                    event="signin_unavailable",
                    status=down.lwa_status,
                )
            wait = str(down.retry_after or self.retry_after)
            return self._page(
                "unavailable",
                503,
                "Try again",
                "Amazon is unavailable. Try again shortly.",
                clear,
                ("Retry-After", wait),
            )
        except AuthError:
            self._refusals.warn("sign-in: LWA refused the new access token", "token_refused")
            return self._failed(400, "Amazon refused this sign-in.", clear)
