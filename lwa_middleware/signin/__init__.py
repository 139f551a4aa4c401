"""Server-side sign-in with Login with Amazon: the code flow with PKCE, sessions
kept on the server (encrypted at rest), and a ``"session"`` token source for
the middlewares.

Example (Starlette; Flask, Django and FastAPI glue beside this module)::

    signin = SignIn(client_id=..., client_secret=..., session_secret=...,
                    redirect_uri="https://app.example/callback")
    app = LWAMiddleware(Starlette(routes=[*signin_routes(signin), ...]),
                        client_id=..., session=signin,
                        routes={**signin.route_policies(), "/": "optional"})
"""

from typing import TYPE_CHECKING

from .._deprecated import moved
from ._core import Reply, SignIn
from ._pages import Page
from ._sessions import ACL_RULES, MemorySessionStore, RedisSessionStore, SessionStore

__all__ = [
    "ACL_RULES",
    "MemorySessionStore",
    "Page",
    "RedisSessionStore",
    "Reply",
    "SessionStore",
    "SignIn",
]

# AUTHORIZE_URL, CrossSiteRequest, SessionSource: no longer public (issue 19), still
# importable with a warning.
if not TYPE_CHECKING:  # a type checker keeps refusing names that are not public
    __getattr__ = moved(__name__, "lwa_middleware.signin._core", "lwa_middleware.signin._source")
