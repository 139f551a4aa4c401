"""Wiring mistakes of ``SignIn`` (issue 22, item 2): each refused with a message
saying what to change, at construction or at the first request.

Against the emulator, which, as LWA, answers a token request with a wrong
client secret with ``invalid_client`` (LWA-FACTS.md T9: "Access Token
Request" lists invalid_client, "The client authentication failed"; whether
its status is 400 or 401 is not settled by the pages, the emulator answers
401 and the code handles any 4xx).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lwa_middleware import ConfigurationError, LWAMiddleware
from lwa_middleware.integrations.flask import LWA
from lwa_middleware.signin import SignIn
from lwa_middleware.signin.flask import current_user, signin_blueprint
from lwa_middleware.signin.starlette import signin_routes
from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    SESSION_SECRET,
    authorize,
    make_signin,
    path_of,
    starlette_app,
)


def test_signin_without_session_in_the_middleware_says_so_at_the_first_login(
    lwa_emulator: LWAEmulator,
) -> None:
    signin = make_signin(lwa_emulator)
    app = LWAMiddleware(  # session=signin forgotten
        Starlette(routes=signin_routes(signin)),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={**signin.route_policies(), "/": "optional"},
    )
    with TestClient(app, base_url=ORIGIN) as client, pytest.raises(
        ConfigurationError, match="session=signin"
    ):
        client.get("/login")  # was: a sign-in that worked, then 401 everywhere


def test_signin_endpoints_not_public_are_refused_at_construction(
    lwa_emulator: LWAEmulator,
) -> None:
    signin = make_signin(lwa_emulator)
    with pytest.raises(ConfigurationError, match=r"/login.*route_policies\(\)"):
        LWAMiddleware(
            Starlette(routes=signin_routes(signin)),
            client_id=lwa_emulator.client_id,
            session=signin,
            routes={"/": "optional"},  # **signin.route_policies() forgotten
        )
    app = Flask(__name__)
    with pytest.raises(ConfigurationError, match=r"route_policies\(\)"):
        LWA(app, client_id=lwa_emulator.client_id, session=signin, default="required")
    # A "/**": "public" table covers them: accepted.
    LWAMiddleware(
        Starlette(), client_id=lwa_emulator.client_id, session=signin, routes={"/**": "public"}
    )


def _signin(lwa: LWAEmulator, **options: Any) -> SignIn:
    return SignIn(
        client_id=lwa.client_id,
        client_secret=options.pop("client_secret", lwa.client_secret),
        redirect_uri=f"{ORIGIN}/callback",
        session_secret=SESSION_SECRET,
        api_base_url=lwa.base_url,
        **options,
    )


def test_authorize_url_at_amazon_with_the_emulator_is_refused(lwa_emulator: LWAEmulator) -> None:
    # The default authorize_url is Amazon's page: with api_base_url at the
    # emulator, a test would send the browser to the real Amazon.
    with pytest.raises(ConfigurationError, match=r"authorize_url=.*127\.0\.0\.1.*/ap/oa"):
        _signin(lwa_emulator)
    with pytest.raises(ConfigurationError, match="allow_mixed_hosts"):
        _signin(lwa_emulator, authorize_url="https://www.amazon.co.uk/ap/oa")
    mixed = _signin(lwa_emulator, allow_mixed_hosts=True)  # the explicit opt-out
    assert mixed.authorize_url == "https://www.amazon.com/ap/oa"
    _signin(lwa_emulator, authorize_url=f"{lwa_emulator.base_url}/ap/oa")  # matched: fine


def test_signin_api_base_url_at_the_sign_in_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"sign-in host.*api\.amazon\.com"):
        SignIn(
            client_id="amzn1.application-oa2-client.x",
            client_secret="amzn1.oa2-cs.v1.x",
            redirect_uri="https://app.example/callback",
            session_secret=SESSION_SECRET,
            api_base_url="https://www.amazon.com",
        )


class _TokenIds(httpx2.HTTPTransport):
    """The ``x-amzn-RequestId`` of each answer of LWA's token endpoint, as sent."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/auth/o2/token"):
            self.ids.append(response.headers["x-amzn-requestid"])
        return response


def test_a_wrong_client_secret_says_check_client_secret(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    lwa_emulator.add_redirect_uri(f"{ORIGIN}/callback")
    seen = _TokenIds()
    signin = _signin(
        lwa_emulator,
        client_secret="amzn1.oa2-cs.v1." + "0" * 64,  # not the emulator's
        authorize_url=f"{lwa_emulator.base_url}/ap/oa",
        link=lambda identity: identity.user_id,
        http=httpx2.Client(transport=seen),
    )
    with TestClient(
        starlette_app(lwa_emulator, signin), base_url=ORIGIN, follow_redirects=False
    ) as client:
        login = client.get("/login")
        back = authorize(lwa_emulator, login.headers["location"])
        with caplog.at_level(logging.WARNING, logger="lwa_middleware.signin"):
            answer = client.get(path_of(back))
    assert answer.status_code == 502
    assert "check client_secret" in answer.text
    said = [r for r in caplog.records if "check client_secret" in r.getMessage()]
    assert said
    # Structured like every record of the library: a JSON formatter reads these.
    assert [(r.lwa_event, r.lwa_reason) for r in said] == [("signin_failed", "invalid_client")]
    assert all(hasattr(r, "lwa_event") for r in caplog.records if r.name.startswith("lwa_"))
    assert "0" * 64 not in answer.text + caplog.text  # the secret itself never
    code = dict(parse_qsl(urlsplit(back).query))["code"]  # nor the code (SECURITY.md)
    assert code not in answer.text + caplog.text
    # Issue 21: LWA's x-amzn-RequestId in every warning/error log about that call,
    # field and text; the token endpoint's too (the emulator sends one on every
    # answer, as "Obtain Customer Profile Information" shows, LWA-FACTS.md).
    assert len(seen.ids) == 1
    assert [r.lwa_request_id for r in said] == seen.ids
    assert seen.ids[0] in said[0].getMessage()


def test_current_user_without_link_says_what_to_pass(lwa_emulator: LWAEmulator) -> None:
    signin = make_signin(lwa_emulator, link=None)
    app = Flask(__name__)
    LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
    )
    app.register_blueprint(signin_blueprint(signin))

    @app.get("/")
    def home() -> dict[str, Any]:
        return {"user": current_user()}  # was: always None, silently

    app.testing = True
    with pytest.raises(ConfigurationError, match=r"link="):
        app.test_client().get("/")


def test_current_user_with_link_is_unchanged(lwa_emulator: LWAEmulator) -> None:
    signin = make_signin(lwa_emulator, http=httpx2.Client())
    app = Flask(__name__)
    LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/": "optional"},
    )
    app.register_blueprint(signin_blueprint(signin))

    @app.get("/")
    def home() -> dict[str, Any]:
        return {"user": current_user()}

    assert app.test_client().get("/").json == {"user": None}  # anonymous
