"""A session's refresh, kept apart from :mod:`.core` (the steps) so each stays short.

Two guards. One refresh at a time per session: this process's threads share
it (the caller's single-flight), workers share it through a lease in the
store, fenced by an owner token. And logout wins: the refreshed session is
written only if the store still holds the very bytes the refresh read, so a
logout that lands while LWA answers is never undone.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from .._engine._observe import fields, text, with_request_id
from .._engine.errors import BreakerOpen, UpstreamUnavailable
from ._parts import _Grant, _Refused, _Session

if TYPE_CHECKING:
    from ._sessions import SessionStore

__all__ = ["Refreshing", "warn_without_delete_if"]

logger = logging.getLogger("lwa_middleware.signin")

#: Seconds between two looks at a lease another worker holds.
_POLL: Final = 0.05


class Refreshing:
    """SignIn's refresh, as a base class of it: its steps read SignIn's state
    as their own (declared here for the type checker; SignIn defines them)."""

    if TYPE_CHECKING:
        store: SessionStore
        clock: Callable[[], float]
        timeout: float
        retry_after: int
        client_id: str
        _secret: str

        def _load(self, key: str) -> _Session | None: ...
        def _load_sealed(self, key: str) -> tuple[bytes, _Session] | None: ...
        def _fresh(self, session: _Session) -> bool: ...
        def _save(self, key: str, session: _Session, replacing: bytes | None = None) -> bool: ...
        def _post(self, form: Mapping[str, str]) -> _Grant: ...
        def _revoke(self, token: str) -> None: ...

    def _refresh(self, key: str) -> str | None:
        """One refresh per session: this process's threads share it (the caller's
        single-flight), workers share it through a lease in the store, fenced
        by an owner token so a holder whose lease ran out frees nobody else's."""
        lease = "lease:" + key
        give_up = time.monotonic() + self.timeout * 2
        while True:
            session = self._load(key)
            if session is None:
                return None
            if self._fresh(session):
                return session.access_token
            owner = self.store.lease(lease, self.timeout * 2)
            if owner is not None:
                try:
                    found = self._load_sealed(key)  # another worker may have just finished
                    if found is None or self._fresh(found[1]):
                        return found[1].access_token if found is not None else None
                    return self._refresh_now(key, *found)
                finally:
                    self.store.release(lease, owner)
            if time.monotonic() > give_up:
                raise UpstreamUnavailable("The session refresh timed out.", self.retry_after)
            time.sleep(_POLL)

    def _refresh_now(self, key: str, sealed: bytes, session: _Session) -> str | None:
        if not session.refresh_token:
            self._end(key, sealed)
            return None
        try:
            grant = self._post(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": session.refresh_token,
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                }
            )
        except _Refused as refused:
            if refused.error == "invalid_grant":  # app removed, token revoked: the end
                logger.info(
                    "session ended: LWA refused its refresh token",
                    extra=fields("session_ended", reason="invalid_grant"),
                )
                self._end(key, sealed)
                self._revoke(session.access_token)
                return None
            logger.error(
                "%s",
                with_request_id(
                    f"session refresh refused by LWA ({refused.error!r:.40}): check client_secret "
                    "(and client_id) against the LWA security profile",
                    refused.request_id,
                ),
                extra=fields(
                    "refresh_failed", reason="client_refused", request_id=refused.request_id
                ),
            )
            raise UpstreamUnavailable(
                "The session could not be refreshed.", self.retry_after
            ) from None
        except UpstreamUnavailable as down:
            if not isinstance(down, BreakerOpen):  # the resolver logged the outage
                logger.warning(
                    "session refresh: %s",
                    text(down),
                    extra=fields(
                        "refresh_failed",
                        reason=down.lwa_reason,
                        status=down.lwa_status,
                        request_id=down.lwa_request_id,
                    ),
                )
            if session.expires_at - self.clock() > 5:  # still valid: use it meanwhile
                return session.access_token
            raise
        now = self.clock()
        renewed = _Session(
            grant.access_token,
            grant.refresh_token or session.refresh_token,
            now + grant.expires_in,
            session.ends_at,
            session.user_id,
            session.user,
        )
        if self._save(key, renewed, replacing=sealed):
            return renewed.access_token
        # The session changed while LWA answered: a logout took it (it must
        # stay ended), or a worker whose lease outlived ours refreshed it. The
        # new token is kept nowhere; revoked too, as logout revokes the old one.
        logger.info(
            "session refresh discarded: the session ended or changed meanwhile",
            extra=fields("refresh_discarded"),
        )
        self._revoke(grant.access_token)
        current = self._load(key)
        return current.access_token if current is not None and self._fresh(current) else None

    def _end(self, key: str, sealed: bytes) -> None:
        """Delete the session only if the store still holds the bytes the
        refresh read: a login or another worker's refresh that replaced it
        meanwhile is not ended by this refresh's refusal."""
        delete_if = getattr(self.store, "delete_if", None)
        if delete_if is not None:
            delete_if(key, sealed)
        else:  # a store written before delete_if (warned at SignIn's construction)
            # The same condition through replace: for a second the key holds
            # bytes no sealer opens, which reads as no session.
            self.store.replace(key, sealed, b"", 1.0)


def warn_without_delete_if(store: SessionStore) -> None:
    """A store without ``delete_if`` still works (see :meth:`Refreshing._end`), for one release."""
    if not callable(getattr(store, "delete_if", None)):
        warnings.warn(
            f"{type(store).__name__} has no delete_if(key, old): SessionStore needs it from "
            "the next release (see MemorySessionStore.delete_if); meanwhile a refused "
            "refresh ends the session with replace(key, old, b'', 1.0)",
            DeprecationWarning,
            stacklevel=3,
        )
