"""FastAPI: dependencies that hand the LWA identity to path operations.

:class:`~lwa_middleware.LWAMiddleware` resolves the token; these
dependencies only read what it attached (``scope["lwa.identity"]``) and never
call LWA. They are also an OpenAPI security scheme (HTTP ``bearer``, format
``LWA access token``), so ``/openapi.json`` lists it under
``components.securitySchemes``, every operation using them carries
``security``, and ``/docs`` shows the lock and an *Authorize* button.

Example::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from lwa_middleware import Identity, LWAMiddleware
    from lwa_middleware.integrations.fastapi import (
        current_identity, install_error_handlers, optional_identity, require_scopes,
    )

    api = FastAPI()
    install_error_handlers(api)

    @api.get("/me")
    def me(identity: Annotated[Identity, Depends(current_identity)]):
        return identity.to_dict()

    @api.get("/shipping")
    def shipping(identity: Annotated[Identity, Depends(require_scopes("postal_code"))]):
        return {"postal_code": identity.postal_code}

    app = LWAMiddleware(api, client_id="amzn1.application-oa2-client.0123", default="optional")

FastAPI's own pages (``/docs``, ``/redoc``, ``/openapi.json``, the Swagger
OAuth2 redirect) are public by default when the middleware wraps a FastAPI
app; ``public_docs=False`` judges them like any path, and an entry in
``routes`` for one of them wins. Serve ``app``, not ``api``: a dependency
reached without the middleware raises :class:`~lwa_middleware.ConfigurationError`
saying so, instead of answering 401 to a valid token.

Errors are the middleware's: 401 ``missing_token`` when there is no
identity, 403 ``insufficient_scope`` with ``scope="…"``. They are raised as
:class:`LWAHTTPException`, an :class:`~fastapi.HTTPException`; with
:func:`install_error_handlers` the body is the middleware's exact
``{"error", "error_description"}``, without it FastAPI's default handler
nests that object under ``"detail"`` (status and headers are right either
way). On WebSocket routes the handler closes a refused socket with code
1008 before the handshake completes, as the middleware does; without it,
Starlette answers the handshake with an HTTP denial response instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from .._engine.errors import DEFAULT_REALM, AuthError, ConfigurationError, MissingToken
from .._engine.identity import IDENTITY_KEY, REALM_KEY, Identity, get_identity, realm_of
from ._common import authorize, normalize_scopes, warn_unprotected
from .starlette import error_response, refuse_websocket

__all__ = [
    "LWABearer",
    "LWAHTTPException",
    "current_identity",
    "install_error_handlers",
    "optional_identity",
    "require_scopes",
]

DEFAULT_DESCRIPTION = (
    "A Login with Amazon access token (Atza|…), as `Authorization: Bearer`, "
    "`x-amz-access-token` or `?access_token=`."
)


class LWAHTTPException(HTTPException):
    """An :class:`~lwa_middleware.AuthError` carried through FastAPI.

    ``detail`` is the middleware's JSON object and ``headers`` its
    ``WWW-Authenticate`` and ``Cache-Control``, so even FastAPI's default
    handler answers the right status and challenge.

    :param error: what the middleware would have raised.
    :param realm: the ``realm`` of ``WWW-Authenticate``.
    """

    def __init__(self, error: AuthError, realm: str = DEFAULT_REALM) -> None:
        super().__init__(
            status_code=error.status,
            detail={"error": error.error, "error_description": error.description},
            headers={
                name: value
                for name, value in error.text_headers(realm)
                # FastAPI's JSONResponse computes its own.
                if name not in ("content-type", "content-length")
            },
        )
        self.error = error
        self.realm = realm

    def response(self) -> Response:
        """The middleware's exact response: status, headers and JSON body."""
        return error_response(self.error, self.realm)


