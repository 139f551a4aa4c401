"""Mounted apps and ``root_path``: public and optional patterns work, bypasses don't.

An app wrapped in its own :class:`LWAMiddleware` and mounted below a prefix
(``uvicorn --root-path /api``, Starlette's or FastAPI's ``Mount``) sees
``scope["root_path"] == "/api"``. uvicorn and Starlette put the prefix in
``scope["path"]`` too; hypercorn leaves ``path`` as the client sent it. The
route table must give the app's own patterns (``/health``) their policy in
both styles, and an explicit match beats the default of the other form.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from integration_support import bearer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from support.private import Access, Policy, RouteTable
from support.servers import serve_hypercorn as _hypercorn
from support.servers import serve_uvicorn as _uvicorn

from lwa_middleware import LWAMiddleware, get_identity, revalidate
from lwa_middleware.testing import LWAEmulator

PUBLIC = Policy(Access.PUBLIC)
OPTIONAL = Policy(Access.OPTIONAL)
REQUIRED = Policy(Access.REQUIRED)
ROUTES = {"/health": "public", "/": "optional", "/shipping": ["postal_code"]}


# -- the rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/health", PUBLIC),  # uvicorn style: path includes root_path
        ("/health", PUBLIC),  # hypercorn style: it does not
        ("/api", OPTIONAL),
        ("/api/", OPTIONAL),
        ("/api/me", REQUIRED),
        ("/me", REQUIRED),
        ("/api/shipping", Policy(Access.REQUIRED, frozenset({"postal_code"}))),
        ("/apihealth", REQUIRED),  # not below the root: judged whole
    ],
)
def test_app_patterns_hold_below_a_root_path(path: str, expected: Policy) -> None:
    table = RouteTable(ROUTES)
    assert table.lookup_mounted(path, "/api") == expected


def test_an_explicit_match_of_the_full_path_beats_the_default() -> None:
    table = RouteTable({"/api/health": "public", "/api/admin/**": "required"}, default="public")
    assert table.lookup_mounted("/api/health", "/api") == PUBLIC
    # The full path's explicit "required" beats the inner default "public".
    assert table.lookup_mounted("/api/admin/x", "/api") == REQUIRED


def test_when_both_forms_match_the_stricter_wins() -> None:
    table = RouteTable({"/api/**": "public", "/admin": "required"})
    assert table.lookup_mounted("/api/admin", "/api") == REQUIRED
    assert table.lookup_mounted("/api/other", "/api") == PUBLIC


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/health/../admin", REQUIRED),
        ("/api/./admin/../health/../admin", REQUIRED),
        ("/api/admin\n", REQUIRED),
        ("/api//admin/", REQUIRED),
        # The raw form matches nothing: the default (optional), not public.
        ("/api/health\n", OPTIONAL),
        ("/api/admin/../health", OPTIONAL),
    ],
)
def test_mount_bypasses_stay_closed(path: str, expected: Policy) -> None:
    table = RouteTable({"/health": "public", "/admin": "required"}, default="optional")
    assert table.lookup_mounted(path, "/api") == expected


# -- real servers --------------------------------------------------------------


async def _who(request: Request) -> JSONResponse:
    identity = get_identity(request)
    return JSONResponse(
        {"user_id": identity.user_id if identity else None, "path": request.url.path}
    )


def _protected(lwa: LWAEmulator) -> LWAMiddleware:
    inner = Starlette(routes=[Route(path, _who) for path in ("/health", "/", "/me", "/shipping")])
    return LWAMiddleware(inner, client_id=lwa.client_id, api_base_url=lwa.base_url, routes=ROUTES)


def _check(base: str, prefix: str, lwa: LWAEmulator) -> None:
    """The app's own patterns hold at ``base + prefix``."""
    poor = lwa.issue_token(scopes=["profile"])
    with httpx2.Client(base_url=base, timeout=10) as client:
        health = client.get(prefix + "/health")
        assert health.status_code == 200, health.text
        assert health.json()["user_id"] is None
        anonymous = client.get(prefix + "/")
        assert anonymous.status_code == 200, anonymous.text
        assert client.get(prefix + "/me").status_code == 401
        signed = client.get(prefix + "/", headers=bearer(poor))
        assert signed.json()["user_id"] == lwa.customer_for(poor).user_id
        assert client.get(prefix + "/shipping", headers=bearer(poor)).status_code == 403
        assert client.get(prefix + "/health/../me").status_code == 401
        assert client.get(prefix + "/health%2F..%2Fme").status_code in (401, 404)


