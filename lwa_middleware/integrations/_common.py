"""What every integration shares: the per-view scope check, and its error."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .._engine._observe import fields
from .._engine.errors import MissingToken
from .._engine.identity import Identity, check_scopes, expand_scopes
from .._engine.routes import Policy

__all__ = ["authorize", "normalize_scopes", "warn_unprotected"]

logger = logging.getLogger("lwa_middleware.integrations")

#: (framework, path) pairs already warned about; bounded so paths cannot grow it forever.
_warned: set[tuple[str, str]] = set()


def normalize_scopes(scopes: Iterable[str], where: str) -> frozenset[str]:
    """Validate scope names once, at decoration time, as route policies are."""
    return Policy.parse(list(scopes), where).scopes


def authorize(identity: Identity | None, scopes: frozenset[str]) -> Identity:
    """Return ``identity`` if it holds ``scopes``, else raise the middleware's error.

    The scope decision and the error are the core's own
    (:func:`lwa_middleware.identity.check_scopes`),
    so a view-level check can never judge or word it differently from a
    route policy with the same scopes.

    :raises MissingToken: anonymous request (401, challenge without ``error=``).
    :raises InsufficientScope: 403 with ``scope="…"``, as for a route policy.
    """
    if identity is None:
        raise MissingToken()
    check_scopes(expand_scopes(identity.scopes), scopes)
    return identity


def warn_unprotected(framework: str, path: str) -> None:
    """Log, once per path, that a guarded view got a request the middleware skipped.

    The view still fails closed (401); the warning tells the developer that
    the route is ``"public"`` in the route table or that the middleware is
    not installed, so a valid token was never even read.
    """
    key = (framework, path)
    if key in _warned or len(_warned) >= 1000:
        return
    _warned.add(key)
    logger.warning(
        "%s view at %r requires LWA but the middleware attached no "
        "identity key; is the route 'public' or the middleware missing? Answering 401.",
        framework,
        path,
        extra=fields("no_identity_key", route=path),
    )
