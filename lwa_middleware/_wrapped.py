"""What the ASGI middleware attaches for Starlette, and what it checks about
the app it wraps."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable

from starlette.authentication import AuthCredentials

from .errors import ConfigurationError
from .identity import Identity, expand_scopes

__all__ = ["FrozenCredentials", "credentials_for", "refuse_django_script_name"]


class FrozenCredentials(AuthCredentials):
    """Starlette's ``AuthCredentials``, read-only.

    One object is shared by every identity holding the same scope set (so a
    hit builds nothing), which is only safe because nobody can change it:
    ``scopes`` is a tuple, and attributes cannot be set. A view that did
    ``request.auth.scopes.append("admin")`` would otherwise grant ``admin`` to
    every other user with that scope set, process-wide.
    """

    __slots__ = ()

    def __init__(self, scopes: Iterable[str] = ()) -> None:
        object.__setattr__(self, "scopes", tuple(scopes))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("request.auth is read-only: it is shared by every such identity")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("request.auth is read-only: it is shared by every such identity")

    def __repr__(self) -> str:
        return f"FrozenCredentials({list(self.scopes)!r})"


def credentials_for(identity: Identity) -> AuthCredentials:
    """``scope["auth"]`` for ``identity``: built once per identity, not per request."""
    return _credentials(identity.scopes)


@functools.lru_cache(maxsize=256)
def _credentials(scopes: frozenset[str]) -> AuthCredentials:
    return FrozenCredentials(sorted(expand_scopes(scopes)))


def refuse_django_script_name(app: object) -> None:
    """Refuse to wrap Django's ASGI handler when ``FORCE_SCRIPT_NAME`` is set.

    Django then routes on ``scope["path"]`` minus ``FORCE_SCRIPT_NAME``
    (ignoring ``root_path``), a path this middleware never sees, so its route
    table would judge one URL while Django serves another. The Django
    integration judges ``request.path_info``, the path Django routes on.
    """
    handlers = sys.modules.get("django.core.handlers.asgi")
    if handlers is None or not isinstance(app, handlers.ASGIHandler):
        return
    from django.conf import settings

    if settings.configured and getattr(settings, "FORCE_SCRIPT_NAME", None):
        raise ConfigurationError(
            "LWAMiddleware cannot wrap Django's ASGI handler while FORCE_SCRIPT_NAME is set: "
            "Django routes on a path this middleware does not see. Put "
            "'lwa_middleware.integrations.django.LWAMiddleware' in settings.MIDDLEWARE instead"
        )
