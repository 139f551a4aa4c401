"""Protect ASGI and WSGI apps with Login with Amazon (LWA) access tokens.

::

    from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, Identity, get_identity

The two middlewares (:mod:`.asgi`, :mod:`.wsgi`) and the framework
integrations (:mod:`.integrations`) are thin translations of one
framework-neutral core: the request decision (:mod:`.gate`, with token
extraction in :mod:`.tokens` and route policies in :mod:`.routes`), the
resolver (:mod:`.resolver`: the lookup :mod:`.flow`, run over HTTP by
:mod:`.upstream`) and the caches (:mod:`.cache`, and :mod:`.shared_cache` for
Redis). :mod:`.signin` adds server-side sign-in (sessions, a ``"session"``
token source); :mod:`lwa_middleware.testing` ships an LWA emulator for tests
and demos. The layout is drawn in ``docs/architecture.md``.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

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
