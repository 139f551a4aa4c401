"""A clickable demo of lwa-middleware, wired to the bundled LWA emulator.

Run it with ``lwa-middleware demo`` (needs the ``demo`` extra, for uvicorn),
or build the app yourself::

    from lwa_middleware.demo import build_demo_app, serve_in_thread
    from lwa_middleware.testing import LWAEmulator

    with LWAEmulator() as lwa, serve_in_thread(build_demo_app(lwa)) as url:
        lwa.add_redirect_uri(url + "/callback")
        print("open", url)

The page (``/``) signs in with LWA's JavaScript SDK (the emulator's
stand-in for it): the Authorization Code grant with PKCE through the
emulator's "Login with Amazon" page, ``amazon.Login.retrieveToken`` for the
token; then it calls a protected API with it, shows what a missing scope
looks like, and displays the middleware's cache counters as it goes.
"""

from __future__ import annotations

from .app import DEMO_ROUTES, build_demo_app
from .server import bind_socket, serve_in_thread

__all__ = ["DEMO_ROUTES", "bind_socket", "build_demo_app", "serve_in_thread"]
