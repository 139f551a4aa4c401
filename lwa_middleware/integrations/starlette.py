"""Starlette: a per-endpoint scope check that answers like the middleware.

:class:`~lwa_middleware.LWAMiddleware` already fills ``request.user`` and
``request.auth``, so ``starlette.authentication.requires`` works; but it
answers a bare ``403`` with no JSON and no ``WWW-Authenticate``.
:func:`require_scopes` answers exactly what the middleware would have:
``401 missing_token`` for an anonymous request, ``403 insufficient_scope``
with ``scope="…"`` for a token without the scopes. WebSocket endpoints are
closed before the handshake completes (code 1008), as the middleware does.

Example::

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from lwa_middleware import LWAMiddleware, get_identity
    from lwa_middleware.integrations.starlette import require_scopes

    @require_scopes("postal_code")
    async def shipping(request):
        return JSONResponse({"postal_code": get_identity(request).postal_code})

    app = LWAMiddleware(
        Starlette(routes=[Route("/shipping", shipping)]),
        client_id="amzn1.application-oa2-client.0123",
        routes={"/shipping": "optional"},
    )

The route's policy in the middleware should be ``"optional"`` or
``"required"`` (it resolves the token); on a ``"public"`` route no token is
ever read, so the decorator can only answer 401.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, cast

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from .._engine._asgi_parts import WS_POLICY_VIOLATION
from .._engine.errors import DEFAULT_REALM, AuthError
from .._engine.identity import IDENTITY_KEY, Identity, get_identity, realm_of
from ._common import authorize, normalize_scopes, warn_unprotected

__all__ = ["require_scopes"]

P = ParamSpec("P")



def error_response(error: AuthError, realm: str = DEFAULT_REALM) -> Response:
    """The middleware's answer to ``error`` as a Starlette :class:`Response`."""
    # Response keeps a given content-type/length instead of adding its own.
    return Response(error.response(realm)[2], error.status, dict(error.text_headers(realm)))


async def refuse_websocket(websocket: WebSocket, error: AuthError, realm: str) -> None:
    """Refuse a WebSocket handshake as the middleware does: the real HTTP answer
    where the server offers the denial-response extension, else close 1008."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error, realm))
    else:
        await websocket.close(WS_POLICY_VIOLATION, reason=error.error)


def _is_async(endpoint: Any) -> bool:
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return inspect.iscoroutinefunction(endpoint) or (
        callable(endpoint) and inspect.iscoroutinefunction(type(endpoint).__call__)
    )


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
    # Functions take (request), methods of HTTPEndpoint take (self, request):
    # look for the connection instead of trusting a position or a name.
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError("@require_scopes: the endpoint received no Request or WebSocket")


def check(connection: HTTPConnection, scopes: frozenset[str]) -> Identity:
    """The connection's identity if it holds ``scopes``; else raise the middleware's error."""
    if IDENTITY_KEY not in connection.scope:
        warn_unprotected("Starlette", connection.url.path)
    return authorize(get_identity(connection.scope), scopes)


def require_scopes(
    *scopes: str, realm: str | None = None
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Decorate a Starlette endpoint so it needs an identity holding ``scopes``.

    With no scopes it needs an identity, which is how an ``"optional"`` route
    gets a few endpoints that need a token. Works on ``async`` and plain
    endpoints, on :class:`~starlette.endpoints.HTTPEndpoint` methods and on
    WebSocket endpoints.

    :param scopes: LWA scope names, e.g. ``"postal_code"``; ``"profile"``
        satisfies ``"profile:user_id"``, as in route policies.
    :param realm: the ``realm`` of ``WWW-Authenticate``; by default the one
        the middleware published with the request (its ``realm`` option).
    """
    required = normalize_scopes(scopes, "require_scopes")

    def decorator(endpoint: Callable[P, Any]) -> Callable[P, Any]:
        if _is_async(endpoint):
            async_endpoint = cast(Callable[P, Awaitable[Any]], endpoint)

            @functools.wraps(endpoint)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                connection = _connection(args, kwargs)
                try:
                    check(connection, required)
                except AuthError as error:
                    answer_realm = realm or realm_of(connection.scope)
                    if isinstance(connection, WebSocket):
                        await refuse_websocket(connection, error, answer_realm)
                        return None
                    return error_response(error, answer_realm)
                return await async_endpoint(*args, **kwargs)

            return async_wrapper

        @functools.wraps(endpoint)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            connection = _connection(args, kwargs)
            try:
                check(connection, required)
            except AuthError as error:
                return error_response(error, realm or realm_of(connection.scope))
            return endpoint(*args, **kwargs)

        return sync_wrapper

    return decorator
