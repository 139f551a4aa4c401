"""The contract through the WSGI middleware, checked by ``wsgiref.validate`` on both sides."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

import flask
import pytest
from support.callers import bearer
from werkzeug.test import Client, TestResponse

from lwa_middleware import LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import Fault, LWAEmulator


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




def test_joined_token_headers_under_wsgi_are_two_tokens(lwa_emulator: LWAEmulator) -> None:
    app = LWAWSGIMiddleware(
        lambda e, s: (s("200 OK", []), [b"ok"])[1],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    a, b = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    response = Client(app).get("/", environ_overrides={"HTTP_X_AMZ_ACCESS_TOKEN": f"{a},{b}"})
    assert response.status_code == 400
    assert json.loads(response.get_data())["error"] == "invalid_request"
    same = Client(app).get("/", environ_overrides={"HTTP_X_AMZ_ACCESS_TOKEN": f"{a}, {a}"})
    assert same.status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_wsgi_middleware_works_again_after_close(lwa_emulator: LWAEmulator) -> None:
    app = LWAWSGIMiddleware(
        lambda e, s: (s("200 OK", []), [b"ok"])[1],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    client = Client(app)
    assert client.get("/", headers=bearer(lwa_emulator.issue_token())).status_code == 200
    app.close()
    assert client.get("/", headers=bearer(lwa_emulator.issue_token())).status_code == 200
