"""The core never calls back into an adapter (issue 19 item 3).

The resolver and the cache build an :class:`~lwa_middleware.cache.Entry`
knowing nothing of Starlette; the ASGI middleware fills the entry's adapter
slot itself on the entry's first use. So an entry that reached the cache by
any path (another adapter sharing the resolver, a shared-cache copy, a test)
still gets Starlette's credentials, on the inlined hit path and on the slow
one alike, built once and shared.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from hashlib import sha256

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.callers import asgi_call, asgi_scope
from support.clock import FakeClock
from support.private import Entry, Resolver

from lwa_middleware import Identity, LWAMiddleware

TOKEN = "Atza|adapter-slot-" + "s" * 60


@requires("profile")
async def _scopes(request: Request) -> JSONResponse:
    auth = request.auth
    assert isinstance(auth, AuthCredentials)
    return JSONResponse(sorted(auth.scopes))


def _middleware(clock: FakeClock) -> LWAMiddleware:
    # LWA is never asked here: every request is answered from the entry put below.
    return LWAMiddleware(
        Starlette(routes=[Route("/scopes", _scopes)]),
        client_id="amzn1.application-oa2-client.slot",
        api_base_url="http://127.0.0.1:9",
        routes={"/scopes": ["profile"]},
        clock=clock,
    )


def _core_entry(clock: FakeClock) -> Entry:
    """An entry as the core builds it: no adapter had a say."""
    identity = Identity(
        user_id="amzn1.account.SLOT",
        scopes=frozenset({"profile"}),
        client_id="amzn1.application-oa2-client.slot",
        expires_at=time.time() + 3600,
    )
    return Entry(identity, expires_mono=clock() + 3600, fresh_until=clock() + 60, has_profile=True)


def _status_and_body(sent: list[dict[str, object]]) -> tuple[object, object]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, "", id="inlined-hit"),
        pytest.param({}, f"access_token={TOKEN}", id="slow-path-hit"),
    ],
)
def test_an_entry_the_core_built_gets_starlettes_credentials(
    headers: dict[str, str], query: str
) -> None:
    clock = FakeClock()
    mw = _middleware(clock)
    entry = _core_entry(clock)
    mw.resolver.cache.put(sha256(TOKEN.encode()).digest(), entry)
    assert not hasattr(entry, "extra")  # the core leaves the adapter's slot alone

    async def twice() -> list[list[dict[str, object]]]:
        try:
            return [await asgi_call(mw, asgi_scope("/scopes", headers, query)) for _ in range(2)]
        finally:
            await mw.aclose()

    first, second = asyncio.run(twice())
    granted = sorted(entry.granted)
    assert _status_and_body(first) == (200, granted)
    assert _status_and_body(second) == (200, granted)
    assert mw.stats.hits == 2
    assert mw.stats.lookups == 0
    # Filled on first use, then reused: a hit builds nothing.
    filled = entry.extra
    assert isinstance(filled, AuthCredentials)
    assert sorted(filled.scopes) == granted
    asyncio.run(asgi_call(mw, asgi_scope("/scopes", headers, query)))
    assert entry.extra is filled


def test_the_resolver_takes_no_adapter_callback() -> None:
    assert list(inspect.signature(Resolver).parameters) == ["settings"]

