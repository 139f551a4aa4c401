"""The Django middleware on Django's async path (ASGI) and on real servers.

Django documents how a middleware supports both modes: ``sync_capable`` and
``async_capable``, ``markcoroutinefunction`` when ``get_response`` is a
coroutine function, and an async path that awaits instead of blocking. Under
ASGI with an async chain, an async view then runs in the same task as the
outermost middleware (no ``sync_to_async``/``async_to_sync`` hop, hence no
thread), and the LWA lookup runs on the event loop (the ``on_event`` hook's
``resolved`` event fires in a thread with a running loop).

The errors are those of the sync path (``same_error``), and the same views
are served by uvicorn (ASGI) and waitress (WSGI) with the emulator as LWA.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django_support import django_app_fixture, lwa_settings
from integration_support import (
    assert_insufficient,
    assert_missing_token,
    bearer,
    http_client,
    json_of,
    same_error,
)
from support.servers import serve

from lwa_middleware import get_identity
from lwa_middleware.integrations.django import LWAMiddleware, lwa_required
from lwa_middleware.testing import Fault, LWAEmulator

django_app = django_app_fixture


class TaskProbe:
    """Async-only, outermost: records the task (and thread) the request arrived in."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        request.probe = (asyncio.current_task(), threading.get_ident())  # type: ignore[attr-defined]
        response: HttpResponse = await self.get_response(request)
        return response


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _body(request: HttpRequest) -> dict[str, Any]:
    identity = get_identity(request)
    probe = getattr(request, "probe", None)
    return {
        "identity": identity.user_id if identity else None,
        "same_task": probe is not None and probe[0] is asyncio.current_task(),
        "same_thread": probe is not None and probe[1] == threading.get_ident(),
    }


async def async_echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_body(request))


@lwa_required("postal_code")
async def async_zip(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_body(request))


urlpatterns = [
    path("opt/echo", async_echo),
    path("required", async_echo),
    path("policy-zip", async_echo),
    path("opt/zip", async_zip),
]

MIDDLEWARE = [
    f"{__name__}.TaskProbe",
    "django.middleware.security.SecurityMiddleware",
    "lwa_middleware.integrations.django.LWAMiddleware",
]


@pytest.fixture
def events() -> list[tuple[str, bool]]:
    """``(event, whether a loop was running where it fired)``, as ``on_event`` saw them."""
    return []


@pytest.fixture
def project(django_app: Any, lwa_emulator: LWAEmulator, events: list[Any]) -> Iterator[None]:
    def on_event(name: str, data: Any) -> None:
        events.append((name, _running_loop()))

    config = lwa_settings(lwa_emulator, ON_EVENT=on_event)
    with override_settings(LWA=config, ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE):
        yield


class Async:
    """Requests through one ``AsyncClient`` (Django's ASGI handler, one
    middleware instance, so one cache), each on a fresh event loop."""

    def __init__(self) -> None:
        self.client = AsyncClient()

    def get(self, url: str, token: str | None = None) -> Any:
        async def call() -> Any:
            return await self.client.get(url, headers=bearer(token) if token else {})

        return asyncio.run(call())


def test_sync_and_async_capable() -> None:
    assert LWAMiddleware.sync_capable is True
    assert LWAMiddleware.async_capable is True