def test_uvicorn_root_path(lwa_emulator: LWAEmulator) -> None:
    # Behind a proxy that strips /api: the client path is /health, uvicorn
    # gives path="/api/health" and root_path="/api".
    with _uvicorn(_protected(lwa_emulator), root_path="/api") as base:
        _check(base, "", lwa_emulator)


def test_hypercorn_root_path(lwa_emulator: LWAEmulator) -> None:
    # hypercorn gives path="/health" (as sent) and root_path="/api".
    with _hypercorn(_protected(lwa_emulator), root_path="/api") as base:
        _check(base, "", lwa_emulator)


def test_hypercorn_root_path_with_the_prefix_in_the_path(lwa_emulator: LWAEmulator) -> None:
    # A proxy that does not strip: path="/api/health", root_path="/api".
    with _hypercorn(_protected(lwa_emulator), root_path="/api") as base:
        _check(base, "/api", lwa_emulator)


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_starlette_mount(server: str, lwa_emulator: LWAEmulator) -> None:
    outer = Starlette(routes=[Mount("/api", app=_protected(lwa_emulator))])
    serve = _uvicorn if server == "uvicorn" else _hypercorn
    with serve(outer) as base:
        _check(base, "/api", lwa_emulator)


def test_fastapi_mount(lwa_emulator: LWAEmulator) -> None:
    fastapi = pytest.importorskip("fastapi")
    outer = fastapi.FastAPI()
    outer.mount("/api", _protected(lwa_emulator))
    with _uvicorn(outer) as base:
        _check(base, "/api", lwa_emulator)


# -- the full form under hypercorn, WSGI and Django (review findings) ----------


def test_full_form_patterns_hold_when_the_path_lacks_the_prefix() -> None:
    """hypercorn and WSGI give the path below the mount: the full form is
    ``root_path + path``, and its explicit patterns still apply."""
    table = RouteTable(
        {"/api/admin": "required", "/api/shipping": ["postal_code"], "/api/pay": revalidate()},
        default="optional",
    )
    assert table.lookup_mounted("/admin", "/api") == REQUIRED
    assert table.lookup_mounted("/shipping", "/api").scopes == {"postal_code"}
    assert table.lookup_mounted("/pay", "/api").revalidate is True
    assert table.lookup_below("/admin", "/api") == REQUIRED
    assert table.lookup_below("/shipping", "/api/").scopes == {"postal_code"}
    assert table.lookup_below("/other", "/api") == OPTIONAL


def test_hypercorn_full_form_patterns_protect_unprefixed_requests(
    lwa_emulator: LWAEmulator,
) -> None:
    inner = Starlette(routes=[Route("/admin", _who), Route("/shipping", _who)])
    app = LWAMiddleware(
        inner,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/api/admin": "required", "/api/shipping": ["postal_code"]},
        default="optional",
    )
    poor = lwa_emulator.issue_token(scopes=["profile"])
    with _hypercorn(app, root_path="/api") as base, httpx2.Client(base_url=base) as client:
        assert client.get("/admin").status_code == 401
        assert client.get("/shipping", headers=bearer(poor)).status_code == 403


def test_a_wsgi_app_mounted_below_script_name_keeps_full_form_patterns(
    lwa_emulator: LWAEmulator,
) -> None:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client

    from lwa_middleware import LWAWSGIMiddleware

    def admin(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"admin"]

    def not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b""]

    inner = LWAWSGIMiddleware(
        admin,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/api/admin": "required", "/health": "public"},
        default="optional",
    )
    client = Client(DispatcherMiddleware(not_found, {"/api": inner}))
    assert client.get("/api/admin").status_code == 401
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/other").status_code == 200  # optional: anonymous
