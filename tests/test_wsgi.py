"""The contract through the WSGI middleware, checked by ``wsgiref.validate`` on both sides."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote
from wsgiref.validate import validator

import flask
import pytest
from werkzeug.test import Client, TestResponse

from lwa_middleware import LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import Fault, LWAEmulator

OTHER_CLIENT = "amzn1.application-oa2-client.someone-else"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = rf"({_TOKEN})=({_TOKEN}|{_QUOTED})"
_CHALLENGE = re.compile(rf"Bearer {_PARAM}(?:, {_PARAM})*")


def challenge(value: str) -> dict[str, str]:
    assert _CHALLENGE.fullmatch(value), value
    return {
        name: re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        for name, raw in re.findall(_PARAM, value)
    }


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


class BufferedClient(Client):
    """A Werkzeug client that always drains and closes the app's iterable.

    ``wsgiref.validate`` insists that every iterable is closed, which the
    default (streaming) client leaves to the response's owner.
    """

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs["buffered"] = True
        return super().open(*args, **kwargs)


class Spy:
    """Wraps the WSGI app: records what reached it (a copy of the environ)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.environs: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environs.append(dict(environ))
        return self.app(environ, start_response)


@pytest.fixture
def validated(
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]]:
    """``validated(**options)``: a Werkzeug client on validator(mw(validator(spy(echo))))."""
    made: list[LWAWSGIMiddleware] = []

    def make(**options: Any) -> tuple[Client, Spy, LWAWSGIMiddleware]:
        mw = make_wsgi(**options)
        spy = Spy(mw.app)
        mw.app = validator(spy)
        made.append(mw)
        return BufferedClient(validator(mw)), spy, mw

    yield make
    for mw in made:
        mw.close()


# -- the error table -----------------------------------------------------------


def _case(lwa: LWAEmulator, name: str) -> dict[str, Any]:
    """``path``, ``headers``, ``query`` and the expected ``status``/``error``/``scope``."""
    token = lwa.issue_token
    cases: dict[str, Callable[[], dict[str, Any]]] = {
        "missing": lambda: {"status": 401, "error": None, "calls": 0},
        "two_tokens_headers": lambda: {
            "headers": {**bearer(token()), "x-amz-access-token": token()},
            "status": 400,
            "error": "invalid_request",
            "calls": 0,
        },
        "two_tokens_bearer_query": lambda: {
            "headers": bearer(token()),
            "query": "access_token=" + quote(token(), safe=""),
            "status": 400,
            "error": "invalid_request",
            "calls": 0,
        },
        "two_tokens_query": lambda: {
            "query": "&".join("access_token=" + quote(token(), safe="") for _ in range(2)),
            "status": 400,
            "error": "invalid_request",
            "calls": 0,
        },
        "bearer_without_token": lambda: {
            "headers": {"Authorization": "Bearer"},
            "status": 400,
            "error": "invalid_request",
        },
        "bearer_two_words": lambda: {
            "headers": {"Authorization": "Bearer a b"},
            "status": 400,
            "error": "invalid_request",
        },
        "unknown": lambda: {"headers": bearer("Atza|" + "u" * 400), "status": 401},
        "expired": lambda: {"headers": bearer(token(expires_in=-5)), "status": 401},
        "revoked": lambda: _revoked(lwa),
        "other_client": lambda: {
            "query": "access_token=" + quote(token(aud=OTHER_CLIENT), safe=""),
            "status": 401,
        },
        "oversized": lambda: {"headers": bearer("x" * 2049), "status": 401, "calls": 0},
        "not_visible_ascii": lambda: {
            "headers": {"x-amz-access-token": "Atza|caf\xe9"},
            "status": 401,
            "calls": 0,
        },
        "insufficient_scope": lambda: {
            "path": "/zip",
            "headers": bearer(token(scopes=["profile"])),
            "status": 403,
            "error": "insufficient_scope",
            "scope": "postal_code",
        },
        "insufficient_scope_wildcard": lambda: {
            "path": "/users/1/orders",
            "headers": bearer(token(scopes=["profile:user_id"])),
            "status": 403,
            "error": "insufficient_scope",
            "scope": "profile",
        },
        "lwa_down": lambda: _faulted(lwa, Fault.DOWN),
        "lwa_500": lambda: _faulted(lwa, Fault.SERVER_ERROR),
    }
    spec = {"path": "/me", "headers": {}, "query": "", "error": "invalid_token", "scope": None}
    spec.update(cases[name]())
    return spec


