"""Drive both middlewares with raw, hand-built requests and check the invariants.

Shared by the Hypothesis tests (``test_hostile.py``) and the optional atheris
target (``atheris_target.py``). A *raw request* is what a server could hand a
middleware: any method, any path, any query bytes, any header bytes. The
harness turns it into an ASGI scope and a WSGI environ exactly as servers do
(ASGI: lower-case header names as bytes; WSGI: ``HTTP_*`` keys, latin-1
native strings, repeated headers joined with a comma), runs it through the
middleware in front of a recording app that answers 200, and checks:

* no exception escapes the middleware, and it never answers 500;
* the status is one of 200, 400, 401, 403 and 503;
* the app is reached exactly when the status is 200;
* every refusal is a JSON body with the contract's ``error`` codes;
* no identity is attached that LWA did not vouch for: the app sees ``None``,
  or the identity of a live token of our client that the request carried.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

ROUTES: dict[str, Any] = {
    "/public": "public",
    "/public/**": "public",
    "/optional": "optional",
    "/zip": ["postal_code"],
    "/users/*/orders": ["profile"],
    "/uid": ["profile:user_id"],
}
ALLOWED = frozenset({200, 400, 401, 403, 503})
ERRORS = {
    400: {"invalid_request"},
    401: {"invalid_token", "missing_token"},
    403: {"insufficient_scope"},
    503: {"temporarily_unavailable"},
}


@dataclass(frozen=True)
class RawRequest:
    method: str = "GET"
    path: str = "/me"
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: A WSGI header value that is not latin-1 (only a broken server sends one).
    wsgi_extra: tuple[tuple[str, str], ...] = ()


@dataclass
class Tokens:
    """Tokens of every kind, issued by a real emulator."""

    valid: dict[str, str] = field(default_factory=dict)  # token -> user_id
    other: list[str] = field(default_factory=list)  # live, but for another client
    dead: list[str] = field(default_factory=list)  # revoked or expired

    @classmethod
    def issue(cls, lwa: LWAEmulator) -> Tokens:
        tokens = cls()
        for scopes in (["profile"], ["profile", "postal_code"], ["profile:user_id"]):
            token = lwa.issue_token(scopes=scopes)
            tokens.valid[token] = lwa.customer_for(token).user_id
        tokens.other.append(lwa.issue_token(aud="amzn1.application-oa2-client.someone-else"))
        revoked = lwa.issue_token()
        lwa.revoke(revoked)
        tokens.dead.append(revoked)
        tokens.dead.append(lwa.issue_token(expires_in=0))
        return tokens

    @property
    def all(self) -> list[str]:
        return [*self.valid, *self.other, *self.dead]


class _Recorder:
    """The protected app: remembers what it was handed, answers 200."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope.get("lwa.identity"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.seen.append(environ.get("lwa.identity"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]


def _values_carried(request: RawRequest) -> set[bytes]:
    """Every string in the request a token could have been read from."""
    carried = {value for _, value in request.headers}
    for value in list(carried):
        carried.update(value.replace(b",", b" ").split())
    for part in request.query.replace(b";", b"&").split(b"&"):
        _, _, value = part.partition(b"=")
        carried.add(unquote_to_bytes(value.replace(b"+", b" ")))
    return carried


class Harness:
    """Both middlewares, pointed at one emulator, plus the invariants."""

    def __init__(self, lwa: LWAEmulator, tokens: Tokens, **options: Any) -> None:
        self.lwa = lwa
        self.tokens = tokens
        self.app = _Recorder()
        common = {
            "client_id": lwa.client_id,
            "api_base_url": lwa.base_url,
            "routes": ROUTES,
            "timeout": 3.0,
            **options,
        }
        self.asgi = LWAMiddleware(self.app.asgi, **common)
        self.wsgi = LWAWSGIMiddleware(self.app.wsgi, **common)
        self.runner = asyncio.Runner()

    def close(self) -> None:
        self.runner.run(self.asgi.aclose())
        self.runner.close()
        self.wsgi.close()

    # -- building what a server would hand over ------------------------------

    @staticmethod
    def scope(request: RawRequest) -> dict[str, Any]:
        raw_path = request.path.encode("utf-8", "surrogateescape")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": raw_path + (b"?" + request.query if request.query else b""),
            "query_string": request.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }

    @staticmethod
    def environ(request: RawRequest) -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path.encode("utf-8", "surrogateescape").decode("latin-1"),
            "QUERY_STRING": request.query.decode("latin-1"),
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                key = key[5:]
            text = value.decode("latin-1")
            environ[key] = environ[key] + "," + text if key in environ else text
        for key, text in request.wsgi_extra:
            environ[key] = text
        return environ

    # -- running and checking ------------------------------------------------

    def run_asgi(self, request: RawRequest) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        before = len(self.app.seen)
        self.runner.run(self.asgi(self.scope(request), receive, send))
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
        status = int(sent[0]["status"])
        headers = dict(sent[0].get("headers", []))
        self._check(
            request,
            status,
            headers.get(b"content-type", b"").decode(),
            sent[1]["body"],
            self.app.seen[before:],
        )
        return status

    def run_wsgi(self, request: RawRequest) -> int:
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            assert exc_info is None
            started.append((status, headers))
            return lambda data: None

        before = len(self.app.seen)
        result = self.wsgi(self.environ(request), start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        assert len(started) == 1, started
        status = int(started[0][0].split(" ", 1)[0])
        content_type = dict((k.lower(), v) for k, v in started[0][1]).get("content-type", "")
        self._check(request, status, content_type, body, self.app.seen[before:])
        return status

    def _check(
        self, request: RawRequest, status: int, content_type: str, body: bytes, seen: list[Any]
    ) -> None:
        assert status != 500
        assert status in ALLOWED, status
        if status == 200:
            assert len(seen) == 1, "answered 200 without the app"
            assert body == b"app"
            self._check_identity(request, seen[0])
        else:
            assert seen == [], f"the app ran, yet the answer was {status}"
            assert content_type.startswith("application/json")
            assert json.loads(body)["error"] in ERRORS[status]

    def _check_identity(self, request: RawRequest, identity: Any) -> None:
        if identity is None:
            return
        assert isinstance(identity, Identity)
        assert identity.client_id == self.lwa.client_id
        vouched = {
            token.encode() for token, uid in self.tokens.valid.items() if uid == identity.user_id
        }
        assert vouched, f"identity {identity.user_id} belongs to no live token of ours"
        assert vouched & _values_carried(request), "identity of a token the request did not carry"
