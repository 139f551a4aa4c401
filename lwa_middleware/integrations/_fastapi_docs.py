"""FastAPI's own documentation pages, found on the app the ASGI middleware wraps.

``/docs``, ``/redoc``, ``/openapi.json`` and the Swagger OAuth2 redirect are
static pages describing the API, served by FastAPI itself; with the default
``"required"`` policy they answered 401, so everyone listed them as public by
hand. The middleware now makes them public unless ``public_docs=False`` (or
the route table names them).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

__all__ = ["docs_paths"]

#: Wrappers between the middleware and the FastAPI app (SignedInUser, CORS...) keep it in ``.app``.
_MAX_DEPTH = 8


#: FastAPI.setup() serves the docs pages with endpoints defined inside it.
_SETUP_ENDPOINT = "FastAPI.setup.<locals>."


def docs_paths(app: Any) -> list[str]:
    """The docs paths of the FastAPI app ``app`` is or wraps (through ``.app``); else ``[]``."""
    fastapi = sys.modules.get("fastapi")
    if fastapi is None:  # never imported: no FastAPI app can be running
        return []
    for _ in range(_MAX_DEPTH):
        if isinstance(app, fastapi.FastAPI):
            return _paths(app)
        if isinstance(app, fastapi.APIRouter):
            # api.add_middleware(LWAMiddleware, ...): Starlette builds the middleware
            # around the app's inner layers, whose chain ends at the app's router.
            return _setup_paths(app, fastapi.FastAPI)
        app = getattr(app, "app", None)
        if app is None:
            return []
    return []


def _paths(api: Any) -> list[str]:
    paths = []
    if api.openapi_url:
        paths.append(api.openapi_url)
        if api.docs_url:
            paths.append(api.docs_url)
            if api.swagger_ui_oauth2_redirect_url:
                paths.append(api.swagger_ui_oauth2_redirect_url)
        if api.redoc_url:
            paths.append(api.redoc_url)
    prefix = (api.root_path or "").rstrip("/")
    return [prefix + path if prefix and not path.startswith(prefix) else path for path in paths]


def _setup_paths(router: Any, app_type: Any) -> list[str]:
    """The docs paths of the app whose ``setup()`` made endpoints of ``router``
    and whose router it is (its ``self``, in their closure). Another app's
    docs endpoints copied in (``include_router`` copies them, prefixed) stay
    under the route table: their paths are not this app's docs."""
    for route in router.routes:
        endpoint = getattr(route, "endpoint", None)
        if not getattr(endpoint, "__qualname__", "").startswith(_SETUP_ENDPOINT):
            continue
        for cell in getattr(endpoint, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                owner: Any = cell.cell_contents
                if isinstance(owner, app_type) and owner.router is router:
                    return _paths(owner)
    return []