def _revoked(lwa: LWAEmulator) -> dict[str, Any]:
    token = lwa.issue_token()
    lwa.revoke(token)
    return {"headers": {"x-amz-access-token": token}, "status": 401}


def _faulted(lwa: LWAEmulator, fault: Fault) -> dict[str, Any]:
    token = lwa.issue_token()
    lwa.inject(fault)
    return {"headers": bearer(token), "status": 503, "error": "temporarily_unavailable"}


CASES = [
    "missing",
    "two_tokens_headers",
    "two_tokens_bearer_query",
    "two_tokens_query",
    "bearer_without_token",
    "bearer_two_words",
    "unknown",
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


@pytest.mark.parametrize("name", CASES)
def test_error_table(
    name: str,
    lwa_emulator: LWAEmulator,
    validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]],
) -> None:
    case = _case(lwa_emulator, name)
    client, spy, _ = validated()
    response = client.get(case["path"], query_string=case["query"], headers=case["headers"])
    assert response.status_code == case["status"], response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "error_description"}
    assert body["error_description"]
    if case["error"] is not None:
        assert body["error"] == case["error"]
    if case["status"] == 503:
        assert "WWW-Authenticate" not in response.headers
        assert int(response.headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in response.headers
        value = response.headers["WWW-Authenticate"]
        params = challenge(value)
        assert params["realm"] == "lwa"
        if case["error"] is None:
            assert value == 'Bearer realm="lwa"'
        else:
            assert params["error"] == case["error"]
        if case["scope"] is not None:
            assert params["scope"] == case["scope"]
    if "calls" in case:
        assert lwa_emulator.calls["tokeninfo"] == case["calls"]
    assert spy.environs == [], "a refused request reached the app"


# -- success -------------------------------------------------------------------


def test_valid_token_and_caching(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Grace")
    customer = lwa_emulator.customer_for(token)
    client, spy, mw = validated()
    for path in ("/me", "/zip", "/uid", "/users/9/orders", "/optional", "/me"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 200, path
        identity = response.get_json()["identity"]
        assert identity["user_id"] == customer.user_id
        assert identity["name"] == "Grace"
        assert identity["postal_code"] == customer.postal_code
        assert identity["scopes"] == ["postal_code", "profile"]
        assert identity["client_id"] == lwa_emulator.client_id
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1
    assert get_identity(spy.environs[-1]).user_id == customer.user_id  # type: ignore[union-attr]
    assert mw.stats.hits >= 5


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (lambda t: {"Authorization": f"bearer {t}"}, lambda t: ""),
        (lambda t: {"Authorization": f"BEARER {t}"}, lambda t: ""),
        (lambda t: {"x-amz-access-token": t}, lambda t: ""),
        (lambda t: {}, lambda t: "access_token=" + quote(t, safe="")),
        (lambda t: {}, lambda t: "q=1&access_token=" + t.replace("|", "%7C")),
        (lambda t: {}, lambda t: "access%5Ftoken=" + quote(t, safe="")),
        (lambda t: {"Authorization": f"Bearer {t}", "x-amz-access-token": t}, lambda t: ""),
        (lambda t: {"x-amz-access-token": t}, lambda t: "access_token=" + quote(t, safe="")),
        (lambda t: {"Authorization": "Basic dXNlcjpwYXNz", "x-amz-access-token": t}, lambda t: ""),
    ],
    ids=[
        "bearer-lower",
        "bearer-upper",
        "amz",
        "query",
        "query-7C",
        "query-pct-key",
        "bearer+amz-same",
        "amz+query-same",
        "basic+amz",
    ],
)
def test_every_token_source(
    headers: Callable[[str], dict[str, str]],
    query: Callable[[str], str],
    lwa_emulator: LWAEmulator,
    validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]],
) -> None:
    token = lwa_emulator.issue_token()
    client, _, _ = validated()
    for _ in range(2):
        response = client.get("/me", query_string=query(token), headers=headers(token))
        assert response.status_code == 200, response.text
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.token_in_url == 0


