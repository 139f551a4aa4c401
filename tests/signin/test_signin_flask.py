"""The Flask glue: blueprint, the extension judging the session cookie, g.lwa_user."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, g

from lwa_middleware.integrations.flask import LWA
from lwa_middleware.signin.flask import current_user, signin_blueprint
from tests.signin.signin_support import authorize, make_signin


def test_flask_sign_in_user_and_logout(lwa_emulator):
    origin = "http://localhost"
    signin = make_signin(lwa_emulator, origin=origin)
    app = Flask(__name__)

    @app.route("/me", methods=["GET", "POST"])
    def me() -> dict[str, object]:
        return {"user": current_user(), "same": g.lwa_user == current_user()}

    LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes=signin.route_policies(),
    )
    app.register_blueprint(signin_blueprint(signin))
    client = app.test_client()
    login = client.get("/login?next=/me")
    back = urlsplit(authorize(lwa_emulator, login.headers["Location"]))
    answer = client.get(f"{back.path}?{back.query}")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/me"
    body = client.get("/me").get_json()
    assert body["user"]["name"] == "Ada Lovelace"
    assert body["same"] is True
    assert client.post("/me").status_code == 403  # CSRF
    assert client.post("/me", headers={"Origin": origin}).status_code == 200
    assert client.post("/logout", headers={"Origin": origin}).status_code == 303
    assert client.get("/me").status_code == 401
