"""The framework-free examples (WSGI, ASGI, metrics), and every example run as a script.

The script tests start each ``examples/*.py`` exactly as the docs say
(``python examples/<name>.py``, Django through ``manage.py runserver``), all
at once so the interpreters start in parallel, then follow the curl line each
one prints.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from integration_support import (
    DJANGO_PROJECT,
    EXAMPLES,
    assert_insufficient,
    assert_missing_token,
    bearer,
    free_port,
    http_client,
    load_example,
    uvicorn_server,
)
from starlette.testclient import TestClient

from lwa_middleware.testing import Fault, LWAEmulator

REPO = EXAMPLES.parent

# -- plain WSGI: the example's own threaded wsgiref server ------------------------


def test_wsgi_example_over_wsgiref(lwa_emulator: LWAEmulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    example = load_example("wsgi_app")
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    server = example.make_wsgi_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(full)
    lwa_emulator.set_latency(0.2, "tokeninfo")
    try:
        with http_client(f"http://127.0.0.1:{server.server_port}") as client:
            with ThreadPoolExecutor(5) as pool:
                answers = list(
                    pool.map(lambda _: client.get("/shipping", headers=bearer(full)), range(5))
                )
            assert [a.status_code for a in answers] == [200] * 5
            assert answers[0].json() == {
                "user_id": customer.user_id,
                "postal_code": customer.postal_code,
            }
            assert lwa_emulator.calls["tokeninfo"] == 1
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/").json() == {"hello": "anonymous"}
            assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
            assert client.get("/me", headers=bearer(full)).json()["identity"]["name"] == "Ada"
            assert_missing_token(client.get("/me"))
            assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- plain ASGI: uvicorn ------------------------------------------------------------


def test_asgi_example_over_uvicorn(lwa_emulator: LWAEmulator) -> None:
    example = load_example("asgi_app")
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(full)
    with uvicorn_server(app) as url, http_client(url) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").json() == {"hello": "anonymous"}
        assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
        assert client.get("/shipping", params={"access_token": full}).json() == {
            "user_id": customer.user_id,
            "postal_code": customer.postal_code,
        }
        assert_missing_token(client.get("/me"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
    assert lwa_emulator.calls["tokeninfo"] == 2


# -- Litestar and Quart: pure ASGI apps behind LWAMiddleware, on uvicorn ----------------


@pytest.mark.parametrize("name", ["litestar_app", "quart_app"])
def test_asgi_framework_example_over_uvicorn(lwa_emulator: LWAEmulator, name: str) -> None:
    pytest.importorskip(name.split("_")[0])
    example = load_example(name)
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    full = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    poor = lwa_emulator.issue_token(scopes=["profile"])
    customer = lwa_emulator.customer_for(full)
    # lifespan on: Litestar and Quart run their startup hooks, which pass through.
    with uvicorn_server(app, lifespan="on") as url, http_client(url) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").json() == {"hello": "anonymous"}
        assert client.get("/", headers=bearer(full)).json() == {"hello": "Ada"}
        me = client.get("/me", headers=bearer(full))
        assert me.status_code == 200
        assert me.json()["user_id"] == customer.user_id
        assert client.get("/shipping", headers=bearer(full)).json() == {
            "user_id": customer.user_id,
            "postal_code": customer.postal_code,
        }
        assert_missing_token(client.get("/me"))
        assert_missing_token(client.get("/shipping"))
        assert_insufficient(client.get("/shipping", headers=bearer(poor)), "postal_code")
        # An unknown path on a "required" default is refused before the framework's 404.
        assert_missing_token(client.get("/nowhere"))
        assert client.get("/nowhere", headers=bearer(full)).status_code == 404
    assert lwa_emulator.calls["tokeninfo"] == 2


# -- metrics --------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$")


def scrape(client: Any) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, line
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_metrics_example_scrapes_the_collector(lwa_emulator: LWAEmulator) -> None:
    """The example's /metrics is prometheus_client's text exposition of
    ``LWACollector``: counters and the latency histogram follow each request."""
    example = load_example("metrics_prometheus")
    app = example.create_app(lwa_emulator.base_url, lwa_emulator.client_id)
    token = lwa_emulator.issue_token(scopes=["profile"])
    revoked = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.revoke(revoked)
    with TestClient(app) as client:
        assert scrape(client)["lwa_lookups_total"] == 0

        assert client.get("/me", headers=bearer(token)).status_code == 200
        after_miss = scrape(client)
        assert after_miss["lwa_lookups_total"] == 1
        assert after_miss["lwa_cache_hits_total"] == 0
        assert after_miss["lwa_lookup_duration_seconds_count"] == 1
        assert after_miss['lwa_lookup_duration_seconds_bucket{le="+Inf"}'] == 1
        assert after_miss["lwa_lookup_duration_seconds_sum"] > 0

        for _ in range(3):
            assert client.get("/me", headers=bearer(token)).status_code == 200
        after_hits = scrape(client)
        assert after_hits["lwa_cache_hits_total"] == 3
        assert after_hits["lwa_lookups_total"] == 1

        for _ in range(2):
            assert client.get("/me", headers=bearer(revoked)).status_code == 401
        after_rejections = scrape(client)
        assert after_rejections["lwa_rejections_total"] == 1
        assert after_rejections["lwa_rejections_cached_total"] == 1

        lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
        fresh = lwa_emulator.issue_token(scopes=["profile"])
        assert client.get("/me", headers=bearer(fresh)).status_code == 503
        after_error = scrape(client)
        assert after_error['lwa_upstream_errors_total{reason="status"}'] == 1
        assert after_error['lwa_upstream_errors_total{reason="certificate"}'] == 0
        assert after_error["lwa_lookup_duration_seconds_count"] == 3
    # Reading the counters asked LWA nothing: it saw each token once.
    assert lwa_emulator.calls["tokeninfo"] == 3


# -- every example, run as a script ---------------------------------------------------

SCRIPTS: dict[str, list[str]] = {
    "starlette_app": [str(EXAMPLES / "starlette_app.py")],
    "fastapi_app": [str(EXAMPLES / "fastapi_app.py")],
    "litestar_app": [str(EXAMPLES / "litestar_app.py")],
    "quart_app": [str(EXAMPLES / "quart_app.py")],
    "flask_app": [str(EXAMPLES / "flask_app.py")],
    "wsgi_app": [str(EXAMPLES / "wsgi_app.py")],
    "asgi_app": [str(EXAMPLES / "asgi_app.py")],
    "metrics_prometheus": [str(EXAMPLES / "metrics_prometheus.py")],
    # --noreload: one process, so terminating it stops the server.
    "django_project": [str(DJANGO_PROJECT / "manage.py"), "runserver", "--noreload"],
}


@dataclass
class Running:
    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("curl "):
                self.ready.set()
        self.ready.set()  # exited: let the waiter see what it printed

    def line(self, prefix: str) -> str:
        return next(line for line in self.lines if line.startswith(prefix))


def _env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWA_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env["PORT"] = str(port)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _start(argv: list[str], **extra: str) -> Running:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO,
        env=_env(port, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    running = Running(process, port)
    running.reader = threading.Thread(target=running.read, daemon=True)
    running.reader.start()
    return running


def _stop(running: Running) -> None:
    running.process.terminate()
    try:
        running.process.wait(10)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait(10)
    if running.reader is not None:
        running.reader.join(timeout=5)  # the pipe is at EOF once the process is gone
    alive = running.reader is not None and running.reader.is_alive()
    if running.process.stdout is not None and not alive:
        running.process.stdout.close()


def _serving(running: Running, timeout: float = 30.0) -> bool:
    """Whether the script bound its port, rather than exiting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)  # polling its start-up, bounded
    return running.process.poll() is None


