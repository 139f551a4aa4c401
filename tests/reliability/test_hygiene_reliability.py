"""Token hygiene under failure: a token is a password and must stay one.

Under every fault (and, in ``test_soak.py``, under load) no token may appear
in our logs, httpx's or httpcore's DEBUG logs, exception messages and reprs,
upstream URLs, or anything the caches hold. With ``strip_credentials=True``
the protected app never sees the token: not in headers, not in the query
string, not in ``raw_path`` (ASGI) nor ``REQUEST_URI``/``RAW_URI`` (WSGI),
while every other parameter survives byte for byte.
"""

from __future__ import annotations

import asyncio
import io
import json
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
from support.leaks import assert_no_token_in
from support.private import Policy, cache_entries, cache_lock, cache_rejections
from werkzeug.test import Client

from lwa_middleware import AuthError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import Fault, LWAEmulator

from .conftest import Caller, assert_clean_logs, load_soak

FAULTS = [
    Fault.DOWN,
    Fault.HANG,
    Fault.RESET,
    Fault.SERVER_ERROR,
    Fault.UNAVAILABLE,
    Fault.THROTTLED,
    Fault.BAD_JSON,
    Fault.HTML,
    Fault.WRONG_TYPES,
    Fault.OVERSIZED,
    Fault.USER_ID_MISMATCH,
    Fault.LEGACY_PROFILE,
    Fault.EXP_STRING,
]
LWA_TARGETS = {"/auth/o2/tokeninfo", "/user/profile"}


def _chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def _cache_dump(mw: LWAMiddleware | LWAWSGIMiddleware) -> tuple[list[bytes], str, bytes]:
    """Keys, the reprs of values, and a pickle of everything both caches hold."""
    cache = mw.resolver.cache
    # Private, but this is exactly what a heap dump of the process would show.
    with cache_lock(cache):
        entries = list(cache_entries(cache).items())
        rejected = cache_rejections(cache)
        rejections = list(rejected.items()) if rejected is not None else []
        revoked = list(getattr(cache, "_revoked", {}))
    keys = [k for k, _ in entries] + [k for k, _ in rejections] + revoked
    values = [v for _, v in entries] + [v for _, v in rejections]
    blob = pickle.dumps(([(k, v.identity) for k, v in entries], [k for k, _ in rejections]))
    return keys, repr(values) + " ".join(str(v) for v in values), blob