def test_async_get_response_makes_it_a_coroutine_function(django_app: Any) -> None:
    async def inner(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert iscoroutinefunction(LWAMiddleware(inner))
    assert not iscoroutinefunction(LWAMiddleware(lambda request: HttpResponse()))


@pytest.mark.usefixtures("project")
def test_async_view_never_leaves_the_loop(
    lwa_emulator: LWAEmulator, events: list[tuple[str, bool]]
) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    client = Async()
    answer = client.get("/opt/zip", token)
    assert answer.status_code == 200
    assert json_of(answer) == {
        "identity": lwa_emulator.customer_for(token).user_id,
        # Outermost middleware and view share a task: no thread hop in between.
        "same_task": True,
        "same_thread": True,
    }
    # The lookup itself was awaited on the loop, not run in a worker thread.
    assert ("resolved", True) in events
    assert ("resolved", False) not in events
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert json_of(client.get("/opt/echo"))["same_task"] is True


@pytest.mark.usefixtures("project")
def test_async_path_answers_like_the_sync_path(lwa_emulator: LWAEmulator) -> None:
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    revoked = lwa_emulator.issue_token(scopes=["profile"])
    other = lwa_emulator.issue_token(scopes=["profile"], aud="amzn1.application-oa2-client.other")
    lwa_emulator.revoke(revoked)
    sync, client = Client(), Async()
    assert_missing_token(client.get("/required"))
    same_error(client.get("/required"), sync.get("/required"))
    assert_insufficient(client.get("/opt/zip", poor), "postal_code")
    same_error(client.get("/policy-zip", poor), sync.get("/policy-zip", headers=bearer(poor)))
    for bad in (revoked, other):
        refused = client.get("/required", bad)
        assert refused.status_code == 401
        assert json_of(refused)["error"] == "invalid_token"
        same_error(refused, sync.get("/required", headers=bearer(bad)))
    # Cached: the async path reads the same cache as the sync one.
    assert json_of(client.get("/required", full))["identity"] is not None
    calls = lwa_emulator.calls["tokeninfo"]
    assert json_of(client.get("/required", full))["identity"] is not None
    assert lwa_emulator.calls["tokeninfo"] == calls
    lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", retry_after=7)
    fresh = lwa_emulator.issue_token(scopes=["profile"])
    down = client.get("/required", fresh)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"
    assert "www-authenticate" not in down.headers


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
@pytest.mark.usefixtures("project")
def test_served_by_a_real_server(
    kind: str, lwa_emulator: LWAEmulator, events: list[tuple[str, bool]]
) -> None:
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"])
    poor = lwa_emulator.issue_token(scopes=["profile"])
    # The handler loads MIDDLEWARE now, from this test's settings.
    if kind == "uvicorn":
        app: Any = ASGIHandler()
    else:
        # TaskProbe is async-only: the WSGI handler takes the other middlewares.
        with override_settings(MIDDLEWARE=MIDDLEWARE[1:]):
            app = WSGIHandler()
    with serve(kind, app) as url, http_client(url) as client:
        ok = client.get("/opt/zip", headers=bearer(full))
        assert ok.status_code == 200
        assert ok.json()["identity"] == lwa_emulator.customer_for(full).user_id
        assert ok.json()["same_task"] is (kind == "uvicorn")
        assert_insufficient(client.get("/opt/zip", headers=bearer(poor)), "postal_code")
        assert_missing_token(client.get("/required"))
        assert client.get("/opt/echo").json()["identity"] is None
    resolved = [on_loop for name, on_loop in events if name == "resolved"]
    assert resolved == [kind == "uvicorn"] * 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_login_redirect_sends_page_loads_to_login(
    django_app: Any, lwa_emulator: LWAEmulator, mode: str
) -> None:
    """settings.LWA["LOGIN_REDIRECT"] does in Django what login_redirect= does in
    the ASGI and WSGI middlewares and Flask: a page load without a token gets
    303 to the sign-in page, an API call keeps its 401 (README, Options)."""
    config = lwa_settings(lwa_emulator, LOGIN_REDIRECT="/login")

    def get(url: str, **headers: str) -> Any:
        if mode == "sync":
            return Client().get(url, headers=headers)

        async def call() -> Any:
            return await AsyncClient().get(url, headers=headers)

        return asyncio.run(call())

    with override_settings(LWA=config, ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE):
        page = get("/required?x=1", Accept="text/html,application/xhtml+xml")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/required%3Fx%3D1"
        assert page.headers["cache-control"] == "no-store"
        assert_missing_token(get("/required", Accept="application/json"))
        bad = get("/required", Accept="text/html", Authorization="Bearer not-a-token")
        assert bad.status_code == 401
