"""Telling an ASGI app from a WSGI one at construction.

A WSGI app wrapped by the ASGI middleware (or the reverse) used to be
accepted, then fail with a ``TypeError`` at the first request. Both
interfaces are plain callables, so the check is a heuristic, and it refuses
only what is certain: an ``async`` callable is ASGI, and a plain callable
whose signature takes exactly ``(environ, start_response)`` is WSGI.
Anything it cannot read (builtins, C callables) is trusted.
"""

from __future__ import annotations

import inspect
from typing import Any

from .errors import ConfigurationError

__all__ = ["refuse_asgi_app", "refuse_wsgi_app"]


def _is_async(app: Any) -> bool:
    call = type(app).__call__ if callable(app) else None
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


def _takes_exactly(app: Any, count: int) -> bool:
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return False
    args = [object()] * count
    try:
        signature.bind(*args)
    except TypeError:
        return False
    try:
        signature.bind(*args, object())
    except TypeError:
        return True
    return False


def refuse_wsgi_app(app: Any) -> None:
    """For the ASGI middleware: raise if ``app`` is a WSGI app."""
    if not callable(app):
        raise ConfigurationError(f"LWAMiddleware wraps an ASGI app, not {type(app).__name__}")
    if not _is_async(app) and _takes_exactly(app, 2):
        raise ConfigurationError(
            f"LWAMiddleware was given {_name(app)}, a WSGI app (it takes environ and "
            "start_response): wrap it with LWAWSGIMiddleware instead (Flask: the "
            "lwa_middleware.integrations.flask.LWA extension), or convert it to ASGI first "
            "(a2wsgi.WSGIMiddleware, asgiref.wsgi.WsgiToAsgi)"
        )


def refuse_asgi_app(app: Any) -> None:
    """For the WSGI middleware: raise if ``app`` is an ASGI app."""
    if not callable(app):
        raise ConfigurationError(f"LWAWSGIMiddleware wraps a WSGI app, not {type(app).__name__}")
    if _is_async(app):
        raise ConfigurationError(
            f"LWAWSGIMiddleware was given {_name(app)}, an ASGI app (async, it takes scope, "
            "receive and send): wrap it with LWAMiddleware instead and serve it with an ASGI "
            "server (uvicorn, hypercorn)"
        )


def _name(app: Any) -> str:
    return getattr(app, "__qualname__", None) or f"a {type(app).__name__}"
