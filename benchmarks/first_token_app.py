"""The app ``bench_first_token.py`` serves with uvicorn and gunicorn: a trivial
app behind the middleware, configured from the environment (``LWA_API_BASE_URL``,
``LWA_VERIFY``, ``LWA_CLIENT_ID``). ``asgi`` and ``wsgi`` are built when the
server loads them, in the worker (the WSGI warm start runs at construction, as
in an app module), and ``bare_asgi``, ``bare_wsgi`` are the app alone."""

from __future__ import annotations

import os
from typing import Any

from first_token import _app as _bare
from first_token import _wsgi_app as _bare_wsgi

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware

_OPTIONS: dict[str, Any] = {
    "client_id": os.environ["LWA_CLIENT_ID"],
    "api_base_url": os.environ["LWA_API_BASE_URL"],
    "verify": os.environ["LWA_VERIFY"],
}


#: The bare apps: what the server's own first request costs.
bare_asgi, bare_wsgi = _bare, _bare_wsgi


def __getattr__(name: str) -> Any:
    # Built when the server asks for it: a uvicorn worker builds no WSGI
    # middleware (whose warm start would open connections) and vice versa.
    if name == "asgi":
        return LWAMiddleware(_bare, **_OPTIONS)
    if name == "wsgi":
        return LWAWSGIMiddleware(_bare_wsgi, **_OPTIONS)
    raise AttributeError(name)
