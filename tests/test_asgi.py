"""The contract through the ASGI middleware: Starlette's TestClient and httpx's ASGITransport."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient, WebSocketDenialResponse

from lwa_middleware import LWAMiddleware, UnsupportedScope
from lwa_middleware.testing import Fault, LWAEmulator

OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = rf"({_TOKEN})=({_TOKEN}|{_QUOTED})"
_CHALLENGE = re.compile(rf"Bearer {_PARAM}(?:, {_PARAM})*")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


def challenge(value: str) -> dict[str, str]:
    assert _CHALLENGE.fullmatch(value), value
    return {
        name: re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        for name, raw in re.findall(_PARAM, value)
    }


# -- the error table -----------------------------------------------------------


@dataclass
class Case:
    """One row of the contract's error table, built against a live emulator."""

    path: str = "/me"
    headers: dict[str, Any] = field(default_factory=dict)
    query: str = ""
    status: int = 401
    error: str | None = "invalid_token"  # None: any name (missing token)
    scope: str | None = None
    lwa_calls: int | None = None  # expected tokeninfo calls, when it matters

    @property
    def url(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


def _cases(lwa: LWAEmulator, name: str) -> Case:
    if name == "missing":
        return Case(error=None, lwa_calls=0)
    if name == "missing_on_scoped_route":
        return Case(path="/zip", error=None, lwa_calls=0)
    if name == "two_tokens_headers":
        return Case(
            headers={**bearer(lwa.issue_token()), "x-amz-access-token": lwa.issue_token()},
            status=400,
            error="invalid_request",
            lwa_calls=0,
        )
    if name == "two_tokens_bearer_query":
        return Case(
            headers=bearer(lwa.issue_token()),
            query="access_token=" + quote(lwa.issue_token(), safe=""),
            status=400,
            error="invalid_request",
            lwa_calls=0,
        )
    if name == "two_tokens_query":
        a, b = quote(lwa.issue_token(), safe=""), quote(lwa.issue_token(), safe="")
        return Case(
            query=f"access_token={a}&access_token={b}",
            status=400,
            error="invalid_request",
            lwa_calls=0,
        )
    if name == "bearer_without_token":
        return Case(headers={"Authorization": "Bearer"}, status=400, error="invalid_request")
    if name == "bearer_two_words":
        return Case(
            headers={"Authorization": "Bearer abc def"}, status=400, error="invalid_request"
        )
    if name == "unknown":
        return Case(headers=bearer("Atza|" + "u" * 400))
    if name == "garbage":
        return Case(headers=bearer("garbage"), lwa_calls=1)
    if name == "expired":
        return Case(headers=bearer(lwa.issue_token(expires_in=-5)))
    if name == "revoked":
        token = lwa.issue_token()
        lwa.revoke(token)
        return Case(headers={"x-amz-access-token": token})
    if name == "other_client":
        return Case(query="access_token=" + quote(lwa.issue_token(aud=OTHER_CLIENT), safe=""))
    if name == "oversized":
        return Case(headers=bearer("Atza|" + "x" * 2100), lwa_calls=0)
    if name == "not_visible_ascii":
        return Case(headers={"x-amz-access-token": b"Atza|caf\xc3\xa9"}, lwa_calls=0)
    if name == "insufficient_scope":
        return Case(
            path="/zip",
            headers=bearer(lwa.issue_token(scopes=["profile"])),
            status=403,
            error="insufficient_scope",
            scope="postal_code",
        )
    if name == "insufficient_scope_wildcard":
        return Case(
            path="/users/42/orders",
            headers=bearer(lwa.issue_token(scopes=["profile:user_id"])),
            status=403,
            error="insufficient_scope",
            scope="profile",
        )
    if name == "lwa_down":
        token = lwa.issue_token()
        lwa.inject(Fault.DOWN)
        return Case(headers=bearer(token), status=503, error="temporarily_unavailable")
    if name == "lwa_500":
        token = lwa.issue_token()
        lwa.inject(Fault.SERVER_ERROR)
        return Case(headers=bearer(token), status=503, error="temporarily_unavailable")
    raise AssertionError(name)


CASES = [
    "missing",
    "missing_on_scoped_route",
    "two_tokens_headers",
    "two_tokens_bearer_query",
    "two_tokens_query",
    "bearer_without_token",
    "bearer_two_words",
    "unknown",
    "garbage",
    "expired",
    "revoked",
    "other_client",
    "oversized",
    "not_visible_ascii",
    "insufficient_scope",
    "insufficient_scope_wildcard",
    "lwa_down",
    "lwa_500",
]


def check_error(case: Case, response: httpx.Response, lwa: LWAEmulator) -> None:
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    if case.error is not None:
        assert body["error"] == case.error
    else:
        assert isinstance(body["error"], str)
        assert body["error"]
    if case.status == 503:
        assert "www-authenticate" not in response.headers
        assert response.headers["retry-after"].isdigit()
        assert int(response.headers["retry-after"]) >= 1
    else:
        assert "retry-after" not in response.headers
        value = response.headers["www-authenticate"]
        params = challenge(value)
        assert params["realm"] == "lwa"
        if case.error is None:
            assert value == 'Bearer realm="lwa"'
            assert "error" not in params
        else:
            assert params["error"] == case.error
        if case.scope is not None:
            assert params["scope"] == case.scope
    if case.lwa_calls is not None:
        assert lwa.calls["tokeninfo"] == case.lwa_calls
        if case.lwa_calls == 0:
            assert lwa.calls["profile"] == 0


@pytest.mark.parametrize("name", CASES)
def test_error_table_testclient(
    name: str, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    case = _cases(lwa_emulator, name)
    reached: list[str] = []
    mw = make_asgi()
    inner = mw.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await inner(scope, receive, send)

    mw.app = spy
    with TestClient(mw) as client:
        response = client.get(case.url, headers=case.headers)
    check_error(case, response, lwa_emulator)
    assert reached == [], "a refused request reached the app"


@pytest.mark.anyio
@pytest.mark.parametrize("name", CASES)
async def test_error_table_httpx_asgi_transport(
    name: str, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    case = _cases(lwa_emulator, name)
    app = make_asgi()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(case.url, headers=case.headers)
    await app.aclose()
    check_error(case, response, lwa_emulator)


# -- success -------------------------------------------------------------------


def test_valid_token_gives_an_identity_and_is_cached(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"], name="Ada Lovelace", email="ada@example.com"
    )
    customer = lwa_emulator.customer_for(token)
    app = make_asgi()
    with TestClient(app) as client:
        first = client.get("/me", headers=bearer(token))
        assert first.status_code == 200
        for _ in range(3):
            again = client.get("/me", headers=bearer(token))
            # The cached answer attaches exactly what the first one did.
            assert again.json() == first.json()
    body = first.json()
    identity = body["identity"]
    assert identity["user_id"] == customer.user_id
    assert identity["name"] == "Ada Lovelace"
    assert identity["email"] == "ada@example.com"
    assert identity["postal_code"] == customer.postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert identity["client_id"] == lwa_emulator.client_id
    assert abs(identity["expires_at"] - (time.time() + 3600)) < 60
    assert body["user"] == {"is_authenticated": True, "display_name": "Ada Lovelace"}
    assert body["auth_scopes"] == ["postal_code", "profile", "profile:user_id"]
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert app.stats.hits >= 3


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
        "basic+amz",
    ],
)
def test_every_token_source(
    send: Callable[[str], tuple[dict[str, str], str]],
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
) -> None:
    token = lwa_emulator.issue_token()
    headers, query = send(token)
    with TestClient(make_asgi()) as client:
        for _ in range(2):  # cold, then cached
            response = client.get("/me" + ("?" + query if query else ""), headers=headers)
            assert response.status_code == 200, response.text
            assert (
                response.json()["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id
            )
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.token_in_url == 0


def test_basic_alone_is_no_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with TestClient(make_asgi()) as client:
        response = client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="lwa"'
        optional = client.get("/optional", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert optional.status_code == 200
        assert optional.json()["identity"] is None
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_a_cached_token_with_a_second_different_token_is_still_400(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    with TestClient(make_asgi()) as client:
        assert client.get("/me", headers=bearer(token)).status_code == 200
        assert client.get("/me", headers=bearer(other)).status_code == 200
        combos = [
            ({**bearer(token), "x-amz-access-token": other}, ""),
            (bearer(token), "access_token=" + quote(other, safe="")),
            (bearer(token), "access%5Ftoken=" + quote(other, safe="")),
            ({"x-amz-access-token": token}, "access_token=" + quote(other, safe="")),
            ([("authorization", f"Bearer {token}"), ("authorization", f"Bearer {other}")], ""),
        ]
        for headers, query in combos:
            response = client.get("/me" + ("?" + query if query else ""), headers=headers)
            assert response.status_code == 400, (headers, query)
            assert response.json()["error"] == "invalid_request"


def test_scope_implication_and_tokeninfo_only_routes(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    profile = lwa_emulator.issue_token(scopes=["profile"])
    uid = lwa_emulator.issue_token(scopes=["profile:user_id"])
    with TestClient(make_asgi()) as client:
        # "profile" satisfies "profile:user_id".
        assert client.get("/uid", headers=bearer(profile)).status_code == 200
        r = client.get("/uid", headers=bearer(uid))
        assert r.status_code == 200
        assert r.json()["identity"]["scopes"] == ["profile:user_id"]
        assert client.get("/users/7/orders", headers=bearer(profile)).status_code == 200
        denied = client.get("/users/7/orders", headers=bearer(uid))
        assert denied.status_code == 403
        assert challenge(denied.headers["www-authenticate"])["scope"] == "profile"


def test_postal_code_route(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token(scopes=["postal_code"], postal_code="98109")
    with TestClient(make_asgi()) as client:
        r = client.get("/zip", headers=bearer(token))
        assert r.status_code == 200
        assert r.json()["identity"]["postal_code"] == "98109"
        assert r.json()["identity"]["scopes"] == ["postal_code", "profile:user_id"]


def test_several_client_ids(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    app = make_asgi(client_id=[OTHER_CLIENT, lwa_emulator.client_id])
    ours = lwa_emulator.issue_token()
    theirs = lwa_emulator.issue_token(aud=OTHER_CLIENT)
    stranger = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.stranger")
    with TestClient(app) as client:
        assert client.get("/me", headers=bearer(ours)).json()["identity"]["client_id"] == (
            lwa_emulator.client_id
        )
        assert client.get("/me", headers=bearer(theirs)).json()["identity"]["client_id"] == (
            OTHER_CLIENT
        )
        assert client.get("/me", headers=bearer(stranger)).status_code == 401


# -- public and optional -------------------------------------------------------


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/a/b/c", "/public/ws"])
def test_public_routes_never_read_credentials_nor_call_lwa(
    path: str, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    junk = [
        {"Authorization": "Bearer a b c"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer one", "x-amz-access-token": "two"},
        {"x-amz-access-token": b"\xff\xfe"},
        {"Authorization": f"Bearer {lwa_emulator.issue_token()}"},
    ]
    with TestClient(make_asgi()) as client:
        for headers in junk:
            r = client.get(path + "?access_token=three&access_token=four", headers=headers)
            assert r.status_code == 200
            body = r.json()
            assert body["identity"] is None
            assert "user" not in body  # the middleware did not touch the scope
            assert "authorization" in body["headers"] or "x-amz-access-token" in body["headers"]
            assert "access_token=three" in body["query"]
        lwa_emulator.inject(Fault.DOWN)
        assert client.get(path, headers=bearer("whatever")).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert lwa_emulator.calls["profile"] == 0


def test_optional_route(lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]) -> None:
    token = lwa_emulator.issue_token(name="Ada")
    with TestClient(make_asgi()) as client:
        anonymous = client.get("/optional")
        assert anonymous.status_code == 200
        assert anonymous.json()["identity"] is None
        assert anonymous.json()["user"] == {"is_authenticated": False, "display_name": ""}
        assert anonymous.json()["auth_scopes"] == []
        known = client.get("/optional", headers=bearer(token))
        assert known.status_code == 200
        assert known.json()["identity"]["name"] == "Ada"
        assert known.json()["user"]["is_authenticated"] is True
        bad = client.get("/optional", headers=bearer("Atza|" + "z" * 400))
        assert bad.status_code == 401
        assert bad.json()["error"] == "invalid_token"
        malformed = client.get("/optional", headers={"Authorization": "Bearer"})
        assert malformed.status_code == 400
        lwa_emulator.inject(Fault.SERVER_ERROR)
        fresh = lwa_emulator.issue_token()
        assert client.get("/optional", headers=bearer(fresh)).status_code == 503


# -- Starlette integration -----------------------------------------------------


def test_starlette_requires(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with_zip = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    without = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_asgi()) as client:
        ok = client.get("/requires-zip", headers=bearer(with_zip))
        assert ok.status_code == 200
        assert ok.json()["identity"]["postal_code"] is not None
        assert client.get("/requires-zip", headers=bearer(without)).status_code == 403
        assert client.get("/requires-zip").status_code == 401


def test_lifespan_passes_through(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    token = lwa_emulator.issue_token()
    with TestClient(make_asgi(app)) as client:
        assert events == ["startup"]
        assert client.get("/", headers=bearer(token)).json() == {"greeting": "hello"}
    assert events == ["startup", "shutdown"]
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_lifespan_passes_through_untouched(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    mw = make_asgi(app)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(mw(scope, None, None))  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan", "asgi": {"version": "3.0"}}]
    assert lwa_emulator.calls["tokeninfo"] == 0


@pytest.mark.parametrize("kind", ["custom.thing", "webtransport", "HTTP", "", None])
def test_unknown_scope_types_fail_closed(
    kind: Any, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    # A scope type the middleware has no rule for could carry a request to a
    # protected app: it is refused, never passed through.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    mw = make_asgi(app)
    with pytest.raises(UnsupportedScope, match="refuses ASGI scope type"):
        asyncio.run(mw({"type": kind, "path": "/me"}, None, None))  # type: ignore[arg-type]
    assert seen == []


# -- websockets ----------------------------------------------------------------


def test_websocket_with_a_valid_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    user_id = lwa_emulator.customer_for(token).user_id
    with TestClient(make_asgi()) as client:
        with client.websocket_connect("/ws", headers=bearer(token)) as ws:
            assert ws.receive_json() == {"user_id": user_id}
        # Browsers cannot set headers on a websocket: the query works too.
        with client.websocket_connect("/ws?access_token=" + quote(token, safe="")) as ws:
            assert ws.receive_json() == {"user_id": user_id}
    assert lwa_emulator.calls["tokeninfo"] == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer Atza|" + "n" * 400}, 401),
        ({"Authorization": "Bearer"}, 400),
        ({"Authorization": "Bearer a", "x-amz-access-token": "b"}, 400),
        ({"x-amz-access-token": "x" * 3000}, 401),
    ],
    ids=["missing", "invalid", "malformed", "two-tokens", "oversized"],
)
def test_websocket_without_a_valid_token_is_never_accepted(
    headers: dict[str, str],
    status: int,
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
) -> None:
    # TestClient offers the websocket.http.response extension: the refusal
    # is the HTTP answer itself.
    with TestClient(make_asgi()) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=headers) as ws,
        ):
            ws.receive_json()  # pragma: no cover - must not get here
        assert excinfo.value.status_code == status
        assert excinfo.value.headers["www-authenticate"].startswith('Bearer realm="lwa"')


def test_websocket_with_revoked_token_and_wrong_scope(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.revoke(token)
    app = make_asgi(routes={"/ws": ["postal_code"]})
    with TestClient(app) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(token)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 401
        assert excinfo.value.json()["error"] == "invalid_token"
        no_zip = lwa_emulator.issue_token(scopes=["profile"])
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(no_zip)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 403
        assert 'scope="postal_code"' in excinfo.value.headers["www-authenticate"]


def test_websocket_when_lwa_is_down_is_not_accepted(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.DOWN)
    with TestClient(make_asgi()) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as excinfo,
            client.websocket_connect("/ws", headers=bearer(token)),
        ):
            pass  # pragma: no cover
        assert excinfo.value.status_code == 503
        assert "retry-after" in excinfo.value.headers


def test_optional_websocket_without_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with (
        TestClient(make_asgi(routes={"/ws": "optional"})) as client,
        client.websocket_connect("/ws") as ws,
    ):
        assert ws.receive_json() == {"user_id": None}
    assert lwa_emulator.calls["tokeninfo"] == 0


def test_public_websocket_is_open(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    with (
        TestClient(make_asgi()) as client,
        client.websocket_connect("/public/ws", headers={"Authorization": "Bearer a b"}) as ws,
    ):
        assert ws.receive_json() == {"user_id": None}
    assert lwa_emulator.calls["tokeninfo"] == 0


# -- plumbing and options ------------------------------------------------------


def test_api_base_url_plumbing(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    app = make_asgi(api_base_url=lwa_emulator.base_url + "/")
    assert app.settings.tokeninfo_url == lwa_emulator.base_url + "/auth/o2/tokeninfo"
    with TestClient(app) as client:
        assert client.get("/me", headers=bearer(token)).status_code == 200
    targets = {(r.endpoint, r.method, r.target) for r in lwa_emulator.requests}
    assert ("tokeninfo", "GET", "/auth/o2/tokeninfo") in targets
    assert ("profile", "GET", "/user/profile") in targets
    for request in lwa_emulator.requests:
        assert "access_token" not in request.target
        if request.endpoint == "tokeninfo":
            assert "x-amz-access-token" in request.header_names
        if request.endpoint == "profile":
            assert "authorization" in request.header_names
    assert lwa_emulator.token_in_url == 0


def test_region_plumbing(make_asgi: Callable[..., LWAMiddleware]) -> None:
    for region, host in (
        ("na", "api.amazon.com"),
        ("eu", "api.amazon.co.uk"),
        ("fe", "api.amazon.co.jp"),
    ):
        app = make_asgi(api_base_url=None, region=region)
        assert app.settings.tokeninfo_url == f"https://{host}/auth/o2/tokeninfo"
        assert app.settings.profile_url == f"https://{host}/user/profile"


def test_an_lwa_answering_404_fails_closed(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    # A 404 (a wrong host, a proxy in the way) is not LWA saying "no".
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = lwa_emulator.issue_token()
        app = make_asgi(api_base_url=f"http://127.0.0.1:{server.server_port}")
        with TestClient(app) as client:
            response = client.get("/me", headers=bearer(token))
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 503
    assert "retry-after" in response.headers


def _token_free(obj: Any, token: str) -> bool:
    text = repr(obj)
    return all(v not in text for v in (token, quote(token, safe=""), token[-40:]))


@pytest.mark.parametrize("cached", [False, True])
def test_strip_credentials(
    cached: bool, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    scopes: list[dict[str, Any]] = []
    app = make_asgi(strip_credentials=True)
    inner = app.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(dict(scope))
        await inner(scope, receive, send)

    app.app = spy
    encoded = quote(token, safe="")
    with TestClient(app) as client:
        if cached:
            assert client.get("/me", headers=bearer(token)).status_code == 200
        for headers, query in (
            (bearer(token), "a=1&b=%7C+x"),
            ({"x-amz-access-token": token, "X-Other": "kept"}, "a=1&b=%7C+x"),
            ({}, f"a=1&access_token={encoded}&b=%7C+x"),
            ({}, f"a=1&access%5Ftoken={encoded}&b=%7C+x"),
            (bearer(token), f"access_token={encoded}&a=1&b=%7C+x"),
        ):
            response = client.get("/me?" + query, headers=headers)
            assert response.status_code == 200
            body = response.json()
            assert body["identity"] is not None
            assert "authorization" not in body["headers"]
            assert "x-amz-access-token" not in body["headers"]
            assert body["query"] == "a=1&b=%7C+x"
    assert scopes
    for scope in scopes:
        assert _token_free(scope, token)


@pytest.mark.anyio
async def test_strip_credentials_raw_path_via_httpx(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    scopes: list[dict[str, Any]] = []
    app = make_asgi(strip_credentials=True)
    inner = app.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(dict(scope))
        await inner(scope, receive, send)

    app.app = spy
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        url = "/me?x=1&access_token=" + quote(token, safe="")
        for _ in range(2):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.json()["query"] == "x=1"
    await app.aclose()
    assert len(scopes) == 2
    for scope in scopes:
        assert _token_free(scope, token)


@pytest.mark.anyio
async def test_success_and_caching_through_httpx(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    app = make_asgi()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in ("/me", "/zip", "/uid", "/users/1/orders", "/optional"):
            response = await client.get(path, headers=bearer(token))
            assert response.status_code == 200, path
            assert (
                response.json()["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id
            )
        anonymous = await client.get("/optional")
        assert anonymous.json()["identity"] is None
    await app.aclose()
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


def test_never_500_for_hostile_input(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    hostile: list[tuple[str, dict[str, Any]]] = [
        ("/me?access_token=%", {}),
        ("/me?access_token=%ZZ%", {}),
        ("/me?access_token=%00", {}),
        ("/me?%=%&&&=", {}),
        ("/me", {"Authorization": b"Bearer \xff\xfe\xfd"}),
        ("/me", {"Authorization": "Bearer\tx"}),
        ("/me", {"Authorization": ","}),
        ("/me", {"x-amz-access-token": "  "}),
        ("/users/%2F/orders", {}),
        ("/public/../zip", {}),
        ("/%C3%A9t%C3%A9", {}),
        ("/me?access_token=" + "%41" * 3000, {}),
    ]
    with TestClient(make_asgi()) as client:
        for url, headers in hostile:
            response = client.get(url, headers=headers)
            assert response.status_code in (400, 401), (url, headers, response.status_code)
            assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path", ["/public/%2e%2e/zip", "/public/%2E%2E/zip/", "/public/./%2e%2e/zip", "/public/../zip"]
)
def test_encoded_dot_segments_cannot_make_a_route_public(
    path: str, lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    profile_only = lwa_emulator.issue_token(scopes=["profile"])
    with TestClient(make_asgi()) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(profile_only)).status_code == 403


@pytest.mark.anyio
async def test_invalidate_forgets_a_token(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    app = make_asgi()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/me", headers=bearer(token))).status_code == 200
        lwa_emulator.revoke(token)
        assert (await client.get("/me", headers=bearer(token))).status_code == 200  # cached
        await app.invalidate(token)
        assert (await client.get("/me", headers=bearer(token))).status_code == 401
    await app.aclose()
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_token_sources_turn_a_source_off_even_for_cached_tokens(
    lwa_emulator: LWAEmulator, make_asgi: Callable[..., LWAMiddleware]
) -> None:
    token = lwa_emulator.issue_token()
    query = "/me?access_token=" + quote(token, safe="")
    with TestClient(make_asgi(token_sources=("header",))) as client:
        assert client.get("/me", headers=bearer(token)).status_code == 200
        refused = client.get(query)
        assert refused.status_code == 400
        assert "query string" in refused.json()["error_description"]
    with TestClient(make_asgi(token_sources=("query",))) as client:
        assert client.get(query).status_code == 200
        # Cached now: the hot path must still refuse a header token.
        refused = client.get("/me", headers=bearer(token))
        assert refused.status_code == 400
        assert "in headers" in refused.json()["error_description"]
