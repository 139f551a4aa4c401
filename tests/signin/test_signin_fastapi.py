"""The server-side flow in FastAPI: the sign-in routes on the app's router,
``SignedInUser`` for the linked user, the middleware's session source, and
FastAPI's own dependencies reading the session's identity."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from lwa_middleware import LWAMiddleware
from lwa_middleware.signin.starlette import SignedInUser, signin_routes
from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator
from tests.signin.signin_support import ORIGIN, make_signin, session_cookie, sign_in

pytest.importorskip("fastapi")

from fastapi import Depends, FastAPI, Request

from lwa_middleware import Identity
from lwa_middleware.integrations.fastapi import current_identity, require_scopes


def test_fastapi_sign_in_identity_user_and_logout(lwa_emulator: LWAEmulator) -> None:
    signin = make_signin(lwa_emulator)
    api = FastAPI()
    api.router.routes.extend(signin_routes(signin))

    @api.get("/me")
    def me(request: Request, identity: Identity = Depends(current_identity)) -> dict[str, Any]:  # noqa: B008
        user = request.scope.get("user")
        return {"user_id": identity.user_id, "app_user": user if isinstance(user, dict) else None}

    @api.get("/zip")
    def zip_code(identity: Identity = Depends(require_scopes("postal_code"))) -> dict[str, Any]:  # noqa: B008
        return {"postal_code": identity.postal_code}

    app = LWAMiddleware(
        SignedInUser(api, signin),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/me": "required", "/zip": "optional"},
    )
    ada = BUILTIN_CUSTOMERS[0]
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        assert client.get("/me").status_code == 401
        back = sign_in(client, lwa_emulator)
        assert back.status_code == 303
        assert session_cookie(back) is not None
        me = client.get("/me")
        assert me.status_code == 200, me.text
        linked = {"id": ada.user_id, "name": ada.name}
        assert me.json() == {"user_id": ada.user_id, "app_user": linked}
        refused = client.get("/zip")  # signed in with "profile" only
        assert refused.status_code == 403
        assert 'scope="postal_code"' in refused.headers["www-authenticate"]
        out = client.post("/logout", headers={"Origin": ORIGIN})
        assert out.status_code in (302, 303)
        assert client.get("/me").status_code == 401
    signin.close()


def test_a_user_load_user_no_longer_finds_is_anonymous_not_a_500(lwa_emulator: LWAEmulator) -> None:
    # Review: load_user returning None (the app deleted the user since) put
    # None in scope["user"], and request.user.is_authenticated answered 500.
    signin = make_signin(lwa_emulator)
    api = FastAPI()
    api.router.routes.extend(signin_routes(signin))

    @api.get("/me")
    def me(request: Request) -> dict[str, Any]:
        return {"authenticated": request.user.is_authenticated}

    app = LWAMiddleware(
        SignedInUser(api, signin, load_user=lambda linked: None),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes={**signin.route_policies(), "/me": "optional"},
    )
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        assert sign_in(client, lwa_emulator).status_code == 303
        me = client.get("/me")
        assert me.status_code == 200, me.text
        assert me.json() == {"authenticated": False}
    signin.close()
