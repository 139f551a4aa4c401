"""Optional tiers and the extra that installs each (issue 19: a lean install).

``pip install lwa-middleware`` installs what the middlewares need. The shared
Redis cache and server-side sign-in need packages of their own, installed by
an extra; using a tier without them raises :class:`MissingExtra`, which names
the extra, instead of a bare ``No module named 'redis'``::

    with needs_extra("redis", "redis_url (the shared cache)"):
        import redis
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from .errors import ConfigurationError

__all__ = ["EXTRAS", "MissingExtra", "needs_extra"]

#: Each extra, and the top-level modules it brings that the tier imports.
#: Kept equal to pyproject.toml's [project.optional-dependencies] by
#: tests/test_packaging.py.
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    # The shared cache seals its values with AES-GCM (_seal.py, as sign-in does).
    "redis": ("redis", "cryptography"),
    "signin": ("cryptography",),
}


class MissingExtra(ConfigurationError, ImportError):
    """An optional tier is used without the packages its extra installs.

    A :class:`~lwa_middleware.errors.ConfigurationError` (raised at
    construction, never per request) and an :class:`ImportError` (what code
    that probes for optional packages catches). ``name`` is the missing module.
    """


@contextlib.contextmanager
def needs_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module of ``extra`` into :class:`MissingExtra`.

    Any other import error (a module of another tier, a broken install) goes
    through unchanged: the message must not send the user to the wrong extra.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS[extra]:
            raise
        error = MissingExtra(
            f"{feature} needs the {missing!r} package, which the {extra!r} extra installs: "
            f"pip install 'lwa-middleware[{extra}]'"
        )
        error.name = missing
        raise error from exc
