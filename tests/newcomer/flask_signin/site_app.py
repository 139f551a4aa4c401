"""A server-rendered Flask site with "Sign in with Amazon": SignIn keeps the tokens on the
server, the browser only gets a session cookie. Written from docs/how-to/sign-in.md ("On the
server", "Flask") and docs/how-to/testing.md ("Testing a SignIn app") alone."""

import os

from flask import Flask

from lwa_middleware.integrations.flask import LWA
from lwa_middleware.signin import SignIn
from lwa_middleware.signin.flask import current_user, signin_blueprint


def create_app(signin: SignIn, **lwa_options: object) -> Flask:
    app = Flask(__name__)
    LWA(app, session=signin,
        routes={**signin.route_policies(), "/": "optional", "/account": "required"},
        login_redirect=signin.login_path, **lwa_options)
    app.register_blueprint(signin_blueprint(signin))

    @app.get("/")
    def home() -> dict:
        return {"user": current_user()}

    @app.get("/account")
    def account() -> dict:
        return {"account": current_user()}

    return app


def make_signin(**options: object) -> SignIn:
    """Production settings from the environment; tests pass the emulator's."""
    defaults = {
        "client_id": os.environ.get("LWA_CLIENT_ID", "amzn1.application-oa2-client.0123"),
        "client_secret": os.environ.get("LWA_CLIENT_SECRET", ""),
        "session_secret": os.environ.get("SESSION_SECRET", ""),
        "redirect_uri": "https://shop.example/callback",
        "link": lambda identity: {"id": identity.user_id, "name": identity.name},
    }
    return SignIn(**{**defaults, **options})  # type: ignore[arg-type]
