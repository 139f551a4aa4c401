"""``lwa_middleware.integrations.fastapi``: dependencies, errors, OpenAPI, the example."""

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from integration_support import (
    assert_insufficient,
    assert_missing_token,
    bearer,
    http_client,
    load_example,
    same_error,
    uvicorn_server,
)
from starlette.testclient import TestClient, WebSocketDenialResponse

from lwa_middleware import Identity, LWAMiddleware
from lwa_middleware.integrations.fastapi import (
    LWABearer,
    LWAHTTPException,
    current_identity,
    install_error_handlers,
    optional_identity,
    require_scopes,
)
from lwa_middleware.testing import LWAEmulator

shop = LWABearer(realm="shop", scheme_name="Shop")


def make_api(handlers: bool = True) -> FastAPI:
    api = FastAPI()
    if handlers:
        install_error_handlers(api)

    @api.get("/me")
    def me(identity: Annotated[Identity, Depends(current_identity)]) -> dict[str, Any]:
        assert isinstance(identity, Identity)
        return {"user_id": identity.user_id, "type": type(identity).__name__}

    @api.get("/maybe")
    async def maybe(
        identity: Annotated[Identity | None, Depends(optional_identity)],
    ) -> dict[str, Any]:
        return {"user_id": identity.user_id if identity else None}

    @api.get("/zip")
    def zip_(identity: Annotated[Identity, Depends(require_scopes("postal_code"))]) -> Any:
        return {"postal_code": identity.postal_code}

    @api.get("/secure-zip")
    def secure_zip(
        identity: Annotated[Identity, Security(current_identity, scopes=["postal_code"])],
    ) -> Any:
        return {"postal_code": identity.postal_code}

    @api.get("/uid", dependencies=[Depends(require_scopes("profile:user_id"))])
    def uid() -> Any:
        return {"ok": True}

    @api.get("/shop")
    def shop_zip(identity: Annotated[Identity, Security(shop, scopes=["postal_code"])]) -> Any:
        return {"user_id": identity.user_id}

    @api.get("/both")
    def both(
        identity: Annotated[
            Identity, Security(current_identity, scopes=["profile", "postal_code"])
        ],
    ) -> Any:
        return {"user_id": identity.user_id}

    @api.get("/policy-both")
    def policy_both() -> Any:
        return {"ok": True}

    @api.get("/policy-zip")
    def policy_zip() -> Any:
        return {"ok": True}

    @api.get("/required")
    def required() -> Any:
        return {"ok": True}

    @api.get("/open")
    def open_() -> Any:
        return {"ok": True}

    @api.websocket("/ws")
    async def ws(
        websocket: WebSocket, identity: Annotated[Identity, Depends(require_scopes("profile"))]
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"user_id": identity.user_id})
        await websocket.close()

    return api


def make_app(lwa: LWAEmulator, handlers: bool = True, **options: Any) -> LWAMiddleware:
    options.setdefault(
        "routes",
        {
            "/policy-zip": ["postal_code"],
            "/policy-both": ["profile", "postal_code"],
            "/required": "required",
            "/docs": "public",
            "/openapi.json": "public",
        },
    )
    options.setdefault("default", "optional")
    return LWAMiddleware(
        make_api(handlers), client_id=lwa.client_id, api_base_url=lwa.base_url, **options
    )


def test_dependencies_return_the_identity(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    customer = lwa_emulator.customer_for(token)
    with TestClient(make_app(lwa_emulator)) as client:
        assert client.get("/me", headers=bearer(token)).json() == {
            "user_id": customer.user_id,
            "type": "Identity",
        }
        assert client.get("/maybe", headers=bearer(token)).json() == {"user_id": customer.user_id}
        assert client.get("/maybe").json() == {"user_id": None}
        for path in ("/zip", "/secure-zip"):
            response = client.get(path, headers=bearer(token))
            assert response.status_code == 200
            assert response.json() == {"postal_code": customer.postal_code}
        assert client.get("/uid", headers=bearer(token)).json() == {"ok": True}
    # Dependencies read what the middleware attached; LWA saw the token once.
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_errors_are_the_middlewares(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator)) as client:
        reference_401 = client.get("/required")
        reference_403 = client.get("/policy-zip", headers=bearer(token))
        assert_insufficient(reference_403, "postal_code")
        for path in ("/me", "/zip", "/secure-zip", "/uid"):
            response = client.get(path)
            assert_missing_token(response)
            same_error(response, reference_401)
        for path in ("/zip", "/secure-zip"):
            response = client.get(path, headers=bearer(token))
            assert_insufficient(response, "postal_code")
            same_error(response, reference_403)
        response = client.get("/both", headers=bearer(token))
        assert response.status_code == 403
        same_error(response, client.get("/policy-both", headers=bearer(token)))


