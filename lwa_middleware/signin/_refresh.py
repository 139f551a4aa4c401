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
from typing import TYPE_CHECKING, Final

from .._engine._observe import fields, text, with_request_id
from .._engine.errors import UpstreamUnavailable
from ._parts import _Refused, _Session

if TYPE_CHECKING:
    from ._core import SignIn

logger = logging.getLogger("lwa_middleware.signin")

#: Seconds between two looks at a lease another worker holds.
_POLL: Final = 0.05


def refresh(signin: SignIn, key: str) -> str | None:
    """One refresh per session: this process's threads share it (the caller's
    single-flight), workers share it through a lease in the store, fenced
    by an owner token so a holder whose lease ran out frees nobody else's."""
    lease = "lease:" + key
    give_up = time.monotonic() + signin.timeout * 2
    while True:
        session = signin._load(key)
        if session is None:
            return None
        if signin._fresh(session):
            return session.access_token
        owner = signin.store.lease(lease, signin.timeout * 2)
        if owner is not None:
            try:
                found = signin._load_sealed(key)  # another worker may have just finished
                if found is None or signin._fresh(found[1]):
                    return found[1].access_token if found is not None else None
                return _refresh_now(signin, key, *found)
            finally:
                signin.store.release(lease, owner)
        if time.monotonic() > give_up:
            raise UpstreamUnavailable("The session refresh timed out.", signin.retry_after)
        time.sleep(_POLL)


def _refresh_now(signin: SignIn, key: str, sealed: bytes, session: _Session) -> str | None:
    if not session.refresh_token:
        signin.store.delete(key)
        return None
    try:
        grant = signin._post(
            {
                "grant_type": "refresh_token",
                "refresh_token": session.refresh_token,
                "client_id": signin.client_id,
                "client_secret": signin._secret,
            }
        )
    except _Refused as refused:
        if refused.error == "invalid_grant":  # app removed, token revoked: the end
            logger.info(
                "session ended: LWA refused its refresh token",
                extra=fields("session_ended", reason="invalid_grant"),
            )
            signin.store.delete(key)
            signin._revoke(session.access_token)
            return None
        logger.error(
            "%s",
            with_request_id(
                f"session refresh refused by LWA ({refused.error!r:.40}): check client_secret "
                "(and client_id) against the LWA security profile",
                refused.request_id,
            ),
            extra=fields("refresh_failed", reason="client_refused", request_id=refused.request_id),
        )
        raise UpstreamUnavailable(
            "The session could not be refreshed.", signin.retry_after
        ) from None
    except UpstreamUnavailable as down:
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
        if session.expires_at - signin.clock() > 5:  # still valid: use it meanwhile
            return session.access_token
        raise
    now = signin.clock()
    renewed = _Session(
        grant.access_token,
        grant.refresh_token or session.refresh_token,
        now + grant.expires_in,
        session.ends_at,
        session.user_id,
        session.user,
    )
    if signin._save(key, renewed, replacing=sealed):
        return renewed.access_token
    # The session changed while LWA answered: a logout took it (it must
    # stay ended), or a worker whose lease outlived ours refreshed it. The
    # new token is kept nowhere; revoked too, as logout revokes the old one.
    logger.info(
        "session refresh discarded: the session ended or changed meanwhile",
        extra=fields("refresh_discarded"),
    )
    signin._revoke(grant.access_token)
    current = signin._load(key)
    return current.access_token if current is not None and signin._fresh(current) else None
