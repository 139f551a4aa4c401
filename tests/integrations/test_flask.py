"""``lwa_middleware.integrations.flask``: the extension, ``g``, the decorator, the example."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, g, request
from integration_support import (
    assert_insufficient,
    assert_missing_token,
    bearer,
    fresh_warnings,
    http_client,
    load_example,
    same_error,
    wsgi_server,
)
from werkzeug.test import Client

from lwa_middleware import ConfigurationError, LWAWSGIMiddleware
from lwa_middleware.integrations.flask import LWA, current_identity, lwa_required
from lwa_middleware.testing import LWAEmulator


def make_app(lwa: LWAEmulator, config: dict[str, Any] | None = None, **options: Any) -> Flask:
    app = Flask("lwa_flask_test")
    app.config.update(
        LWA_CLIENT_ID=lwa.client_id,
        LWA_API_BASE_URL=lwa.base_url,
        LWA_ROUTES={
            "/open/**": "optional",
            "/public": "public",
            "/policy-zip": ["postal_code"],
            "/policy-both": ["profile", "postal_code"],
        },
        LWA_DEFAULT="required",
    )
    app.config.update(config or {})
    ext = LWA(app, **options)

    def who() -> dict[str, Any]:
        identity = current_identity()
        return {
            "g": g.lwa_identity.user_id if g.lwa_identity else None,
            "current": identity.user_id if identity else None,
        }

    @app.get("/open/who")
    def open_who() -> Any:
        return who()

    @app.get("/open/zip")
    @ext.required("postal_code")
    def open_zip() -> Any:
        return who()

    @app.get("/open/any")
    @lwa_required()
    def open_any() -> Any:
        return who()

    @app.get("/open/async-zip")
    @lwa_required("postal_code")
    async def open_async_zip() -> Any:
        return who()

    @app.get("/policy-zip")
    def policy_zip() -> Any:
        return who()

    @app.get("/open/both")
    @lwa_required("profile", "postal_code")
    def open_both() -> Any:
        return who()

    @app.get("/policy-both")
    def policy_both() -> Any:
        return who()

    @app.get("/required")
    def required() -> Any:
        return who()

    @app.get("/public")
    @lwa_required()
    def public() -> Any:
        return who()

    return app


def test_extension_wraps_the_app_and_registers(lwa_emulator: LWAEmulator) -> None:
    app = make_app(lwa_emulator)
    ext = app.extensions["lwa"]
    assert isinstance(ext, LWA)
    middleware = ext.middleware(app)
    assert isinstance(middleware, LWAWSGIMiddleware)
    # Refusals are Flask responses: the WSGI app is not wrapped.
    assert not isinstance(app.wsgi_app, LWAWSGIMiddleware)
    assert middleware.settings.api_base_url == lwa_emulator.base_url
    assert middleware.settings.client_ids == frozenset({lwa_emulator.client_id})
    with pytest.raises(RuntimeError):
        ext.init_app(app)


def test_g_and_current_identity(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    user_id = lwa_emulator.customer_for(token).user_id
    app = make_app(lwa_emulator)
    client = app.test_client()
    assert client.get("/open/who").json == {"g": None, "current": None}
    assert client.get("/open/who", headers=bearer(token)).json == {"g": user_id, "current": user_id}
    assert client.get("/required", headers=bearer(token)).json == {
        "g": user_id,
        "current": user_id,
    }
    assert_missing_token(client.get("/required"))
    assert lwa_emulator.calls["tokeninfo"] == 1
    with app.app_context():
        assert current_identity() is None


@pytest.mark.parametrize("path", ["/open/zip", "/open/async-zip"])
def test_decorator_answers_like_the_middleware(lwa_emulator: LWAEmulator, path: str) -> None:
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    client = make_app(lwa_emulator).test_client()
    ok = client.get(path, headers=bearer(full))
    assert ok.status_code == 200
    assert ok.json["current"] == lwa_emulator.customer_for(full).user_id

    refused = client.get(path, headers=bearer(poor))
    reference = client.get("/policy-zip", headers=bearer(poor))
    assert_insufficient(refused, "postal_code")
    same_error(refused, reference)

    anonymous = client.get(path)
    assert_missing_token(anonymous)
    same_error(anonymous, client.get("/required"))


def test_several_scopes_answer_like_a_route_policy(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = make_app(lwa_emulator).test_client()
    response = client.get("/open/both", headers=bearer(token))
    assert response.status_code == 403
    same_error(response, client.get("/policy-both", headers=bearer(token)))


def test_no_scopes_needs_an_identity(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile:user_id"])
    client = make_app(lwa_emulator).test_client()
    assert client.get("/open/any", headers=bearer(token)).status_code == 200
    assert_missing_token(client.get("/open/any"))


def test_keywords_win_over_config_and_realm_follows(lwa_emulator: LWAEmulator) -> None:
    app = make_app(
        lwa_emulator,
        config={"LWA_REALM": "ignored", "LWA_CACHE_TTL": 5},
        realm="shop",
    )
    assert app.extensions["lwa"].middleware(app).settings.realm == "shop"
    assert app.extensions["lwa"].middleware(app).settings.cache_ttl == 5
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = app.test_client()
    assert_missing_token(client.get("/required"), realm="shop")
    # The decorator takes the realm from the app's extension.
    assert_missing_token(client.get("/open/zip"), realm="shop")
    assert_insufficient(client.get("/open/zip", headers=bearer(token)), "postal_code", "shop")


def test_bad_config_fails_at_init(lwa_emulator: LWAEmulator) -> None:
    with pytest.raises(ConfigurationError, match="policy"):
        make_app(lwa_emulator, config={"LWA_DEFAULT": "sometimes"})
    with pytest.raises(ConfigurationError, match="unknown option"):
        make_app(lwa_emulator, cache_tll=3)


def test_one_extension_many_apps(lwa_emulator: LWAEmulator) -> None:
    ext = LWA()
    apps = []
    for realm in ("one", "two"):
        app = Flask(f"app_{realm}")
        app.config.update(
            LWA_CLIENT_ID=lwa_emulator.client_id,
            LWA_API_BASE_URL=lwa_emulator.base_url,
            LWA_REALM=realm,
        )
        ext.init_app(app)

        @app.get("/zip")
        @ext.required("postal_code")
        def zip_() -> Any:
            return {}

        apps.append(app)
    token = lwa_emulator.issue_token(scopes=["profile"])
    for app, realm in zip(apps, ("one", "two"), strict=True):
        assert app.extensions["lwa"] is ext
        assert ext.middleware(app).settings.realm == realm
        response = app.test_client().get("/zip", headers=bearer(token))
        assert_insufficient(response, "postal_code", realm)


def test_public_route_fails_closed_and_warns(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    client = make_app(lwa_emulator).test_client()
    with fresh_warnings(), caplog.at_level(logging.WARNING, "lwa_middleware.integrations"):
        assert_missing_token(client.get("/public", headers=bearer(token)))
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert any("Flask" in record.getMessage() for record in caplog.records)


# -- the example, served by Werkzeug's threaded server over a real socket ---------


def test_example_over_threaded_server(lwa_emulator: LWAEmulator) -> None:
    example = load_example("flask_app")
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    assert app.extensions["lwa"] is example.lwa
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(full)
    lwa_emulator.set_latency(0.2, "tokeninfo")
    with wsgi_server(app) as url, http_client(url) as client:
        # Concurrent first requests for one token share one lookup.
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: client.get("/me", headers=bearer(full)), range(6)))
        assert [a.status_code for a in answers] == [200] * 6
        assert {a.json()["user_id"] for a in answers} == {customer.user_id}
        assert lwa_emulator.calls["tokeninfo"] == 1
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").json() == {"hello": "anonymous"}
        assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
        assert client.get("/shipping", headers=bearer(full)).json() == {
            "user_id": customer.user_id,
            "postal_code": customer.postal_code,
        }
        assert_missing_token(client.get("/me"))
        assert_missing_token(client.get("/shipping"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert lwa_emulator.calls["tokeninfo"] == 2


# -- refusals are Flask responses: flask-cors and other after_request hooks see them ----

ORIGIN = "http://127.0.0.1:8000"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}


def cors_app(lwa: LWAEmulator, **options: Any) -> tuple[Flask, list[str]]:
    """flask-cors then the extension, as the module docs lay them out."""
    from flask_cors import CORS

    app = Flask("lwa_flask_cors")
    CORS(
        app,
        origins=[ORIGIN],
        allow_headers=["authorization"],
        expose_headers=["WWW-Authenticate", "Retry-After"],
    )
    ran: list[str] = []

    @app.before_request
    def earlier_hook() -> None:
        # Registered before the extension: must not run for a refused request.
        ran.append("hook")

    ext = LWA(app, client_id=lwa.client_id, api_base_url=lwa.base_url, **options)

    @app.get("/me")
    def me() -> Any:
        ran.append("me")
        identity = current_identity()
        return {"user_id": identity.user_id if identity else None}

    @app.get("/zip")
    @ext.required("postal_code")
    def zip_() -> Any:
        ran.append("zip")
        return {}

    @app.route("/own-options", methods=["GET", "OPTIONS"])
    def own_options() -> Any:
        ran.append("own-options")
        return {"identity": g.lwa_identity is not None}

    return app, ran


def test_flask_cors_decorates_refusals(lwa_emulator: LWAEmulator) -> None:
    app, ran = cors_app(lwa_emulator)
    client = app.test_client()
    anonymous = client.get("/me", headers={"Origin": ORIGIN})
    assert_missing_token(anonymous)
    assert anonymous.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in anonymous.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"www-authenticate", "retry-after"} <= exposed
    # The refusal is the middleware's, byte for byte.
    reference = Client(
        LWAWSGIMiddleware(
            lambda e, s: [], client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
        )
    ).get("/me")
    same_error(anonymous, reference)

    poor = lwa_emulator.issue_token(scopes=["profile"])
    refused = client.get("/zip", headers={"Origin": ORIGIN, **bearer(poor)})
    assert_insufficient(refused, "postal_code")
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    # No other hook, and no view, ran for the 401; the 403 came from the view's guard.
    assert ran == ["hook"]

    ok = client.get("/me", headers={"Origin": ORIGIN, **bearer(poor)})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert ran == ["hook", "hook", "me"]


def test_preflight_flask_answers_passes_without_a_token(lwa_emulator: LWAEmulator) -> None:
    app, ran = cors_app(lwa_emulator)
    client = app.test_client()
    for path in ("/me", "/zip"):
        preflight = client.options(
            path, headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization"}
        )
        assert preflight.status_code == 200, path
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert ran == ["hook", "hook"]  # no view ran
    assert lwa_emulator.calls["tokeninfo"] == 0
    # An OPTIONS that is not a preflight, and a preflight to a view that handles
    # OPTIONS itself, are judged like any request.
    assert_missing_token(client.options("/me"))
    assert_missing_token(client.options("/me", headers={"Origin": ORIGIN}))
    assert_missing_token(client.options("/own-options", headers=PREFLIGHT))
    assert "own-options" not in ran


def test_preflight_options_are_three_way(lwa_emulator: LWAEmulator) -> None:
    strict, _ = cors_app(lwa_emulator, allow_preflight=False)
    assert_missing_token(strict.test_client().options("/me", headers=PREFLIGHT))
    loose, ran = cors_app(lwa_emulator, allow_preflight=True)
    answer = loose.test_client().options("/own-options", headers=PREFLIGHT)
    assert answer.status_code == 200
    assert answer.json == {"identity": False}
    assert ran == ["hook", "own-options"]
    with pytest.raises(ConfigurationError, match="allow_preflight"):
        cors_app(lwa_emulator, allow_preflight="yes")


def test_strip_credentials_reaches_the_flask_request(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    app = Flask("lwa_flask_strip")
    LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        strip_credentials=True,
    )

    @app.before_request
    def touch() -> None:
        # Parsed before the view: the extension must rebuild it after stripping.
        assert request.args

    @app.get("/echo")
    def echo() -> Any:
        return {
            "args": sorted(request.args),
            "query": request.query_string.decode(),
            "url": request.url,
            "authorization": request.headers.get("Authorization"),
            "user": current_identity().user_id,
        }

    client = app.test_client()
    by_query = client.get("/echo", query_string={"access_token": token, "page": "2"}).json
    assert by_query["args"] == ["page"]
    assert by_query["query"] == "page=2"
    assert token not in by_query["url"]
    by_header = client.get("/echo", query_string={"page": "2"}, headers=bearer(token)).json
    assert by_header["authorization"] is None
    assert by_header["user"] == lwa_emulator.customer_for(token).user_id


# -- @lwa.required above @app.get fails loudly ------------------------------------------


def test_required_above_route_raises_at_decoration(lwa_emulator: LWAEmulator) -> None:
    app = Flask("lwa_flask_misplaced")
    lwa = LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default="optional",
    )
    with pytest.raises(ConfigurationError, match=r"below @app\.route/@app\.get"):

        @lwa.required("postal_code")
        @app.get("/shipping")
        def shipping() -> Any:
            return {"secret": True}

    with pytest.raises(ConfigurationError, match="'async_shipping'"):

        @lwa_required()
        @app.get("/async-shipping")
        async def async_shipping() -> Any:
            return {"secret": True}


def test_required_above_route_raises_at_init_app(lwa_emulator: LWAEmulator) -> None:
    app = Flask("lwa_flask_misplaced_early")
    lwa = LWA(client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url)

    @lwa.required("postal_code")  # no app known yet: caught by init_app
    @app.get("/shipping")
    def shipping() -> Any:
        return {"secret": True}

    with pytest.raises(ConfigurationError, match=r"below @app\.route"):
        lwa.init_app(app)


def test_required_above_blueprint_route_never_runs_unguarded(lwa_emulator: LWAEmulator) -> None:
    from flask import Blueprint

    app = Flask("lwa_flask_misplaced_bp")
    lwa = LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default="optional",
    )
    shop = Blueprint("shop", __name__)
    ran: list[str] = []

    @lwa.required("postal_code")  # the blueprint registers later: only a request can tell
    @shop.get("/shipping")
    def shipping() -> Any:
        ran.append("shipping")
        return {"secret": True}

    app.register_blueprint(shop)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    token = lwa_emulator.issue_token(scopes=["profile"])
    with pytest.raises(ConfigurationError, match=r"below @app\.route"):
        app.test_client().get("/shipping", headers=bearer(token))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert app.test_client().get("/shipping").status_code == 500
    assert ran == []


def test_an_unguarded_view_swapped_in_after_requests_is_still_caught(
    lwa_emulator: LWAEmulator,
) -> None:
    # The hook remembers the views it found unguarded, per endpoint: a view
    # put in the endpoint's place later is checked again, before it runs.
    app = Flask("lwa_flask_swapped_view")
    lwa = LWA(
        app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url,
        default="optional",
    )
    ran: list[str] = []

    @app.get("/page")
    def page() -> Any:
        ran.append("page")
        return {"ok": True}

    def secret() -> Any:
        ran.append("secret")
        return {"secret": True}

    lwa.required("postal_code")(secret)  # the guarded copy is never registered
    client = app.test_client()
    assert client.get("/page").status_code == 200
    app.view_functions["page"] = secret
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError, match=r"below @app\.route"):
        client.get("/page")
    assert ran == ["page"]


def test_required_below_route_in_a_blueprint_works(lwa_emulator: LWAEmulator) -> None:
    from flask import Blueprint

    app = Flask("lwa_flask_bp")
    lwa = LWA(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default="optional",
    )
    shop = Blueprint("shop", __name__)

    @shop.get("/shipping")
    @lwa.required("postal_code")
    def shipping() -> Any:
        return {"postal_code": current_identity().postal_code}

    app.register_blueprint(shop)
    full = lwa_emulator.issue_token(scopes=["postal_code"], postal_code="10115")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    client = app.test_client()
    assert client.get("/shipping", headers=bearer(full)).json == {"postal_code": "10115"}
    assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert_missing_token(client.get("/shipping"))