def test_tokens_never_leak_under_faults(
    make_caller: Callable[..., Caller],
    lwa_emulator: LWAEmulator,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    caller = make_caller(timeout=0.5, routes={"/zip": ["postal_code"]})
    sent: list[str] = []
    ways = [
        lambda t: {"headers": {"Authorization": f"Bearer {t}"}},
        lambda t: {"headers": {"x-amz-access-token": t}},
        lambda t: {"path": f"/me?access_token={t}"},
    ]
    for index, fault in enumerate(FAULTS):
        token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
        sent.append(token)
        lwa_emulator.inject(fault)
        how = ways[index % len(ways)](token)
        reply = caller.get(**how)
        assert reply.status in (200, 401, 503)
        if reply.status != 200:  # the middleware's own answer (the echo app echoes the query)
            assert_no_token_in(
                reply.body.decode() + repr(reply.headers), sent, f"the {fault} answer"
            )
        lwa_emulator.clear_faults()
        assert caller.get(**how).status == 200
    # Rejections too: revoked, another client's, garbage.
    revoked = lwa_emulator.issue_token()
    lwa_emulator.revoke(revoked)
    other = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.other")
    garbage = "Atza|" + "Q" * 400
    for token in (revoked, other, garbage):
        sent.append(token)
        assert caller.get(token=token).status == 401

    # The test's own client (httpx into ASGITransport) logs the URLs *it* sent,
    # ?access_token= included: that is the caller's log, not ours nor LWA-bound.
    ours = [r for r in debug_logs.records if "http://testserver" not in r.getMessage()]
    assert_clean_logs(ours, *sent)
    # The middleware's calls to LWA go through aiohttp, which logs nothing about
    # a request that works: what must be captured is the middleware's own
    # warnings about the faults (they name the failure, never the token).
    assert any(r.name.startswith("lwa_middleware") for r in ours), "nothing captured"
    assert lwa_emulator.token_in_url == 0
    assert {r.target for r in lwa_emulator.requests} <= LWA_TARGETS
    for record in lwa_emulator.requests:
        assert "x-amz-access-token" in record.header_names or "authorization" in record.header_names

    caller.revoke(sent[0])
    keys, values, blob = _cache_dump(caller.mw)
    assert keys, "nothing cached: the check below would prove nothing"
    for key in keys:
        assert isinstance(key, bytes)
        assert len(key) == 32
    assert_no_token_in(values, sent, "a cached value")
    for token in sent:
        assert token.encode() not in blob
        assert token.encode() not in keys
    assert_no_token_in(repr(caller.mw) + repr(caller.mw.resolver), sent, "a repr")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.DOWN,
        Fault.RESET,
        Fault.SERVER_ERROR,
        Fault.BAD_JSON,
        Fault.OVERSIZED,
        Fault.USER_ID_MISMATCH,
        None,
    ],
    ids=str,
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_exceptions_never_carry_the_token(
    flavour: str, fault: Fault | None, make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator
) -> None:
    """Every AuthError raised while resolving: message, repr, args, response, whole chain."""
    token = lwa_emulator.issue_token()
    if fault is None:
        lwa_emulator.revoke(token)
    else:
        lwa_emulator.inject(fault)
    policy = Policy.parse("required")
    if flavour == "sync":
        mw = make_wsgi(timeout=1.0)
        with pytest.raises(AuthError) as caught:
            mw.resolver.resolve_sync(token, policy)
        mw.close()
    else:
        mw = make_asgi(timeout=1.0)

        async def resolve() -> None:
            try:
                await mw.resolver.resolve_async(token, policy)
            finally:
                await mw.aclose()

        with pytest.raises(AuthError) as caught:
            asyncio.run(resolve())
    status, headers, body = caught.value.response("lwa")
    assert status in (401, 503)
    texts = [repr(headers), body.decode()]
    for error in _chain(caught.value):
        texts += [str(error), repr(error), repr(error.args)]
    assert_no_token_in("\n".join(texts), [token], "an exception")


def test_upstream_requests_carry_the_token_in_headers_only(
    make_caller: Callable[..., Caller], lwa_emulator: LWAEmulator
) -> None:
    caller = make_caller()
    tokens = [lwa_emulator.issue_token() for _ in range(3)]
    for token in tokens:
        assert caller.get(f"/me?access_token={token}&x=1").status == 200
    assert lwa_emulator.token_in_url == 0
    # Tokeninfo and profile go out together; their order varies.
    assert sorted(r.target for r in lwa_emulator.requests) == sorted([*LWA_TARGETS] * 3)
    for record in lwa_emulator.requests:
        want = "x-amz-access-token" if record.endpoint == "tokeninfo" else "authorization"
        assert want in record.header_names


# -- strip_credentials ---------------------------------------------------------

OTHER_PARAMS = b"a=1&access_token_hint=2&x_access_token=3&b=%20%C3%A9&c="


def _query_with(token: str, key: bytes = b"access_token") -> bytes:
    # The token in the middle, so that both neighbours must survive.
    before, after = b"a=1&access_token_hint=2&", b"&x_access_token=3&b=%20%C3%A9&c="
    return before + key + b"=" + token.encode() + after


class _Seen:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.environs: list[dict[str, Any]] = []

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.environs.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def _assert_scope_clean(scope: dict[str, Any], token: str) -> None:
    names = {name for name, _ in scope["headers"]}
    assert b"authorization" not in names
    assert b"x-amz-access-token" not in names
    assert scope["query_string"] == OTHER_PARAMS
    raw_path = scope.get("raw_path") or b""
    if b"?" in raw_path:
        assert raw_path.partition(b"?")[2] == OTHER_PARAMS
    keys = [k for k, _ in parse_qsl(scope["query_string"].decode("latin-1"))]
    assert "access_token" not in keys
    assert_no_token_in(repr(scope), [token], "the app's scope")