def test_a_cached_token_with_a_second_different_token_is_still_400(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    client, _, _ = validated()
    assert client.get("/me", headers=bearer(token)).status_code == 200
    assert client.get("/me", headers=bearer(other)).status_code == 200
    for headers, query in (
        ({**bearer(token), "x-amz-access-token": other}, ""),
        (bearer(token), "access_token=" + quote(other, safe="")),
        ({"x-amz-access-token": token}, "access%5Ftoken=" + quote(other, safe="")),
    ):
        response = client.get("/me", query_string=query, headers=headers)
        assert response.status_code == 400, (headers, query)
        assert response.get_json()["error"] == "invalid_request"


def test_basic_alone_is_no_token(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    client, _, _ = validated()
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    response = client.get("/me", headers=basic)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="lwa"'
    assert client.get("/optional", headers=basic).get_json()["identity"] is None
    assert lwa_emulator.calls["tokeninfo"] == 0


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/x/y"])
def test_public_routes_never_read_credentials_nor_call_lwa(
    path: str,
    lwa_emulator: LWAEmulator,
    validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]],
) -> None:
    client, spy, _ = validated()
    junk = [
        {"Authorization": "Bearer a b"},
        {"Authorization": "Bearer " + "y" * 5000},
        {"Authorization": "Bearer one", "x-amz-access-token": "two"},
        {"x-amz-access-token": "\xff\xfe"},
        bearer(lwa_emulator.issue_token()),
    ]
    for headers in junk:
        response = client.get(path, query_string="access_token=1&access_token=2", headers=headers)
        assert response.status_code == 200
        assert response.get_json()["identity"] is None
        assert "lwa.identity" not in spy.environs[-1]
    lwa_emulator.inject(Fault.DOWN)
    assert client.get(path, headers=bearer("anything")).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 0
    assert lwa_emulator.calls["profile"] == 0


def test_optional_route(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    client, spy, _ = validated()
    anonymous = client.get("/optional")
    assert anonymous.status_code == 200
    assert anonymous.get_json()["identity"] is None
    assert "lwa.identity" in spy.environs[-1]
    assert spy.environs[-1]["lwa.identity"] is None
    token = lwa_emulator.issue_token(name="Alan")
    assert client.get("/optional", headers=bearer(token)).get_json()["identity"]["name"] == "Alan"
    assert client.get("/optional", headers=bearer("Atza|" + "q" * 400)).status_code == 401
    assert client.get("/optional", headers={"Authorization": "Bearer"}).status_code == 400


def test_several_client_ids(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    client, _, _ = validated(client_id=(lwa_emulator.client_id, OTHER_CLIENT))
    theirs = lwa_emulator.issue_token(aud=OTHER_CLIENT)
    response = client.get("/me", headers=bearer(theirs))
    assert response.get_json()["identity"]["client_id"] == OTHER_CLIENT
    stranger = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.stranger")
    assert client.get("/me", headers=bearer(stranger)).status_code == 401


@pytest.mark.parametrize("cached", [False, True])
def test_strip_credentials(
    cached: bool,
    lwa_emulator: LWAEmulator,
    validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]],
) -> None:
    token = lwa_emulator.issue_token()
    encoded = quote(token, safe="")
    client, spy, _ = validated(strip_credentials=True)
    if cached:
        assert client.get("/me", headers=bearer(token)).status_code == 200
    for headers, query in (
        (bearer(token), "a=1&b=%7C+x"),
        ({"x-amz-access-token": token, "X-Other": "kept"}, "a=1&b=%7C+x"),
        ({}, f"a=1&access_token={encoded}&b=%7C+x"),
        ({}, f"a=1&access%5Ftoken={encoded}&b=%7C+x"),
        (bearer(token), f"access_token={encoded}&a=1&b=%7C+x"),
    ):
        response = client.get("/me", query_string=query, headers=headers)
        assert response.status_code == 200
        body = response.get_json()
        assert body["identity"] is not None
        assert "HTTP_AUTHORIZATION" not in body["headers"]
        assert "HTTP_X_AMZ_ACCESS_TOKEN" not in body["headers"]
        assert body["query"] == "a=1&b=%7C+x"
    assert spy.environs
    for environ in spy.environs:
        for key, value in environ.items():
            if key == "werkzeug.request":
                continue  # the test client's own record of what it sent
            text = repr(value)
            assert token not in text
            assert encoded not in text
            assert token[-40:] not in text
        for key in ("REQUEST_URI", "RAW_URI"):
            if "?" in environ.get(key, ""):
                assert environ[key].endswith("?a=1&b=%7C+x"), environ[key]


