"""Reading the identity back, whatever the framework."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .identity import Identity

__all__ = ["IDENTITY_KEY", "get_identity"]

#: The key under which both middlewares store the identity.
IDENTITY_KEY = "lwa.identity"


def get_identity(source: Any) -> Identity | None:
    """The :class:`Identity` of a request, or ``None`` when anonymous or unprotected.

    :param source: an ASGI scope or WSGI environ (any mapping), or a request
        object exposing ``.scope`` (Starlette, FastAPI, Litestar, Quart,
        Falcon ASGI), ``.environ`` (Werkzeug, Flask), ``.META`` (Django) or
        ``.env`` (Falcon WSGI).
    :raises TypeError: for anything else, so a wrong argument is caught early.

    Example::

        @app.route("/me")
        def me():
            identity = get_identity(flask.request)
            return {"user_id": identity.user_id if identity else None}
    """
    if isinstance(source, Mapping):
        mappings: list[Mapping[str, Any]] = [source]
    else:
        # Django's ASGIRequest has both .scope and .META; the identity is in
        # whichever the middleware in use wrote to, so look in each.
        mappings = [
            candidate
            for attribute in ("scope", "environ", "META", "env")
            if isinstance(candidate := getattr(source, attribute, None), Mapping)
        ]
        if not mappings:
            raise TypeError(
                "get_identity() takes an ASGI scope, a WSGI environ, or a request with "
                f".scope, .environ, .META or .env, not {type(source).__name__}"
            )
    for mapping in mappings:
        identity = mapping.get(IDENTITY_KEY)
        if isinstance(identity, Identity):
            return identity
    return None
