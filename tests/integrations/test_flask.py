"""``lwa_middleware.integrations.flask``: the extension, ``g``, the decorator, the example."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, g
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
    assert isinstance(app.wsgi_app, LWAWSGIMiddleware)
    assert ext.middleware(app) is app.wsgi_app
    assert app.wsgi_app.settings.api_base_url == lwa_emulator.base_url
    assert app.wsgi_app.settings.client_ids == frozenset({lwa_emulator.client_id})
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
    assert app.wsgi_app.settings.realm == "shop"
    assert app.wsgi_app.settings.cache_ttl == 5
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