def test_never_500_for_hostile_input(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    client, _, _ = validated()
    hostile: list[tuple[str, str, dict[str, str]]] = [
        ("/me", "access_token=%", {}),
        ("/me", "access_token=%ZZ%", {}),
        ("/me", "access_token=%00", {}),
        ("/me", "%=%&&&=", {}),
        ("/me", "", {"Authorization": "Bearer \xff\xfe\xfd"}),
        ("/me", "", {"Authorization": "Bearer\tx"}),
        ("/me", "", {"x-amz-access-token": "\xe9" * 10}),
        ("/caf\xc3\xa9", "", {}),
        ("/me", "access_token=" + "%41" * 3000, {}),
    ]
    for path, query, headers in hostile:
        response = client.get(path, query_string=query, headers=headers)
        assert response.status_code in (400, 401), (path, query, headers, response.status_code)
        assert response.headers["Content-Type"] == "application/json"


def test_non_latin1_environ_from_a_broken_server_is_refused(
    lwa_emulator: LWAEmulator, make_wsgi: Callable[..., LWAWSGIMiddleware]
) -> None:
    mw = make_wsgi()
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/me",
        "QUERY_STRING": "",
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": "Bearer Atza|\u2603",
        "wsgi.url_scheme": "http",
    }
    body = b"".join(mw(environ, start_response))
    assert seen
    assert seen[0].split()[0] in ("400", "401")
    assert json.loads(body)["error"] in ("invalid_request", "invalid_token")
    mw.close()


@pytest.mark.parametrize("path", ["/public/%2e%2e/zip", "/public/%2E%2E/zip/", "/public/../zip"])
def test_encoded_dot_segments_cannot_make_a_route_public(
    path: str,
    lwa_emulator: LWAEmulator,
    validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]],
) -> None:
    client, _, _ = validated()
    profile_only = lwa_emulator.issue_token(scopes=["profile"])
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer(profile_only)).status_code == 403


# -- Flask ---------------------------------------------------------------------


def flask_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/me")
    def me() -> Any:
        identity = get_identity(flask.request)
        return {"user_id": identity.user_id if identity else None}

    @app.get("/public/info")
    def info() -> Any:
        return {"identity": get_identity(flask.request) is not None}

    @app.get("/optional")
    def optional() -> Any:
        identity = get_identity(flask.request)
        return {"user_id": identity.user_id if identity else None}

    return app


def test_flask_app(lwa_emulator: LWAEmulator) -> None:
    app = flask_app()
    mw = LWAWSGIMiddleware(
        app.wsgi_app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        routes={"/public/**": "public", "/optional": "optional"},
    )
    app.wsgi_app = mw  # type: ignore[method-assign]
    client = app.test_client()
    token = lwa_emulator.issue_token()
    user_id = lwa_emulator.customer_for(token).user_id
    assert client.get("/me", headers=bearer(token)).get_json() == {"user_id": user_id}
    assert client.get("/me", headers={"x-amz-access-token": token}).get_json() == {
        "user_id": user_id
    }
    missing: TestResponse = client.get("/me")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="lwa"'
    assert missing.get_json()["error"]
    assert client.get("/me", headers=bearer("nope")).status_code == 401
    assert client.get("/public/info", headers=bearer("a b")).get_json() == {"identity": False}
    assert client.get("/optional").get_json() == {"user_id": None}
    lwa_emulator.inject(Fault.UNAVAILABLE, retry_after=4)
    fresh = lwa_emulator.issue_token()
    down = client.get("/me", headers=bearer(fresh))
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "4"
    assert lwa_emulator.calls["tokeninfo"] == 3
    mw.close()


def test_token_sources_turn_a_source_off_even_for_cached_tokens(
    lwa_emulator: LWAEmulator, validated: Callable[..., tuple[Client, Spy, LWAWSGIMiddleware]]
) -> None:
    token = lwa_emulator.issue_token()
    query = "/me?access_token=" + quote(token, safe="")
    client, _, _ = validated(token_sources=("header",))
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    refused = client.get(query)
    assert refused.status_code == 400
    assert "query string" in refused.get_json()["error_description"]
    client, _, _ = validated(token_sources=("query",))
    assert client.get(query).status_code == 200
    refused = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 400
    assert "in headers" in refused.get_json()["error_description"]