def _start_serving(argv: list[str]) -> Running:
    # The scripts take a port number and bind it themselves: between
    # free_port() and their bind, another server of a parallel test may take
    # it (uvicorn then exits with 3). Such a clash is retried on a new port.
    for _attempt in range(3):
        running = _start(argv)
        if _serving(running):
            return running
        _stop(running)
    return running


@pytest.fixture(scope="module")
def scripts() -> Iterator[dict[str, Running]]:
    started = {name: _start_serving(argv) for name, argv in SCRIPTS.items()}
    try:
        yield started
    finally:
        for running in started.values():
            _stop(running)


def _get_until_up(url: str, headers: dict[str, str], deadline: float) -> Any:
    import httpx2

    with http_client() as client:
        while True:
            try:
                return client.get(url, headers=headers)
            except httpx2.TransportError:
                # The banner can come just before the socket listens.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_serves_with_its_emulator(scripts: dict[str, Running], name: str) -> None:
    running = scripts[name]
    assert running.ready.wait(30), f"{name} printed no curl line"
    assert running.process.poll() is None, f"{name} exited: {running.lines}"
    token = running.line("token: ").split(" ", 1)[1]
    curl = running.line("curl ")
    assert f"'Authorization: Bearer {token}'" in curl
    url = curl.rsplit(" ", 1)[1]
    assert url.startswith(f"http://127.0.0.1:{running.port}/")
    assert running.line("LWA emulator: ").startswith("LWA emulator: http://127.0.0.1:")

    deadline = time.monotonic() + 20
    ok = _get_until_up(url, {"Authorization": f"Bearer {token}"}, deadline)
    assert ok.status_code == 200
    assert ok.json()["postal_code"] == "98109"
    assert_missing_token(_get_until_up(url, {}, deadline))


def test_script_uses_the_given_lwa(lwa_emulator: LWAEmulator) -> None:
    running = _start(
        [str(EXAMPLES / "wsgi_app.py")],
        LWA_API_BASE_URL=lwa_emulator.base_url,
        LWA_CLIENT_ID=lwa_emulator.client_id,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(line.startswith("LWA: ") for line in running.lines):
            assert time.monotonic() < deadline, running.lines
            assert running.process.poll() is None, running.lines
            time.sleep(0.05)
        assert running.line("LWA: ") == f"LWA: {lwa_emulator.base_url}"
        assert not any(line.startswith(("token: ", "curl ")) for line in running.lines)
        token = lwa_emulator.issue_token(scopes=["postal_code"], postal_code="10115")
        url = f"http://127.0.0.1:{running.port}/shipping"
        answer = _get_until_up(url, bearer(token), deadline)
        assert answer.status_code == 200
        assert answer.json()["postal_code"] == "10115"
        assert lwa_emulator.calls["tokeninfo"] == 1
    finally:
        _stop(running)


def test_every_example_is_covered() -> None:
    scripts = {p.stem for p in Path(EXAMPLES).glob("*.py") if not p.stem.startswith("_")}
    assert scripts | {"django_project"} == set(SCRIPTS)
