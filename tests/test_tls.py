"""LWA over TLS: the emulator's ``tls=True`` and the middleware's ``verify`` option."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from support.private import Settings

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

pytest.importorskip("cryptography")

CLIENT = "amzn1.application-oa2-client.emulator"


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["lwa.identity"].user_id.encode()})


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["lwa.identity"].user_id.encode()]


@pytest.fixture(scope="module")
def tls_lwa() -> Iterator[LWAEmulator]:
    with LWAEmulator(tls=True) as lwa:
        yield lwa


@pytest.fixture(scope="module")
def other_ca() -> Iterator[str]:
    with LWAEmulator(tls=True) as stranger:
        yield stranger.ca_file


async def _asgi_status(app: LWAMiddleware, token: str) -> tuple[int, str]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/", headers={"Authorization": f"Bearer {token}"})
    await app.aclose()
    return response.status_code, response.text


def _wsgi_status(app: LWAWSGIMiddleware, token: str) -> tuple[int, str]:
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://app") as client:
        response = client.get("/", headers={"Authorization": f"Bearer {token}"})
    app.close()
    return response.status_code, response.text


@pytest.mark.parametrize("trust", ["ca_file", "ssl_context"])
@pytest.mark.anyio
async def test_tokens_resolve_over_tls(tls_lwa: LWAEmulator, trust: str) -> None:
    assert tls_lwa.base_url.startswith("https://127.0.0.1:")
    verify = getattr(tls_lwa, trust)
    token = tls_lwa.issue_token(scopes=["profile"])
    user_id = tls_lwa.customer_for(token).user_id
    options: dict[str, Any] = {
        "client_id": CLIENT, "api_base_url": tls_lwa.base_url, "verify": verify
    }
    assert await _asgi_status(LWAMiddleware(_ok, **options), token) == (200, user_id)
    assert _wsgi_status(LWAWSGIMiddleware(_wsgi_ok, **options), token) == (200, user_id)


@pytest.mark.anyio
async def test_an_untrusted_certificate_fails_closed(tls_lwa: LWAEmulator, other_ca: str) -> None:
    token = tls_lwa.issue_token(scopes=["profile"])
    calls = sum(tls_lwa.calls.values())
    for verify in (other_ca, True):  # another CA; the system's CAs
        options: dict[str, Any] = {
            "client_id": CLIENT, "api_base_url": tls_lwa.base_url, "verify": verify
        }
        status, _ = await _asgi_status(LWAMiddleware(_ok, **options), token)
        assert status == 503
        status, _ = _wsgi_status(LWAWSGIMiddleware(_wsgi_ok, **options), token)
        assert status == 503
    assert sum(tls_lwa.calls.values()) == calls  # no request got past the handshake


def test_verify_false_is_only_allowed_on_loopback() -> None:
    assert Settings.from_options(
        client_id=CLIENT, api_base_url="https://127.0.0.1:8443", verify=False
    ).verify is False
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    for weak in (False, unchecked):
        with pytest.raises(ConfigurationError, match="only allowed when api_base_url is on loop"):
            Settings.from_options(client_id=CLIENT, region="eu", verify=weak)


def test_verify_is_validated(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="no such CA file"):
        Settings.from_options(client_id=CLIENT, verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="verify must be"):
        Settings.from_options(client_id=CLIENT, verify=1)  # type: ignore[arg-type]
    assert Settings.from_options(client_id=CLIENT).verify is True
