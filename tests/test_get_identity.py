"""``get_identity`` reads the identity back from every kind of request object."""

from __future__ import annotations

from typing import Any

import django
import flask
import pytest
import werkzeug
from starlette.requests import Request
from starlette.websockets import WebSocket
from werkzeug.test import Client, EnvironBuilder

from lwa_middleware import Identity, LWAWSGIMiddleware, get_identity
from lwa_middleware.testing import LWAEmulator

IDENTITY = Identity(
    user_id="amzn1.account.AFUSER000000000000000000001",
    name="Ada",
    scopes=frozenset({"profile"}),
    client_id="amzn1.application-oa2-client.ours",
    expires_at=1.0,
)


def asgi_scope(identity: Any = IDENTITY, kind: str = "http") -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": kind,
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("testserver", 80),
    }
    if identity is not ...:
        scope["lwa.identity"] = identity
    return scope


def environ(identity: Any = IDENTITY) -> dict[str, Any]:
    env = EnvironBuilder(path="/").get_environ()
    if identity is not ...:
        env["lwa.identity"] = identity
    return env


def test_asgi_scope_dict() -> None:
    assert get_identity(asgi_scope()) is IDENTITY
    assert get_identity(asgi_scope(None)) is None
    assert get_identity(asgi_scope(...)) is None


def test_wsgi_environ() -> None:
    assert get_identity(environ()) is IDENTITY
    assert get_identity(environ(None)) is None
    assert get_identity(environ(...)) is None


def test_starlette_request_and_websocket() -> None:
    assert get_identity(Request(asgi_scope())) is IDENTITY
    assert get_identity(Request(asgi_scope(None))) is None

    async def receive() -> Any:  # pragma: no cover
        raise AssertionError

    async def send(message: Any) -> None:  # pragma: no cover
        raise AssertionError

    ws = WebSocket(asgi_scope(kind="websocket"), receive, send)
    assert get_identity(ws) is IDENTITY


def test_werkzeug_request() -> None:
    assert get_identity(werkzeug.Request(environ())) is IDENTITY
    assert get_identity(werkzeug.Request(environ(None))) is None


def test_flask_request() -> None:
    app = flask.Flask(__name__)
    with app.test_request_context("/", environ_overrides={"lwa.identity": IDENTITY}):
        assert get_identity(flask.request) is IDENTITY
    with app.test_request_context("/"):
        assert get_identity(flask.request) is None


def test_django_http_request() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["*"], USE_TZ=True, SECRET_KEY="test-only-not-secret"
        )
    from django.http import HttpRequest

    request = HttpRequest()
    request.META["lwa.identity"] = IDENTITY
    assert get_identity(request) is IDENTITY
    assert get_identity(HttpRequest()) is None


def _django_me(request: Any) -> Any:
    from django.http import JsonResponse

    identity = get_identity(request)
    return JsonResponse({"user_id": identity.user_id if identity else None})


def _django_urls() -> list[Any]:
    from django.urls import path

    return [path("me", _django_me), path("open", _django_me)]


urlpatterns: list[Any] = []


def test_django_app_behind_the_wsgi_middleware(lwa_emulator: LWAEmulator) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["*"], USE_TZ=True, SECRET_KEY="test-only-not-secret"
        )
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    urlpatterns[:] = _django_urls()
    token = lwa_emulator.issue_token()
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], MIDDLEWARE=[]):
        django.setup()
        mw = LWAWSGIMiddleware(
            WSGIHandler(),
            client_id=lwa_emulator.client_id,
            api_base_url=lwa_emulator.base_url,
            routes={"/open": "optional"},
        )
        client = Client(mw)
        me = client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.get_json() == {"user_id": lwa_emulator.customer_for(token).user_id}
        assert client.get("/me").status_code == 401
        assert client.get("/open").get_json() == {"user_id": None}
        mw.close()


def test_other_values_under_the_key_are_not_identities() -> None:
    assert get_identity({"lwa.identity": {"user_id": "forged"}}) is None
    assert get_identity({"lwa.identity": "amzn1.account.FORGED"}) is None


@pytest.mark.parametrize("junk", [None, 42, "scope", b"environ", object(), [("lwa.identity", 1)]])
def test_junk_is_a_type_error(junk: Any) -> None:
    with pytest.raises(TypeError):
        get_identity(junk)


def test_object_whose_scope_is_not_a_mapping_is_a_type_error() -> None:
    class Weird:
        scope = "not a mapping"

    with pytest.raises(TypeError):
        get_identity(Weird())


def test_get_identity_looks_in_meta_when_scope_lacks_it() -> None:
    identity = Identity(user_id="u", client_id="c", expires_at=0.0)

    class AsgiDjangoRequest:
        scope: dict[str, Any] = {"type": "http"}
        META = {"lwa.identity": identity}

    assert get_identity(AsgiDjangoRequest()) is identity
