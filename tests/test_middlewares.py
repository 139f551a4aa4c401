"""Behaviours both middlewares share, written once and run over each: the
ASGI middleware through ``httpx2.ASGITransport``, the WSGI one through
Werkzeug's client between two ``wsgiref.validate`` validators. What only one
of them has (websockets, lifespan, Starlette's ``user``; WSGI environ quirks)
stays in ``test_asgi.py`` and ``test_wsgi.py``; the error table is
``test_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote
from wsgiref.validate import validator

import pytest
from support.callers import AsgiCaller, WsgiCaller, bearer
from support.contract import OTHER_CLIENT, challenge
from support.leaks import Secrets

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator


class Spy:
    """Wraps the app behind the middleware: a copy of every scope or environ
    that reached it (minus the test client's own record of what it sent)."""

    def __init__(self, mw: Any, asgi: bool) -> None:
        self.seen: list[dict[str, Any]] = []
        inner = mw.app
        if asgi:

            async def spy(scope: Any, receive: Any, send: Any) -> None:
                self.seen.append(dict(scope))
                await inner(scope, receive, send)

            mw.app = spy
        else:

            def wsgi_spy(environ: Any, start_response: Any) -> Any:
                self.seen.append({k: v for k, v in environ.items() if k != "werkzeug.request"})
                return inner(environ, start_response)

            mw.app = validator(wsgi_spy)


Make = Callable[..., tuple[AsgiCaller | WsgiCaller, Spy]]


@pytest.fixture(params=["asgi", "wsgi"])
def make(
    request: pytest.FixtureRequest,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Make]:
    """``make(**options)``: a caller on a fresh middleware, and a spy on its app."""
    made: list[AsgiCaller | WsgiCaller] = []

    def build(**options: Any) -> tuple[AsgiCaller | WsgiCaller, Spy]:
        caller: AsgiCaller | WsgiCaller
        if request.param == "asgi":
            mw: Any = make_asgi(**options)
            spy = Spy(mw, asgi=True)
            caller = AsgiCaller(mw)
        else:
            mw = make_wsgi(**options)
            spy = Spy(mw, asgi=False)
            caller = WsgiCaller(mw, wrap=validator)
        made.append(caller)
        return caller, spy

    yield build
    for caller in made:
        caller.close()


def _header_names(caller: AsgiCaller | WsgiCaller, body: dict[str, Any]) -> set[str]:
    """The echo app's header names, in ASGI spelling."""
    names = body["headers"]
    if caller.kind == "wsgi":
        return {n[5:].lower().replace("_", "-") for n in names}
    return set(names)


# -- token sources ---------------------------------------------------------------


@pytest.mark.parametrize(
    "send",
    [
        lambda t: ({"Authorization": f"bearer {t}"}, ""),
        lambda t: ({"Authorization": f"BEARER {t}"}, ""),
        lambda t: ({"x-amz-access-token": t}, ""),
        lambda t: ({}, "access_token=" + quote(t, safe="")),
        lambda t: ({}, "a=1&access_token=" + t.replace("|", "%7C") + "&b=2"),
        lambda t: ({}, "access%5Ftoken=" + quote(t, safe="")),
        lambda t: ({"Authorization": f"Bearer {t}", "x-amz-access-token": t}, ""),
        lambda t: ({"Authorization": f"Bearer {t}"}, "access_token=" + quote(t, safe="")),
        lambda t: ({"x-amz-access-token": t}, "access_token=" + quote(t, safe="")),
        lambda t: ({"Authorization": "Basic dXNlcjpwYXNz", "x-amz-access-token": t}, ""),
    ],
    ids=[
        "bearer-lower",
        "bearer-upper",
        "amz-header",
        "query",
        "query-pct7C",
        "query-pct-key",
        "bearer+amz-same",
        "bearer+query-same",
        "amz+query-same",
        "basic+amz",
    ],
)
def test_every_token_source(
    send: Callable[[str], tuple[dict[str, str], str]], lwa_emulator: LWAEmulator, make: Make
) -> None:
    caller, _ = make()
    token = lwa_emulator.issue_token()
    headers, query = send(token)
    for _ in range(2):  # cold, then cached
        reply = caller.get("/me", headers=headers, query=query)
        assert reply.status == 200, reply.body
        assert reply.user_id == lwa_emulator.customer_for(token).user_id
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.token_in_url == 0


def test_a_cached_token_with_a_second_different_token_is_still_400(
    lwa_emulator: LWAEmulator, make: Make
) -> None:
    caller, _ = make()
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    assert caller.get("/me", token).status == 200
    assert caller.get("/me", other).status == 200
    combos: list[tuple[Any, str]] = [
        ({**bearer(token), "x-amz-access-token": other}, ""),
        (bearer(token), "access_token=" + quote(other, safe="")),
        (bearer(token), "access%5Ftoken=" + quote(other, safe="")),
        ({"x-amz-access-token": token}, "access_token=" + quote(other, safe="")),
    ]
    if caller.kind == "asgi":  # a WSGI server joins repeated headers with ", "
        combos.append(
            ([("authorization", f"Bearer {token}"), ("authorization", f"Bearer {other}")], "")
        )
    for headers, query in combos:
        reply = caller.get("/me", headers=headers, query=query)
        assert reply.status == 400, (headers, query)
        assert reply.json()["error"] == "invalid_request"


def test_token_sources_turn_a_source_off_even_for_cached_tokens(
    lwa_emulator: LWAEmulator, make: Make
) -> None:
    token = lwa_emulator.issue_token()
    query = "access_token=" + quote(token, safe="")
    caller, _ = make(token_sources=("header",))
    assert caller.get("/me", token).status == 200
    refused = caller.get("/me", query=query)
    assert refused.status == 400
    assert "query string" in refused.json()["error_description"]
    caller, _ = make(token_sources=("query",))
    assert caller.get("/me", query=query).status == 200
    # Cached now: the hot path must still refuse a header token.
    refused = caller.get("/me", token)
    assert refused.status == 400
    assert "in headers" in refused.json()["error_description"]


# -- scopes and clients ------------------------------------------------------------


def test_scope_implication_and_tokeninfo_only_routes(
    lwa_emulator: LWAEmulator, make: Make
) -> None:
    caller, _ = make()
    profile = lwa_emulator.issue_token(scopes=["profile"])
    uid = lwa_emulator.issue_token(scopes=["profile:user_id"])
    # "profile" satisfies "profile:user_id".
    assert caller.get("/uid", profile).status == 200
    reply = caller.get("/uid", uid)
    assert reply.status == 200
    assert reply.json()["identity"]["scopes"] == ["profile:user_id"]
    assert caller.get("/users/7/orders", profile).status == 200
    denied = caller.get("/users/7/orders", uid)
    assert denied.status == 403
    assert challenge(denied.headers["www-authenticate"])["scope"] == "profile"
    zip_token = lwa_emulator.issue_token(scopes=["postal_code"], postal_code="98109")
    reply = caller.get("/zip", zip_token)
    assert reply.status == 200
    assert reply.json()["identity"]["postal_code"] == "98109"
    assert reply.json()["identity"]["scopes"] == ["postal_code", "profile:user_id"]


def test_several_client_ids(lwa_emulator: LWAEmulator, make: Make) -> None:
    caller, _ = make(client_id=[OTHER_CLIENT, lwa_emulator.client_id])
    ours = lwa_emulator.issue_token()
    theirs = lwa_emulator.issue_token(aud=OTHER_CLIENT)
    stranger = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.stranger")
    assert caller.get("/me", ours).json()["identity"]["client_id"] == lwa_emulator.client_id
    assert caller.get("/me", theirs).json()["identity"]["client_id"] == OTHER_CLIENT
    assert caller.get("/me", stranger).status == 401


# -- public and optional -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/a/b/c"])
def test_public_routes_never_read_credentials_nor_call_lwa(
    path: str, lwa_emulator: LWAEmulator, make: Make
) -> None:
    caller, spy = make()
    junk: list[dict[str, Any]] = [
        {"Authorization": "Bearer a b c"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer one", "x-amz-access-token": "two"},
        {"x-amz-access-token": b"\xff\xfe"},
        bearer(lwa_emulator.issue_token()),
    ]
    for headers in junk:
        reply = caller.get(path, headers=headers, query="access_token=three&access_token=four")
        assert reply.status == 200
        body = reply.json()
        assert body["identity"] is None
        assert "user" not in body  # the middleware did not touch the scope
        assert _header_names(caller, body) & {"authorization", "x-amz-access-token"}
        assert "access_token=three" in body["query"]
        assert "lwa.identity" not in spy.seen[-1]
    lwa_emulator.inject(Fault.DOWN)
    assert caller.get(path, "whatever").status == 200
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert lwa_emulator.calls["profile"] == 0


def test_optional_route(lwa_emulator: LWAEmulator, make: Make) -> None:
    caller, spy = make()
    anonymous = caller.get("/optional")
    assert anonymous.status == 200
    assert anonymous.json()["identity"] is None
    assert spy.seen[-1]["lwa.identity"] is None
    if caller.kind == "asgi":
        assert anonymous.json()["user"] == {"is_authenticated": False, "display_name": ""}
        assert anonymous.json()["auth_scopes"] == []
    basic = caller.get("/optional", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.json()["identity"] is None
    known = caller.get("/optional", lwa_emulator.issue_token(name="Ada"))
    assert known.status == 200
    assert known.json()["identity"]["name"] == "Ada"
    if caller.kind == "asgi":
        assert known.json()["user"]["is_authenticated"] is True
    bad = caller.get("/optional", "Atza|" + "z" * 400)
    assert bad.status == 401
    assert bad.json()["error"] == "invalid_token"
    assert caller.get("/optional", headers={"Authorization": "Bearer"}).status == 400
    lwa_emulator.inject(Fault.SERVER_ERROR)
    assert caller.get("/optional", lwa_emulator.issue_token()).status == 503


# -- credentials stripped ----------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True])
def test_strip_credentials(cached: bool, lwa_emulator: LWAEmulator, make: Make) -> None:
    token = lwa_emulator.issue_token()
    encoded = quote(token, safe="")
    caller, spy = make(strip_credentials=True)
    if cached:
        assert caller.get("/me", token).status == 200
    for headers, query in (
        (bearer(token), "a=1&b=%7C+x"),
        ({"x-amz-access-token": token, "X-Other": "kept"}, "a=1&b=%7C+x"),
        ({}, f"a=1&access_token={encoded}&b=%7C+x"),
        ({}, f"a=1&access%5Ftoken={encoded}&b=%7C+x"),
        (bearer(token), f"access_token={encoded}&a=1&b=%7C+x"),
    ):
        reply = caller.get("/me", headers=headers, query=query)
        assert reply.status == 200
        body = reply.json()
        assert body["identity"] is not None
        assert not _header_names(caller, body) & {"authorization", "x-amz-access-token"}
        assert body["query"] == "a=1&b=%7C+x"
    assert spy.seen
    secrets = Secrets(token)
    for seen in spy.seen:
        secrets.assert_absent(repr(seen), "what reached the app")
        for key in ("REQUEST_URI", "RAW_URI", "raw_path"):
            value = seen.get(key, "")
            value = value.decode() if isinstance(value, bytes) else value
            if "?" in value:
                assert value.endswith("?a=1&b=%7C+x"), value


# -- hostile input -----------------------------------------------------------------


def test_never_500_for_hostile_input(lwa_emulator: LWAEmulator, make: Make) -> None:
    caller, _ = make()
    hostile: list[tuple[str, str, dict[str, Any]]] = [
        ("/me", "access_token=%", {}),
        ("/me", "access_token=%ZZ%", {}),
        ("/me", "access_token=%00", {}),
        ("/me", "%=%&&&=", {}),
        ("/me", "", {"Authorization": b"Bearer \xff\xfe\xfd"}),
        ("/me", "", {"Authorization": "Bearer\tx"}),
        ("/me", "", {"Authorization": ","}),
        ("/me", "", {"x-amz-access-token": "  "}),
        ("/me", "", {"x-amz-access-token": b"\xe9" * 10}),
        ("/users/%2F/orders", "", {}),
        ("/public/../zip", "", {}),
        ("/%C3%A9t%C3%A9", "", {}),
        ("/me", "access_token=" + "%41" * 3000, {}),
    ]
    for path, query, headers in hostile:
        reply = caller.get(path, headers=headers, query=query)
        assert reply.status in (400, 401), (path, query, headers, reply.status)
        assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path", ["/public/%2e%2e/zip", "/public/%2E%2E/zip/", "/public/./%2e%2e/zip", "/public/../zip"]
)
def test_encoded_dot_segments_cannot_make_a_route_public(
    path: str, lwa_emulator: LWAEmulator, make: Make
) -> None:
    caller, _ = make()
    profile_only = lwa_emulator.issue_token(scopes=["profile"])
    assert caller.get(path).status == 401
    assert caller.get(path, profile_only).status == 403


# -- invalidate ----------------------------------------------------------------------


def test_invalidate_forgets_a_token(lwa_emulator: LWAEmulator, make: Make) -> None:
    caller, _ = make()
    token = lwa_emulator.issue_token()
    assert caller.get("/me", token).status == 200
    lwa_emulator.revoke(token)
    assert caller.get("/me", token).status == 200  # cached
    caller.invalidate(token)
    assert caller.get("/me", token).status == 401
    assert lwa_emulator.calls["tokeninfo"] == 2
