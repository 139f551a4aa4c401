"""Protect ASGI and WSGI apps with Login with Amazon (LWA) access tokens.

::

    from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, Identity, get_identity

The public API is this module, :mod:`lwa_middleware.integrations`,
:mod:`lwa_middleware.signin` (server-side sign-in) and :mod:`lwa_middleware.testing`
(an LWA emulator for tests and demos); everything else is the private engine,
``lwa_middleware._engine``. There, the two middlewares (:mod:`._engine.asgi`,
:mod:`._engine.wsgi`) are thin translations of one framework-neutral core: the
request decision (:mod:`._engine.gate`, with token extraction in
:mod:`._engine.tokens` and route policies in :mod:`._engine.routes`), the resolver
(:mod:`._engine.resolver`: the lookup :mod:`._engine.flow`, run over HTTP by
:mod:`._engine.upstream`) and the caches (:mod:`._engine.cache`, and
:mod:`._engine.shared_cache` for Redis). The layout is drawn in
``docs/architecture.md``.
"""

from __future__ import annotations

from ._engine._version import __version__
from ._engine.asgi import LWAMiddleware
from ._engine.errors import (
    AuthError,
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAError,
    MissingToken,
    SharedCacheError,
    UnsupportedScope,
    UpstreamUnavailable,
)
from ._engine.identity import Identity, get_identity
from ._engine.routes import revalidate
from ._engine.wsgi import LWAWSGIMiddleware

__all__ = [
    "AuthError",
    "ConfigurationError",
    "Identity",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "LWAError",
    "LWAMiddleware",
    "LWAWSGIMiddleware",
    "MissingToken",
    "SharedCacheError",
    "UnsupportedScope",
    "UpstreamUnavailable",
    "__version__",
    "get_identity",
    "revalidate",
]

# The public names say they live here (as httpx's do): pickles, reprs and
# tracebacks then name ``lwa_middleware.Identity``, not the private engine's
# path, which may change in any release (a pickled Identity would break).
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith("lwa_middleware._engine"):
        _value.__module__ = __name__
del _name, _value