def test_scheme_realm(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator)) as client:
        assert_missing_token(client.get("/shop"), realm="shop")
        assert_insufficient(client.get("/shop", headers=bearer(token)), "postal_code", "shop")


def test_without_handlers_status_and_headers_still_hold(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator, handlers=False)) as client:
        response = client.get("/zip", headers=bearer(token))
        reference = client.get("/policy-zip", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == reference.headers["www-authenticate"]
    assert response.headers["cache-control"] == "no-store"
    # FastAPI's own handler nests the middleware's object under "detail".
    assert response.json() == {"detail": reference.json()}


def test_openapi_security_metadata(lwa_emulator: LWAEmulator) -> None:
    with TestClient(make_app(lwa_emulator)) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    schemes = spec["components"]["securitySchemes"]
    assert schemes["LWA"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "LWA access token",
        "description": schemes["LWA"]["description"],
    }
    assert schemes["Shop"]["scheme"] == "bearer"
    paths = spec["paths"]
    assert paths["/me"]["get"]["security"] == [{"LWA": []}]
    assert paths["/maybe"]["get"]["security"] == [{"LWA": []}]
    assert paths["/zip"]["get"]["security"] == [{"LWA": ["postal_code"]}]
    assert paths["/secure-zip"]["get"]["security"] == [{"LWA": ["postal_code"]}]
    assert paths["/uid"]["get"]["security"] == [{"LWA": ["profile:user_id"]}]
    assert paths["/shop"]["get"]["security"] == [{"Shop": ["postal_code"]}]
    assert "security" not in paths["/open"]["get"]
    # The dependency is a security scheme, not a parameter of the operation.
    assert "parameters" not in paths["/zip"]["get"]
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


def test_websocket_dependency(lwa_emulator: LWAEmulator) -> None:
    good = lwa_emulator.issue_token(scopes=["profile"])
    poor = lwa_emulator.issue_token(scopes=["postal_code"])
    with TestClient(make_app(lwa_emulator)) as client:
        with client.websocket_connect("/ws", headers=bearer(good)) as ws:
            assert ws.receive_json() == {"user_id": lwa_emulator.customer_for(good).user_id}
        for headers, status in ((bearer(poor), 403), ({}, 401)):
            # TestClient offers websocket.http.response: the refusal is the
            # middleware's own HTTP answer.
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect("/ws", headers=headers),
            ):
                pass
            assert refused.value.status_code == status
            assert refused.value.headers["www-authenticate"].startswith('Bearer realm="lwa"')


def test_exception_carries_the_error() -> None:
    from lwa_middleware import InsufficientScope

    exc = LWAHTTPException(InsufficientScope(["postal_code"]), realm="r")
    assert exc.status_code == 403
    assert exc.detail == {
        "error": "insufficient_scope",
        "error_description": (
            "The access token lacks the scope(s) this resource needs: postal_code."
        ),
    }
    assert exc.headers is not None
    assert exc.headers["www-authenticate"].endswith('scope="postal_code"')
    response = exc.response()
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"


# -- the example, served by uvicorn over a real socket --------------------------


def test_example_over_uvicorn(lwa_emulator: LWAEmulator) -> None:
    example = load_example("fastapi_app")
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    with uvicorn_server(app) as url, http_client(url) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").json() == {"hello": "anonymous"}
        assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
        me = client.get("/me", headers=bearer(full))
        assert me.status_code == 200
        assert me.json()["user_id"] == lwa_emulator.customer_for(full).user_id
        assert client.get("/shipping", headers=bearer(full)).json() == {
            "user_id": lwa_emulator.customer_for(full).user_id,
            "postal_code": lwa_emulator.customer_for(full).postal_code,
        }
        assert client.get("/orders", headers=bearer(poor)).status_code == 200
        assert_missing_token(client.get("/me"))
        assert_missing_token(client.get("/shipping"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
        spec = client.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["LWA"]["scheme"] == "bearer"
        assert spec["paths"]["/shipping"]["get"]["security"] == [{"LWA": ["postal_code"]}]
        assert spec["paths"]["/orders"]["get"]["security"] == [{"LWA": ["profile"]}]
        assert "security" not in spec["paths"]["/health"]["get"]
        assert client.get("/docs").status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_dependencies_answer_with_the_middlewares_realm(lwa_emulator: LWAEmulator) -> None:
    """The middleware publishes its realm: dependencies need no ``realm=``."""
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator, realm="shop")) as client:
        refused = client.get("/zip", headers=bearer(poor))
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"].startswith('Bearer realm="shop"')
        assert client.get("/me").headers["www-authenticate"] == 'Bearer realm="shop"'
