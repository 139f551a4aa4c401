"""Flask glue: a blueprint with the three routes, ``g.lwa_user`` and :func:`current_user`.

::

    signin = SignIn(...)
    app.config.update(LWA_ROUTES={**signin.route_policies(), "/": "optional"})
    LWA(app, client_id=..., session=signin)     # the extension judges the session cookie
    app.register_blueprint(signin_blueprint(signin))
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, has_request_context, request

from .._engine.errors import ConfigurationError, UpstreamUnavailable
from .._engine.identity import get_identity
from ._core import Reply, SignIn

__all__ = ["current_user", "signin_blueprint"]


def _response(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status)
    for name, value in reply.headers:
        response.headers.add(name, value)
    return response


def _headers() -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]


def signin_blueprint(signin: SignIn, name: str = "lwa_signin") -> Blueprint:
    """The login, callback and logout views; sets ``g.lwa_user`` on every request."""
    blueprint = Blueprint(name, __name__)

    @blueprint.get(signin.login_path)
    def login() -> Response:
        return _response(signin.login(request.args.get("next")))

    @blueprint.get(signin.callback_path)
    def callback() -> Response:
        cookies = request.headers.getlist("Cookie")
        return _response(signin.callback(list(request.args.items(multi=True)), cookies))

    @blueprint.post(signin.logout_path)
    def logout() -> Response:
        return _response(signin.logout(request.method, _headers()))

    @blueprint.before_app_request
    def load_user() -> Response | None:
        g.lwa_user_linked = signin.link is not None
        try:
            g.lwa_user = signin.user_for(_headers(), get_identity(request.environ))
        except UpstreamUnavailable as down:  # the session store went away meanwhile
            status, _, body = down.response("")
            return Response(body, status=status, headers=down.text_headers(""))
        return None

    return blueprint


def current_user() -> Any:
    """The signed-in user (``link``'s result), ``None`` when anonymous or outside a request.

    :raises ConfigurationError: the ``SignIn`` has no ``link=``, so there is no
        user to give (it would always be ``None``); use ``current_identity()``
        for the Amazon identity instead.
    """
    if not has_request_context():
        return None
    if g.get("lwa_user_linked") is False:
        raise ConfigurationError(
            "current_user() is link()'s result, and this SignIn has no link=: pass "
            "SignIn(link=lambda identity: ...) (your user's id, a dict), or call "
            "lwa_middleware.integrations.flask.current_identity() for the Amazon identity"
        )
    return g.get("lwa_user")
