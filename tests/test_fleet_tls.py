# ruff: noqa: F811  (the Redis fixtures are imported from support.fleet)
"""Issue 14, item 5: ``rediss://`` against a redis-server speaking only TLS
(``--port 0 --tls-port``), with a CA and a server certificate made here
(the emulator's throwaway CA, :mod:`lwa_middleware.testing._tls`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from shared_cache_support import RedisServer, uvicorn_server, wsgi_server
from support.fleet import (  # noqa: F401  (fixtures)
    SLACK,
    call,
    http,
    keys_of,
    redis_bin,
    share_then_revoke,
)
from support.private import _pem_files, private_async_shared, private_sync_shared

from lwa_middleware.testing import LWAEmulator

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def write_ca(directory: Path, name: str) -> tuple[str, str, str]:
    """``(certificate chain, key, CA)`` files of a fresh CA and a certificate
    it signed for 127.0.0.1."""
    ca_pem, cert_pem, key_pem = _pem_files()
    paths = []
    for suffix, data in (("chain.pem", cert_pem + ca_pem), ("key.pem", key_pem),
                         ("ca.pem", ca_pem)):
        path = directory / f"{name}-{suffix}"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        paths.append(str(path))
    return paths[0], paths[1], paths[2]


@pytest.fixture(scope="module")
def tls_redis(redis_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("redis-tls")
    server = RedisServer(redis_bin, tls=write_ca(directory, "good"))
    try:
        server.start()
    except RuntimeError:
        server.close()
        pytest.skip("this redis-server does not start with --tls-port (built without TLS)")
    yield server
    server.close()


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_ca(tmp_path_factory.mktemp("other-ca"), "other")[2]


def rediss(server: RedisServer, ca: str) -> str:
    return f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca}"


def test_identities_and_revocations_are_shared_over_tls(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, tls_redis: RedisServer,
    http: httpx2.Client,
) -> None:
    assert tls_redis.tls is not None
    url = rediss(tls_redis, tls_redis.tls[2])
    with tls_redis.client() as admin:
        admin.flushall()
    a = make_asgi(redis_url=url, redis_timeout=SLACK)
    w = make_wsgi(redis_url=url, redis_timeout=SLACK)
    share_then_revoke(http, lwa_emulator, a, w)
    with tls_redis.client() as admin:
        assert len(keys_of(admin, "rev")) == 1


def test_a_server_certificate_of_another_ca_is_a_tls_fault_and_requests_go_on(
    make_asgi: Any, make_wsgi: Any, lwa_emulator: LWAEmulator, tls_redis: RedisServer,
    wrong_ca: str, http: httpx2.Client, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "lwa_middleware.shared_cache")
    a = make_asgi(redis_url=rediss(tls_redis, wrong_ca), redis_timeout=SLACK)
    w = make_wsgi(redis_url=rediss(tls_redis, wrong_ca), redis_timeout=SLACK)
    with uvicorn_server(a) as ua, wsgi_server(w) as uw:
        for base in (ua, uw):
            response = call(http, base, "/me", lwa_emulator.issue_token())
            assert response.status_code == 200, response.text  # through LWA
    for mw in (a, w):
        shared = private_async_shared(mw) or private_sync_shared(mw)
        assert shared is not None
        assert shared.faults == {"tls": 1}
        assert mw.stats.redis_faults == 1
    assert "[tls]" in caplog.text
    assert "ssl_ca_certs" in caplog.text  # the fix
    w.close()
