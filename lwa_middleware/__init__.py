"""Protect ASGI and WSGI apps with Login with Amazon (LWA) access tokens.

::

    from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, Identity, get_identity

The two middlewares share one framework-neutral core (:mod:`.core`): token
extraction (:mod:`.tokens`), route policy (:mod:`.routes`), resolution
(:mod:`.flow`, driven by :mod:`.transport`) and caching (:mod:`.cache`, and
:mod:`.shared_cache` for Redis). :mod:`lwa_middleware.testing` ships an LWA
emulator for tests and demos.
"""

from __future__ import annotations

from .asgi import LWAMiddleware
from .errors import (
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
from .identity import Identity, get_identity
from .routes import revalidate
from .wsgi import LWAWSGIMiddleware

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