class LWABearer(SecurityBase):
    """A FastAPI security dependency returning the request's :class:`Identity`.

    Use it with ``Depends(scheme)`` or, to require scopes, with
    ``Security(scheme, scopes=[...])``. Scopes from enclosing ``Security``
    dependencies add up, as FastAPI's ``SecurityScopes`` do, and appear in the
    operation's OpenAPI ``security`` requirement.

    :param scheme_name: the name in ``components.securitySchemes``; instances
        sharing a name share one scheme entry.
    :param bearer_format: the scheme's ``bearerFormat``.
    :param description: the scheme's description in ``/docs``.
    :param realm: the ``realm`` of ``WWW-Authenticate``; by default the one
        the middleware published with the request (its ``realm`` option).
    :param auto_error: with ``False``, an anonymous request gives ``None``
        instead of a 401 (scopes, if any, are then still checked on an
        identity that is present).
    """

    def __init__(
        self,
        *,
        scheme_name: str = "LWA",
        bearer_format: str = "LWA access token",
        description: str | None = DEFAULT_DESCRIPTION,
        realm: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name
        self.realm = realm
        self.auto_error = auto_error

    def __repr__(self) -> str:
        return (
            f"LWABearer(scheme_name={self.scheme_name!r}, realm={self.realm!r}, "
            f"auto_error={self.auto_error!r})"
        )

    async def __call__(
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> Identity | None:
        if IDENTITY_KEY not in connection.scope:
            if REALM_KEY not in connection.scope:
                raise _unwrapped(connection.url.path)
            warn_unprotected("FastAPI", connection.url.path)
        identity = get_identity(connection.scope)
        if identity is None and not self.auto_error:
            return None
        try:
            return authorize(identity, frozenset(security_scopes.scopes))
        except AuthError as error:
            realm = self.realm or realm_of(connection.scope)
            raise LWAHTTPException(error, realm) from None


def _unwrapped(path: str) -> ConfigurationError:
    # No key of the middleware's at all, not even on a public route: the
    # server runs the bare FastAPI app. A 401 here would blame a valid token.
    return ConfigurationError(
        f"the request to {path!r} did not go through LWAMiddleware: the server is running "
        "the bare FastAPI app. Serve the wrapped one (app = LWAMiddleware(api, ...); "
        "uvicorn module:app, not module:api)"
    )


#: ``Depends(current_identity)``: the :class:`Identity`, or 401.
current_identity = LWABearer()

#: ``Depends(optional_identity)``: the :class:`Identity`, or ``None`` when anonymous.
optional_identity = LWABearer(auto_error=False)


def require_scopes(
    *scopes: str, scheme: LWABearer = current_identity
) -> Callable[..., Awaitable[Identity]]:
    """A dependency returning the :class:`Identity` if it holds ``scopes``.

    ``Depends(require_scopes("postal_code"))`` is the same as
    ``Security(current_identity, scopes=["postal_code"])``: 401 when
    anonymous, 403 ``insufficient_scope`` (with ``scope=``) when the token
    lacks a scope, and the scopes listed in the operation's OpenAPI
    ``security``.

    :param scopes: LWA scope names.
    :param scheme: the :class:`LWABearer` to use (its realm and scheme name).
    """
    required = sorted(normalize_scopes(scopes, "require_scopes"))

    # A default, not Annotated: with postponed annotations FastAPI resolves
    # annotations in module globals, where this closure's names do not exist.
    async def dependency(
        connection: HTTPConnection,
        identity: Identity | None = Security(scheme, scopes=required),  # noqa: B008
    ) -> Identity:
        if identity is None:  # only if scheme.auto_error is False
            raise LWAHTTPException(MissingToken(), scheme.realm or realm_of(connection.scope))
        return identity

    dependency.__name__ = f"require_scopes_{'_'.join(required) or 'identity'}"
    return dependency


async def _handle(connection: HTTPConnection, exc: Exception) -> Response | None:
    assert isinstance(exc, LWAHTTPException)
    if isinstance(connection, WebSocket):
        # Before accept(): the client sees the handshake refused, as with the middleware.
        await refuse_websocket(connection, exc.error, exc.realm)
        return None
    return exc.response()


def install_error_handlers(app: FastAPI) -> None:
    """Make :class:`LWAHTTPException` answer the middleware's exact body.

    Without it FastAPI answers ``{"detail": {"error": …, "error_description": …}}``.
    WebSocket routes are closed with code 1008, as the middleware does.
    """
    handler: Any = _handle
    app.add_exception_handler(LWAHTTPException, handler)
