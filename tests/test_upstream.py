"""Expiry, the negative cache and LWA failures, end to end in both middlewares."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient
from support.clock import FakeClock
from werkzeug.test import Client

from lwa_middleware import LWAMiddleware, LWAWSGIMiddleware, revalidate
from lwa_middleware.testing import Fault, LWAEmulator


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class World:
    """One middleware (ASGI or WSGI) with a client, behind a uniform ``get``."""

    def __init__(self, kind: str, mw: Any, stack: contextlib.ExitStack) -> None:
        self.kind = kind
        self.mw = mw
        if kind == "asgi":
            self._client: Any = stack.enter_context(TestClient(mw))
        else:
            self._client = Client(mw)
            stack.callback(mw.close)

    def revoke(self, token: str) -> None:
        if self.kind == "asgi":
            self._client.portal.call(self.mw.revoke, token)
        else:
            self.mw.revoke(token)

    def get(self, path: str = "/me", token: str | None = None, **headers: str) -> Reply:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = self._client.get(path, headers=headers)
        data = response.json() if self.kind == "asgi" else response.get_json()
        return Reply(
            response.status_code, {k.lower(): v for k, v in response.headers.items()}, data
        )


@pytest.fixture(params=["asgi", "wsgi"])
def world(
    request: pytest.FixtureRequest,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> Iterator[Callable[..., World]]:
    """``world(**options)``: the middleware of this parameter, ready to request."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> World:
            factory = make_asgi if request.param == "asgi" else make_wsgi
            return World(request.param, factory(**options), stack)

        yield make


def assert_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply.body
    assert reply.body["error"] == "temporarily_unavailable"
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["retry-after"].isdigit()
    assert int(reply.headers["retry-after"]) >= 1
    assert "www-authenticate" not in reply.headers


# -- expiry --------------------------------------------------------------------


def test_cache_never_serves_past_token_expiry(
    lwa_emulator: LWAEmulator,
    make_asgi: Callable[..., LWAMiddleware],
    make_wsgi: Callable[..., LWAWSGIMiddleware],
) -> None:
    # The middleware's clock is a FakeClock: the token's lifetime passes when
    # the test says so. (The emulator keeps real time, so it still says yes:
    # what is checked is that the cache asks again.)
    clock = FakeClock()
    short_a = lwa_emulator.issue_token(expires_in=30)
    short_w = lwa_emulator.issue_token(expires_in=30)
    asgi = make_asgi(cache_ttl=300, clock=clock)
    wsgi = make_wsgi(cache_ttl=300, clock=clock)
    wclient = Client(wsgi)
    a_headers = {"Authorization": f"Bearer {short_a}"}
    w_headers = {"Authorization": f"Bearer {short_w}"}
    with TestClient(asgi) as aclient:
        first = aclient.get("/me", headers=a_headers)
        assert first.status_code == 200
        assert first.json()["identity"]["expires_at"] <= time.time() + 30
        assert wclient.get("/me", headers=w_headers).status_code == 200
        # LWA says exp=29 for a 30 s token (it rounds down), less when this
        # loaded machine took seconds between issuing and asking: 20 s leaves
        # room for that, and the next 10 s pass the expiry whatever LWA said.
        clock.advance(20)
        assert aclient.get("/me", headers=a_headers).status_code == 200
        assert wclient.get("/me", headers=w_headers).status_code == 200
        assert lwa_emulator.calls["tokeninfo"] == 2  # the repeats were cached
        clock.advance(10)  # past the token's expiry, far within cache_ttl
        assert aclient.get("/me", headers=a_headers).status_code == 200
        assert wclient.get("/me", headers=w_headers).status_code == 200
    assert lwa_emulator.calls["tokeninfo"] == 4  # asked again, not served from cache
    wsgi.close()


def test_already_expired_token(lwa_emulator: LWAEmulator, world: Callable[..., World]) -> None:
    w = world()
    assert w.get(token=lwa_emulator.issue_token(expires_in=0)).status == 401
    assert w.get(token=lwa_emulator.issue_token(expires_in=-3600)).status == 401


