"""``lwa_middleware.integrations.starlette.require_scopes`` and the Starlette example."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from integration_support import (
    assert_insufficient,
    assert_missing_token,
    bearer,
    fresh_warnings,
    http_client,
    load_example,
    same_error,
    uvicorn_server,
)
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from lwa_middleware import ConfigurationError, LWAMiddleware, get_identity
from lwa_middleware.integrations.starlette import require_scopes
from lwa_middleware.testing import LWAEmulator


def _who(request: Any) -> dict[str, Any]:
    identity = get_identity(request)
    return {"user_id": identity.user_id if identity else None}


@require_scopes("postal_code")
async def async_zip(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


@require_scopes("postal_code")
def sync_zip(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


@require_scopes()
async def any_identity(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


@require_scopes("profile:user_id")
async def user_id_only(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


@require_scopes("profile", "postal_code")
async def both(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


class ZipEndpoint(HTTPEndpoint):
    @require_scopes("postal_code")
    async def get(self, request: Request) -> JSONResponse:
        return JSONResponse(_who(request))


async def plain(request: Request) -> JSONResponse:
    return JSONResponse(_who(request))


@require_scopes("postal_code")
async def ws_zip(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_who(websocket))
    await websocket.close()


ROUTES = {
    "/public": "public",
    "/opt/**": "optional",
    "/ws/**": "optional",
    "/policy-zip": ["postal_code"],
    "/policy-both": ["profile", "postal_code"],
}


def make_app(lwa: LWAEmulator, **options: Any) -> LWAMiddleware:
    app = Starlette(
        routes=[
            Route("/opt/async-zip", async_zip),
            Route("/opt/sync-zip", sync_zip),
            Route("/opt/any", any_identity),
            Route("/opt/uid", user_id_only),
            Route("/opt/endpoint-zip", ZipEndpoint),
            Route("/policy-zip", plain),
            Route("/policy-both", plain),
            Route("/opt/both", both),
            Route("/required", plain),
            Route("/public", any_identity),
            WebSocketRoute("/ws/zip", ws_zip),
        ]
    )
    options.setdefault("routes", ROUTES)
    return LWAMiddleware(app, client_id=lwa.client_id, api_base_url=lwa.base_url, **options)


@pytest.mark.parametrize("path", ["/opt/async-zip", "/opt/sync-zip", "/opt/endpoint-zip"])
def test_scopes_held_pass_with_identity(lwa_emulator: LWAEmulator, path: str) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    with TestClient(make_app(lwa_emulator)) as client:
        response = client.get(path, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"user_id": lwa_emulator.customer_for(token).user_id}


@pytest.mark.parametrize("path", ["/opt/async-zip", "/opt/sync-zip", "/opt/endpoint-zip"])
def test_missing_scope_answers_like_the_middleware(lwa_emulator: LWAEmulator, path: str) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator)) as client:
        response = client.get(path, headers=bearer(token))
        reference = client.get("/policy-zip", headers=bearer(token))
    assert_insufficient(response, "postal_code")
    assert_insufficient(reference, "postal_code")
    same_error(response, reference)
    # One lookup served both routes: the decorator never calls LWA.
    assert lwa_emulator.calls["tokeninfo"] == 1


@pytest.mark.parametrize("path", ["/opt/async-zip", "/opt/sync-zip", "/opt/any"])
def test_anonymous_on_optional_route_gets_the_middlewares_401(
    lwa_emulator: LWAEmulator, path: str
) -> None:
    with TestClient(make_app(lwa_emulator)) as client:
        response = client.get(path)
        reference = client.get("/required")
    assert_missing_token(response)
    same_error(response, reference)
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_several_scopes_answer_like_a_route_policy(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator)) as client:
        response = client.get("/opt/both", headers=bearer(token))
        reference = client.get("/policy-both", headers=bearer(token))
    assert response.status_code == 403
    same_error(response, reference)


def test_no_scopes_means_any_identity(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile:user_id"])
    with TestClient(make_app(lwa_emulator)) as client:
        assert client.get("/opt/any", headers=bearer(token)).status_code == 200
        # "profile" implies "profile:user_id", as in route policies.
        rich = lwa_emulator.issue_token(scopes=["profile"])
        assert client.get("/opt/uid", headers=bearer(rich)).status_code == 200


def test_custom_realm(lwa_emulator: LWAEmulator) -> None:
    @require_scopes("postal_code", realm="shop")
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = LWAMiddleware(
        Starlette(routes=[Route("/x", endpoint)]),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default="optional",
        realm="shop",
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(app) as client:
        assert_missing_token(client.get("/x"), realm="shop")
        assert_insufficient(client.get("/x", headers=bearer(token)), "postal_code", realm="shop")


def test_public_route_fails_closed_and_warns(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile"])
    with (
        fresh_warnings(),
        caplog.at_level(logging.WARNING, "lwa_middleware.integrations"),
        TestClient(make_app(lwa_emulator)) as client,
    ):
        response = client.get("/public", headers=bearer(token))
    # The middleware reads no token on a public route, so there is no identity.
    assert_missing_token(response)
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert any("'/public'" in record.getMessage() for record in caplog.records)
    assert token not in caplog.text


def test_websocket_endpoint(lwa_emulator: LWAEmulator) -> None:
    good = lwa_emulator.issue_token(scopes=["postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_app(lwa_emulator)) as client:
        with client.websocket_connect("/ws/zip", headers=bearer(good)) as ws:
            assert ws.receive_json() == {"user_id": lwa_emulator.customer_for(good).user_id}
        for headers, status in ((bearer(poor), 403), ({}, 401)):
            # TestClient offers websocket.http.response: the refusal is the
            # middleware's own HTTP answer.
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect("/ws/zip", headers=headers),
            ):
                pass
            assert refused.value.status_code == status
            assert refused.value.headers["www-authenticate"].startswith('Bearer realm="lwa"')


def test_bad_scope_name_is_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError):
        require_scopes("postal code")


def test_endpoint_without_connection_is_a_type_error() -> None:
    @require_scopes()
    def not_an_endpoint(value: int) -> int:
        return value

    with pytest.raises(TypeError):
        not_an_endpoint(1)


# -- the example, served by uvicorn over a real socket --------------------------


def test_example_over_uvicorn(lwa_emulator: LWAEmulator) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    example = load_example("starlette_app")
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["postal_code"])
    with (
        uvicorn_server(example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)) as url,
        http_client(url) as client,
    ):
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").json() == {"hello": "anonymous"}
        assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
        me = client.get("/me", headers=bearer(full))
        assert me.status_code == 200
        assert me.json()["user_id"] == lwa_emulator.customer_for(full).user_id
        shipping = client.get("/shipping", headers=bearer(full))
        assert shipping.status_code == 200
        assert shipping.json()["postal_code"] == lwa_emulator.customer_for(full).postal_code
        assert_missing_token(client.get("/shipping"))
        assert_missing_token(client.get("/me"))
        profile_only = lwa_emulator.issue_token(scopes=["profile"])
        assert_insufficient(client.get("/shipping", headers=bearer(profile_only)), "postal_code")

        ws_url = url.replace("http://", "ws://") + "/ws"
        with connect(ws_url, additional_headers=bearer(full), open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"hello": "Ada"}
        # The token lacks "profile": the handshake is refused, never accepted.
        with pytest.raises(InvalidStatus):
            connect(ws_url, additional_headers=bearer(poor), open_timeout=5)
    # Cached: the full token was resolved once for all its requests.
    assert lwa_emulator.calls["tokeninfo"] == 3


def test_one_users_request_auth_cannot_grant_scopes_to_another(
    lwa_emulator: LWAEmulator,
) -> None:
    """``request.auth`` is shared by identities with one scope set, so it is read-only."""
    from starlette.authentication import requires

    attempts: list[str] = []

    async def escalate(request: Request) -> JSONResponse:
        try:
            request.auth.scopes.append("admin")
        except AttributeError as error:
            attempts.append(f"append: {error}")
        try:
            request.auth.scopes = [*request.auth.scopes, "admin"]
        except AttributeError as error:
            attempts.append(f"assign: {error}")
        return JSONResponse(list(request.auth.scopes))

    @requires("admin")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"admin": True})

    app = LWAMiddleware(
        Starlette(routes=[Route("/escalate", escalate), Route("/admin", admin)]),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    mallory = lwa_emulator.issue_token(scopes=["profile"])
    alice = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(app) as client:
        assert "admin" not in client.get("/escalate", headers=bearer(mallory)).json()
        assert len(attempts) == 2
        assert client.get("/admin", headers=bearer(alice)).status_code == 403
        assert client.get("/admin", headers=bearer(mallory)).status_code == 403
        # Starlette's own check still reads the scopes.
        assert "profile" in client.get("/escalate", headers=bearer(alice)).json()


def test_require_scopes_answers_with_the_middlewares_realm(lwa_emulator: LWAEmulator) -> None:
    """The middleware publishes its realm: ``@require_scopes`` needs no ``realm=``."""
    app = LWAMiddleware(
        Starlette(routes=[Route("/zip", async_zip), Route("/sync-zip", sync_zip)]),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        default="optional",
        realm="shop",
    )
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(app) as client:
        for path in ("/zip", "/sync-zip"):
            refused = client.get(path, headers=bearer(poor))
            assert refused.status_code == 403
            assert refused.headers["www-authenticate"].startswith('Bearer realm="shop"')
            assert client.get(path).headers["www-authenticate"] == 'Bearer realm="shop"'
