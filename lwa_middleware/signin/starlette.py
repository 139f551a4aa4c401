"""Starlette and FastAPI glue: the three routes, and ``request.user`` as the linked user.

::

    app = Starlette(routes=[*signin_routes(signin), Route("/", home)])
    app = LWAMiddleware(SignedInUser(app, signin), client_id=..., session=signin,
                        routes={**signin.route_policies(), "/": "optional"})

FastAPI: ``api.router.routes.extend(signin_routes(signin))``, then the same wrapping.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.authentication import UnauthenticatedUser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._engine._asgi_parts import FrozenCredentials
from .._engine.errors import UpstreamUnavailable
from .._engine.identity import IDENTITY_KEY
from ._core import Reply, SignIn

__all__ = ["SignedInUser", "signin_routes"]


def _response(reply: Reply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    for name, value in reply.headers:
        response.headers.append(name, value)
    return response


def signin_routes(signin: SignIn) -> list[Route]:
    """``GET login_path``, ``GET`` the callback path, ``POST logout_path``."""

    async def login(request: Request) -> Response:
        next_path = request.query_params.get("next")
        return _response(await anyio.to_thread.run_sync(signin.login, next_path))

    async def callback(request: Request) -> Response:
        query = request.query_params.multi_items()
        cookies = [v for k, v in request.headers.items() if k == "cookie"]
        return _response(await anyio.to_thread.run_sync(signin.callback, query, cookies))

    async def logout(request: Request) -> Response:
        headers = list(request.scope["headers"])
        return _response(await anyio.to_thread.run_sync(signin.logout, request.method, headers))

    return [
        Route(signin.login_path, login, methods=["GET"]),
        Route(signin.callback_path, callback, methods=["GET"]),
        Route(signin.logout_path, logout, methods=["POST"]),
    ]


class SignedInUser:
    """Inside ``LWAMiddleware``: sets ``scope["user"]`` (``request.user``) to the
    session's linked user (``link``'s result, through ``load_user`` if given)
    when the identity came from the session. Other requests keep the
    middleware's user (the :class:`~lwa_middleware.Identity`), and so does
    every request when the ``SignIn`` has no ``link=``: ``request.user`` is
    then always the Identity, never ``None``. When ``load_user`` returns
    ``None`` (the app's user was deleted since), ``request.user`` is
    Starlette's ``UnauthenticatedUser``, as Django's ``AnonymousUser``: never
    ``None``, whose ``is_authenticated`` would fail the request; and
    ``request.auth`` holds no scope, so Starlette's ``requires`` refuses it."""

    def __init__(self, app: ASGIApp, signin: SignIn, load_user: Any = None) -> None:
        self.app, self.signin, self.load_user = app, signin, load_user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity = scope.get(IDENTITY_KEY)
        if identity is not None and scope["type"] in ("http", "websocket"):
            try:
                if self.signin.in_memory:
                    user = self.signin.user_for(scope["headers"], identity)
                else:
                    user = await anyio.to_thread.run_sync(
                        self.signin.user_for, scope["headers"], identity
                    )
            except UpstreamUnavailable as down:  # the session store went away meanwhile
                await _unavailable(down, scope, send)
                return
            if user is not None:
                scope["user"] = self._loaded(user, scope)
        await self.app(scope, receive, send)

    def _loaded(self, user: Any, scope: Scope) -> Any:
        if self.load_user is None:
            return user
        loaded = self.load_user(user)
        if loaded is None:
            # No user any more: no scopes either, or requires("profile") lets them in.
            scope["auth"] = FrozenCredentials()
            return UnauthenticatedUser()
        return loaded


async def _unavailable(down: UpstreamUnavailable, scope: Scope, send: Send) -> None:
    status, headers, body = down.response("")
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})  # try again later
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
