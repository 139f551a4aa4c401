"""Wiring mistakes of the middlewares (issue 22, item 2), each refused with a
message saying what to change, or made to work; and the FastAPI docs pages,
public by default (item 5).

LWA facts relied on (LWA-FACTS.md): the API host per region is
api.amazon.com / api.amazon.co.uk / api.amazon.co.jp (T10, "Access Token
Request"/"Using Login with Amazon with the EU/FE" pages); the authorize page
is https://www.amazon.com/ap/oa (A9, "Authorization Code Grant").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from lwa_middleware import ConfigurationError, Identity, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.integrations.fastapi import current_identity, optional_identity
from lwa_middleware.testing import LWAEmulator
from tests.conftest import starlette_app, wsgi_echo

# -- an app of the wrong kind -----------------------------------------------------


def test_a_wsgi_app_in_the_asgi_middleware_is_refused_at_construction(
    lwa_emulator: LWAEmulator,
) -> None:
    for app in (wsgi_echo, Flask(__name__)):
        with pytest.raises(ConfigurationError, match=r"WSGI app.*LWAWSGIMiddleware"):
            LWAMiddleware(app, client_id=lwa_emulator.client_id)


def test_an_asgi_app_in_the_wsgi_middleware_is_refused_at_construction(
    lwa_emulator: LWAEmulator,
) -> None:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        pass

    for app in (starlette_app(), FastAPI(), plain):
        with pytest.raises(ConfigurationError, match=r"ASGI app.*LWAMiddleware"):
            LWAWSGIMiddleware(app, client_id=lwa_emulator.client_id)


def test_apps_of_the_right_kind_are_still_accepted(lwa_emulator: LWAEmulator) -> None:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        pass

    class Callable3:  # an ASGI app whose __call__ returns the coroutine
        def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
            return plain(scope, receive, send)

    def start(environ: Any, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return []

    asgi = [plain, starlette_app(), FastAPI(), Callable3(), functools.partial(plain)]
    for app in asgi:
        LWAMiddleware(app, client_id=lwa_emulator.client_id)
    for wsgi in (wsgi_echo, Flask(__name__), start, functools.partial(start)):
        LWAWSGIMiddleware(wsgi, client_id=lwa_emulator.client_id).close()


# -- api_base_url at the sign-in host -------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://www.amazon.com", "https://www.amazon.co.uk/", "https://WWW.Amazon.co.jp"]
)
def test_api_base_url_at_the_sign_in_host_is_refused_naming_the_api_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"sign-in host.*https://api\.amazon\.com"):
        LWAMiddleware(starlette_app(), client_id="amzn1.application-oa2-client.x", api_base_url=url)


# -- the bare FastAPI app served instead of the wrapped one ---------------------------


def _fastapi() -> FastAPI:
    api = FastAPI()

    @api.get("/me")
    def me(identity: Annotated[Identity, Depends(current_identity)]) -> dict[str, str]:
        return {"user_id": identity.user_id}

    @api.get("/maybe")
    def maybe(identity: Annotated[Identity | None, Depends(optional_identity)]) -> dict[str, Any]:
        return {"user_id": identity.user_id if identity else None}

    return api


def test_the_bare_fastapi_app_says_it_is_not_wrapped(lwa_emulator: LWAEmulator) -> None:
    api = _fastapi()
    app = LWAMiddleware(api, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url)
    token = lwa_emulator.issue_token(scopes=["profile"])
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as wrapped:  # served right: the identity
        assert wrapped.get("/me", headers=bearer).json()["user_id"].startswith("amzn1.account.")
    with TestClient(api) as bare, pytest.raises(ConfigurationError, match="bare FastAPI app"):
        bare.get("/me", headers=bearer)  # was a 401 missing_token for a valid token


def test_a_guarded_fastapi_view_on_a_public_route_still_answers_401(
    lwa_emulator: LWAEmulator,
) -> None:
    # The middleware ran (the route is public), so this is the route table's
    # choice, not a wiring mistake: 401 and the warning, as before.
    app = LWAMiddleware(
        _fastapi(),
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/me": "public", "/maybe": "public"},
    )
    with TestClient(app) as client:
        assert client.get("/me").status_code == 401
        assert client.get("/maybe").json() == {"user_id": None}


# -- FastAPI's docs pages: public by default --------------------------------------------


def test_fastapi_docs_are_public_by_default(lwa_emulator: LWAEmulator) -> None:
    app = LWAMiddleware(_fastapi(), client_id=lwa_emulator.client_id)  # default "required"
    with TestClient(app) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 200, path
        assert client.get("/me").status_code == 401  # the API itself is not
        assert client.get("/openapi.json/x").status_code == 401  # exact paths only


def test_fastapi_docs_public_through_a_wrapper_and_under_other_urls(
    lwa_emulator: LWAEmulator,
) -> None:
    api = FastAPI(docs_url="/api/docs", openapi_url="/api/schema.json", redoc_url=None)

    class Wrapper:  # SignedInUser, a CORS layer...: the app is in .app
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    app = LWAMiddleware(Wrapper(api), client_id=lwa_emulator.client_id)
    with TestClient(app) as client:
        assert client.get("/api/docs").status_code == 200
        assert client.get("/api/schema.json").status_code == 200
        assert client.get("/redoc").status_code == 401


def test_fastapi_docs_public_when_added_with_add_middleware(lwa_emulator: LWAEmulator) -> None:
    # FastAPI's own way (docs/how-to/frameworks.md, CORS): Starlette builds the
    # middleware around the app's inner layers, not around the FastAPI app.
    api = _fastapi()
    api.add_middleware(
        LWAMiddleware, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    token = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(api) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 200, path
        assert client.get("/me").status_code == 401
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    custom = FastAPI(docs_url="/api/docs", openapi_url="/api/schema.json", redoc_url=None)
    custom.add_middleware(LWAMiddleware, client_id=lwa_emulator.client_id)
    off = _fastapi()
    off.add_middleware(LWAMiddleware, client_id=lwa_emulator.client_id, public_docs=False)
    with TestClient(custom) as client:
        assert client.get("/api/docs").status_code == 200
        assert client.get("/api/schema.json").status_code == 200
        assert client.get("/redoc").status_code == 401
    with TestClient(off) as client:
        assert client.get("/docs").status_code == 401


def test_public_docs_false_and_explicit_routes_win(lwa_emulator: LWAEmulator) -> None:
    off = LWAMiddleware(_fastapi(), client_id=lwa_emulator.client_id, public_docs=False)
    explicit = LWAMiddleware(
        _fastapi(), client_id=lwa_emulator.client_id, routes={"/docs": "required"}
    )
    with TestClient(off) as client:
        assert client.get("/docs").status_code == 401
        assert client.get("/openapi.json").status_code == 401
    with TestClient(explicit) as client:
        assert client.get("/docs").status_code == 401
        assert client.get("/openapi.json").status_code == 200


def test_public_docs_does_not_touch_other_apps(lwa_emulator: LWAEmulator) -> None:
    async def docs(request: Any) -> PlainTextResponse:
        return PlainTextResponse("mine")

    app = LWAMiddleware(
        Starlette(routes=[Route("/docs", docs)]), client_id=lwa_emulator.client_id
    )
    with TestClient(app) as client:
        assert client.get("/docs").status_code == 401
    with pytest.raises(ConfigurationError, match="public_docs must be True or False"):
        LWAMiddleware(starlette_app(), client_id=lwa_emulator.client_id, public_docs="yes")
