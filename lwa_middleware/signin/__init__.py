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

from ._core import AUTHORIZE_URL, Reply, SignIn
from ._pages import Page
from ._sessions import ACL_RULES, MemorySessionStore, RedisSessionStore, SessionStore
from ._source import CrossSiteRequest, SessionSource

__all__ = [
    "ACL_RULES",
    "AUTHORIZE_URL",
    "CrossSiteRequest",
    "MemorySessionStore",
    "Page",
    "RedisSessionStore",
    "Reply",
    "SessionSource",
    "SessionStore",
    "SignIn",
]
