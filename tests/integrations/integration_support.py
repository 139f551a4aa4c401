"""Helpers for the framework integration tests: examples, real servers, assertions.

The examples live in ``examples/`` (not a package); :func:`load_example`
imports one by path under a unique module name. :func:`uvicorn_server` and
:func:`wsgi_server` serve an app on a loopback port in a thread, as users
run it (both from :mod:`support.servers`). Every HTTP client is built with
``trust_env=False`` so no proxy setting can send a request off loopback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from support.callers import bearer, http_client
from support.servers import serve_uvicorn, serve_werkzeug

from lwa_middleware import get_identity
from lwa_middleware.testing import LWAEmulator

__all__ = [
    "DJANGO_PROJECT",
    "EXAMPLES",
    "IDENTITY_ROUTES",
    "assert_insufficient",
    "assert_missing_token",
    "bearer",
    "body_of",
    "exercise_identity_routes",
    "free_port",
    "fresh_warnings",
    "http_client",
    "identity_body",
    "json_of",
    "load_example",
    "same_error",
    "uvicorn_server",
    "wsgi_server",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DJANGO_PROJECT = EXAMPLES / "django_project"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (once) as ``lwa_example_<name>``."""
    module_name = f"lwa_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A port free a moment ago: only for the example *scripts*, which take
    a port number (``PORT``) and bind it themselves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def uvicorn_server(app: Any, lifespan: str = "off") -> contextlib.AbstractContextManager[str]:
    """Serve an ASGI app with uvicorn on a pre-bound loopback socket; yield its base URL."""
    return serve_uvicorn(app, lifespan=lifespan)


def wsgi_server(app: Any) -> contextlib.AbstractContextManager[str]:
    """Serve a WSGI app with Werkzeug's threaded server; yield its base URL."""
    return serve_werkzeug(app)


def body_of(response: Any) -> bytes:
    """The body of an httpx, Werkzeug or Django test response."""
    content = getattr(response, "content", None)
    if isinstance(content, bytes):
        return content
    return bytes(response.get_data())


def json_of(response: Any) -> Any:
    return json.loads(body_of(response))


@contextlib.contextmanager
def fresh_warnings() -> Iterator[None]:
    """Forget which unprotected paths were warned about, so a test sees its warning."""
    from support.private import unprotected_warned as warned

    saved = set(warned)
    warned.clear()
    try:
        yield
    finally:
        warned.clear()
        warned.update(saved)


def same_error(response: Any, reference: Any) -> None:
    """Assert two error answers are identical: status, challenge, type, body."""
    assert response.status_code == reference.status_code
    for name in ("www-authenticate", "content-type", "cache-control"):
        assert response.headers.get(name) == reference.headers.get(name), name
    assert body_of(response) == body_of(reference)


def assert_missing_token(response: Any, realm: str = "lwa") -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == f'Bearer realm="{realm}"'
    assert json_of(response) == {
        "error": "missing_token",
        "error_description": "An LWA access token is required.",
    }


def assert_insufficient(response: Any, scopes: str, realm: str = "lwa") -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm}", error="insufficient_scope"')
    assert challenge.endswith(f', scope="{scopes}"')
    body = json_of(response)
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "insufficient_scope"


#: The routes of :func:`exercise_identity_routes`: a framework app serves
#: ``/health``, ``/``, ``/me`` and ``/shipping``, each answering :func:`identity_body`.
IDENTITY_ROUTES: dict[str, Any] = {
    "/health": "public",
    "/": "optional",
    "/shipping": ["postal_code"],
}


def identity_body(request: Any) -> dict[str, Any]:
    """What the views of :func:`exercise_identity_routes` answer, read with ``get_identity``."""
    identity = get_identity(request)
    return {
        "user_id": identity.user_id if identity else None,
        "postal_code": identity.postal_code if identity else None,
    }


def exercise_identity_routes(url: str, lwa: LWAEmulator) -> None:
    """Public, optional, required and scoped routes of a framework app at ``url``."""
    full = lwa.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    poor = lwa.issue_token(scopes=["profile"])
    user_id = lwa.customer_for(full).user_id
    with http_client(url) as client:
        assert client.get("/health", headers=bearer(full)).json()["user_id"] is None
        assert client.get("/").json() == {"user_id": None, "postal_code": None}
        assert client.get("/", headers=bearer(full)).json()["user_id"] == user_id
        assert client.get("/me", headers=bearer(full)).json()["user_id"] == user_id
        assert client.get("/shipping", headers=bearer(full)).json() == {
            "user_id": user_id,
            "postal_code": "10115",
        }
        assert_missing_token(client.get("/me"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert lwa.calls["tokeninfo"] == 2