# -- negative cache ------------------------------------------------------------


def test_rejected_token_is_remembered(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    w = world()
    for _ in range(5):
        reply = w.get(token="Atza|" + "r" * 400)
        assert reply.status == 401
        assert reply.body["error"] == "invalid_token"
    assert lwa_emulator.calls["tokeninfo"] == 1
    other_client = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.other")
    for _ in range(5):
        assert w.get(token=other_client).status == 401
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_revoked_token_is_remembered(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.revoke(token)
    w = world()
    for _ in range(5):
        assert w.get(token=token).status == 401
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_negative_cache_ttl_expires(lwa_emulator: LWAEmulator, world: Callable[..., World]) -> None:
    clock = FakeClock()
    w = world(negative_cache_ttl=30, clock=clock)
    assert w.get(token="garbage-token").status == 401
    clock.advance(29.9)
    assert w.get(token="garbage-token").status == 401
    assert lwa_emulator.calls["tokeninfo"] == 1
    clock.advance(0.2)
    assert w.get(token="garbage-token").status == 401
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_negative_cache_disabled(lwa_emulator: LWAEmulator, world: Callable[..., World]) -> None:
    w = world(negative_cache_ttl=0)
    for _ in range(3):
        assert w.get(token="garbage-token").status == 401
    assert lwa_emulator.calls["tokeninfo"] == 3


def test_inconsistent_answers_are_not_remembered(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.USER_ID_MISMATCH, times=1)
    w = world()
    assert w.get(token=token).status == 401
    reply = w.get(token=token)
    assert reply.status == 200
    assert reply.body["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id


# -- transient failures --------------------------------------------------------


def test_transient_failure_is_not_cached(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=1)
    w = world()
    assert_unavailable(w.get(token=token))
    assert w.get(token=token).status == 200
    assert w.get(token=token).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 2


def test_transient_failure_of_an_unknown_token_is_not_cached(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", times=1)
    w = world()
    assert_unavailable(w.get(token="garbage-token"))
    assert w.get(token="garbage-token").status == 401
    assert lwa_emulator.calls["tokeninfo"] == 2


FAULTS = [
    (Fault.SERVER_ERROR, None),
    (Fault.UNAVAILABLE, None),
    (Fault.THROTTLED, None),
    (Fault.BAD_JSON, None),
    (Fault.HTML, None),
    (Fault.WRONG_TYPES, None),
    (Fault.OVERSIZED, None),
    (Fault.RESET, None),
    (Fault.DOWN, None),
    (Fault.SERVER_ERROR, "profile"),
    (Fault.BAD_JSON, "profile"),
    (Fault.WRONG_TYPES, "profile"),
    (Fault.RESET, "profile"),
]


@pytest.mark.parametrize(
    ("fault", "endpoint"), FAULTS, ids=[f"{f.name}-{e or 'both'}" for f, e in FAULTS]
)
def test_faults_fail_closed_then_recover(
    fault: Fault, endpoint: str | None, lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    reached: list[str] = []
    w = world()
    inner = w.mw.app
    if w.kind == "asgi":

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            reached.append(scope["path"])
            await inner(scope, receive, send)

        w.mw.app = spy
    else:

        def wspy(environ: Any, start_response: Any) -> Any:
            reached.append(environ["PATH_INFO"])
            return inner(environ, start_response)

        w.mw.app = wspy
    lwa_emulator.inject(fault, endpoint=endpoint)
    started = time.monotonic()
    assert_unavailable(w.get(token=token))
    assert time.monotonic() - started < 5
    assert reached == []  # fails closed: the protected app never ran
    lwa_emulator.clear_faults()
    reply = w.get(token=token)
    assert reply.status == 200
    assert reply.body["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id
    assert reached == ["/me"]


def test_retry_after_from_lwa_is_propagated(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(Fault.THROTTLED, endpoint="tokeninfo", retry_after=17)
    reply = world().get(token=token)
    assert_unavailable(reply)
    assert reply.headers["retry-after"] == "17"


@pytest.mark.parametrize("fault", [Fault.SLOW_DRIP, Fault.HANG])
def test_overall_deadline(
    fault: Fault, lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    lwa_emulator.inject(fault, endpoint="tokeninfo")
    w = world(timeout=1)
    started = time.monotonic()
    reply = w.get(token=token)
    elapsed = time.monotonic() - started
    assert_unavailable(reply)
    assert elapsed < 5, f"took {elapsed:.1f}s with timeout=1"
    lwa_emulator.clear_faults()
    assert w.get(token=token).status == 200


def test_format_variants_are_understood(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Legacy")
    lwa_emulator.inject(Fault.LEGACY_PROFILE)
    lwa_emulator.inject(Fault.EXP_STRING)
    reply = world().get("/zip", token=token)
    assert reply.status == 200
    identity = reply.body["identity"]
    assert identity["name"] == "Legacy"
    assert identity["postal_code"] == lwa_emulator.customer_for(token).postal_code
    assert identity["scopes"] == ["postal_code", "profile"]
    assert identity["expires_at"] > time.time() + 3000


def test_token_without_profile_scopes(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token(scopes=["alexa::skills:account_linking"])
    w = world()
    reply = w.get(token=token)
    assert reply.status == 200
    assert reply.body["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id
    assert reply.body["identity"]["scopes"] == []
    assert w.get("/uid", token=token).status == 403
    assert w.get("/zip", token=token).status == 403


def test_token_never_travels_in_a_url(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    w = world()
    assert w.get(token=token).status == 200
    assert w.get(token="garbage-token").status == 401
    assert lwa_emulator.token_in_url == 0
    assert lwa_emulator.requests
    for request in lwa_emulator.requests:
        assert "?" not in request.target


# -- tokeninfo-only routes and the profile -------------------------------------


def test_user_id_route_then_profile_route(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    # Whether a ["profile:user_id"] route fetches the profile or trusts
    # tokeninfo is the library's choice; either way a later profile route gets
    # the full identity, and nothing is asked twice once both are cached.
    token = lwa_emulator.issue_token(scopes=["profile"], name="Ada")
    w = world()
    uid = w.get("/uid", token=token)
    assert uid.status == 200
    assert uid.body["identity"]["user_id"] == lwa_emulator.customer_for(token).user_id
    assert lwa_emulator.calls["tokeninfo"] == 1
    full = w.get("/me", token=token)
    assert full.status == 200
    assert full.body["identity"]["name"] == "Ada"
    assert full.body["identity"]["scopes"] == ["profile"]
    settled = (lwa_emulator.calls["tokeninfo"], lwa_emulator.calls["profile"])
    assert settled[0] <= 2
    assert settled[1] == 1
    for path in ("/uid", "/me", "/uid"):
        assert w.get(path, token=token).status == 200
    assert (lwa_emulator.calls["tokeninfo"], lwa_emulator.calls["profile"]) == settled


@pytest.mark.parametrize("order", ["uid-first", "me-first"])
def test_scope_decision_does_not_depend_on_request_order(
    order: str, lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    # A token granted no profile scope at all (say, only an Alexa scope) does
    # not hold "profile:user_id"; a ["profile:user_id"] route must refuse it
    # whether or not the profile was fetched for an earlier request.
    token = lwa_emulator.issue_token(scopes=["alexa::skills:account_linking"])
    w = world()
    paths = ["/uid", "/me", "/uid"] if order == "uid-first" else ["/me", "/uid", "/uid"]
    statuses: dict[str, set[int]] = {path: set() for path in paths}
    for path in paths:
        statuses[path].add(w.get(path, token=token).status)
    assert statuses["/me"] == {200}
    assert statuses["/uid"] == {403}


def test_cache_ttl_zero_always_asks_lwa(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    w = world(cache_ttl=0)
    for _ in range(3):
        assert w.get(token=token).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 3


def test_revalidate_routes_always_ask_lwa(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token = lwa_emulator.issue_token()
    w = world(routes={"/pay/**": revalidate(), "/me": "required"})
    for _ in range(3):
        assert w.get("/me", token=token).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 1
    for _ in range(2):
        assert w.get("/pay/now", token=token).status == 200
    assert lwa_emulator.calls["tokeninfo"] == 3
    lwa_emulator.revoke(token)
    assert w.get("/pay/now", token=token).status == 401  # at once, not after cache_ttl
    # The fresh "no" also reaches the cache the other routes use.
    assert w.get("/me", token=token).status == 401


def test_default_policy_and_realm_options(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    w = world(routes={"/closed": "required"}, default="optional", realm="my api")
    assert w.get("/anything").status == 200
    assert w.get("/anything").body["identity"] is None
    closed = w.get("/closed")
    assert closed.status == 401
    assert closed.headers["www-authenticate"] == 'Bearer realm="my api"'
    bad = w.get("/anything", token="garbage-token")
    assert bad.status == 401
    assert bad.headers["www-authenticate"].startswith(
        'Bearer realm="my api", error="invalid_token"'
    )
    public = world(routes={"/closed": "required"}, default="public")
    assert public.get("/anything", Authorization="Bearer a b c").status == 200
    assert lwa_emulator.calls["tokeninfo"] == 1


def test_insufficient_scope_names_every_scope_the_route_needs(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    # RFC 6750 section 3.1: "scope" is the scope necessary to access the
    # resource, so a client can ask for a token that will work. Naming only
    # the missing part would send it back for a token that lacks the rest.
    token = lwa_emulator.issue_token(scopes=["profile"])
    w = world(routes={"/both": ["profile", "postal_code"]})
    reply = w.get("/both", token=token)
    assert reply.status == 403
    challenge = reply.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert challenge.endswith('scope="postal_code profile"'), challenge


def test_local_revoke_refuses_a_token_lwa_still_accepts(
    lwa_emulator: LWAEmulator, world: Callable[..., World]
) -> None:
    token, other = lwa_emulator.issue_token(), lwa_emulator.issue_token()
    w = world()
    assert w.get(token=token).status == 200
    assert w.get(token=other).status == 200
    w.revoke(token)
    for path in ("/me", "/optional", "/uid"):
        reply = w.get(path, token=token)
        assert reply.status == 401, path
        assert reply.body["error"] == "invalid_token"
    assert w.get(token=other).status == 200
    # A token never seen before can be revoked too (logout before first use).
    fresh = lwa_emulator.issue_token()
    w.revoke(fresh)
    assert w.get(token=fresh).status == 401


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancelled_request_gives_its_seat_back(backend: str) -> None:
    # A request cancelled mid-flight (client gone, deadline) must free its
    # seat, or the process ends up round-robin over clients with no seat left.
    import anyio
    from support.private import AsyncDriver, Settings, _Seats

    class Hanging:
        def build_request(self, method: str, url: str, **kwargs: Any) -> Any:
            return httpx2.Request(method, url)

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            await anyio.sleep(3600)

    @dataclass
    class Request:
        endpoint: str = "tokeninfo"
        url: str = "https://api.amazon.com/auth/o2/tokeninfo"
        headers: tuple[()] = ()
        method: str = "GET"
        body: None = None

    async def main() -> None:
        driver = AsyncDriver(Settings.from_options(client_id="amzn1.application-oa2-client.0123"))
        seats: _Seats[Any] = _Seats([Hanging(), Hanging()], 2)
        outcomes: list[Any] = [None]
        async with anyio.create_task_group() as group:
            for _ in range(5):  # one more than the seats
                group.start_soon(driver._send, seats, Request(), time.monotonic() + 60, outcomes, 0)
            await anyio.sleep(0.05)
            assert seats._free == []
            group.cancel_scope.cancel()
        assert len(seats._free) == 4
        with anyio.move_on_after(0.05):
            await driver._send(seats, Request(), time.monotonic() + 60, outcomes, 0)
        assert len(seats._free) == 4

    anyio.run(main, backend=backend)