def _assert_environ_clean(environ: dict[str, Any], token: str) -> None:
    assert "HTTP_AUTHORIZATION" not in environ
    assert "HTTP_X_AMZ_ACCESS_TOKEN" not in environ
    assert environ["QUERY_STRING"] == OTHER_PARAMS.decode("latin-1")
    for key in ("REQUEST_URI", "RAW_URI"):
        if key in environ:
            assert environ[key].partition("?")[2] == OTHER_PARAMS.decode("latin-1"), key
    # Werkzeug's test client adds its own request object, built before any middleware.
    rest = {k: v for k, v in environ.items() if k != "werkzeug.request"}
    assert_no_token_in(repr(rest), [token], "the app's environ")


@pytest.mark.parametrize("key", [b"access_token", b"access%5Ftoken"])
def test_strip_credentials_asgi(key: bytes, lwa_emulator: LWAEmulator) -> None:
    seen = _Seen()
    mw = LWAMiddleware(
        seen.asgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        strip_credentials=True,
    )
    token = lwa_emulator.issue_token()

    async def run() -> None:
        # httpx's ASGITransport puts the query in raw_path, as some servers do.
        transport = httpx2.ASGITransport(app=mw)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            url = "/me?" + _query_with(token, key).decode()
            for headers in (
                {"Authorization": f"Bearer {token}", "X-Other": "kept"},
                {"x-amz-access-token": token, "X-Other": "kept"},
                {"X-Other": "kept"},
            ):
                response = await client.get(url, headers=headers)
                assert response.status_code == 200
        await mw.aclose()

    asyncio.run(run())
    assert len(seen.scopes) == 3
    for scope in seen.scopes:
        assert scope["lwa.identity"].user_id == lwa_emulator.customer_for(token).user_id
        assert (b"x-other", b"kept") in scope["headers"]
        _assert_scope_clean(scope, token)


@pytest.mark.parametrize("key", [b"access_token", b"access%5Ftoken"])
def test_strip_credentials_wsgi(key: bytes, lwa_emulator: LWAEmulator) -> None:
    seen = _Seen()
    mw = LWAWSGIMiddleware(
        seen.wsgi,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        strip_credentials=True,
    )
    token = lwa_emulator.issue_token()
    query = _query_with(token, key).decode("latin-1")
    # Werkzeug's client sets REQUEST_URI and RAW_URI, as gunicorn and uWSGI do.
    client = Client(mw)
    for headers in ({"Authorization": f"Bearer {token}"}, {"x-amz-access-token": token}, {}):
        response = client.get("/me?" + query, headers={**headers, "X-Other": "kept"})
        assert response.status_code == 200
    mw.close()
    assert len(seen.environs) == 3
    for environ in seen.environs:
        assert "REQUEST_URI" in environ
        assert "RAW_URI" in environ
        assert environ["lwa.identity"].user_id == lwa_emulator.customer_for(token).user_id
        assert environ["HTTP_X_OTHER"] == "kept"
        _assert_environ_clean(environ, token)


def test_strip_credentials_off_leaves_the_request_alone(lwa_emulator: LWAEmulator) -> None:
    """The control: without the option the app does see the credentials."""
    seen = _Seen()
    mw = LWAWSGIMiddleware(
        seen.wsgi, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url
    )
    token = lwa_emulator.issue_token()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/me",
        "QUERY_STRING": "a=1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    assert b"".join(mw(environ, lambda status, headers, exc=None: None)) == b"ok"
    mw.close()
    assert seen.environs[0]["HTTP_AUTHORIZATION"] == f"Bearer {token}"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_strip_credentials_on_real_servers(server: str, lwa_emulator: LWAEmulator) -> None:
    soak = load_soak()
    seen: list[dict[str, Any]] = []

    async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(
            {
                "headers": [(n.decode(), v.decode()) for n, v in scope["headers"]],
                "query": scope["query_string"].decode(),
                "raw_path": scope.get("raw_path", b"").decode(),
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append({k: v for k, v in environ.items() if isinstance(v, str)})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    token = lwa_emulator.issue_token()
    query = _query_with(token).decode()
    with (
        soak.protected_server(
            lwa_emulator, server, asgi_app=asgi_echo, wsgi_app=wsgi_echo, strip_credentials=True
        ) as (url, _, _),
        httpx2.Client(base_url=url) as client,
    ):
        response = client.get("/me?" + query, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert len(seen) == 1
    dump = json.dumps(seen[0])
    assert_no_token_in(dump, [token], f"what {server} handed the app")
    assert "access_token=" not in dump.replace("x_access_token=", "")
    assert OTHER_PARAMS.decode() in dump
