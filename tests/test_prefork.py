"""The WSGI middleware survives a fork after it was built.

uWSGI (without ``--lazy-apps``) and ``gunicorn --preload`` import the app in
the master and fork the workers from it; uWSGI forks without running
Python's at-fork hooks. A worker has none of its parent's threads, so the
middleware must leave none behind that it will need (a pool thread thought
idle: the profile call queued for it would wait forever), nor run one while
the server may fork (a lock or an import it holds stays held in the child).
Found with uWSGI: ``tests/test_more_servers.py`` serves through it.
"""

from __future__ import annotations

import subprocess
import sys
import threading

from lwa_middleware import LWAWSGIMiddleware
from lwa_middleware.testing import LWAEmulator

PREFORK = r"""
import os, sys, time
from lwa_middleware import LWAWSGIMiddleware

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

client_id, base_url, token = sys.argv[1:4]
mw = LWAWSGIMiddleware(app, client_id=client_id, api_base_url=base_url)
time.sleep(0.3)  # the master goes on loading, then forks its workers
pid = os.fork()
if pid == 0:
    seen = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/me", "QUERY_STRING": "",
               "HTTP_AUTHORIZATION": "Bearer " + token}
    b"".join(mw(environ, lambda status, headers, exc_info=None: seen.append(status)))
    os._exit(0 if seen[0].startswith("200") else 1)
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    done, code = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(code))
    time.sleep(0.05)
os.kill(pid, 9)
os.waitpid(pid, 0)
sys.exit("the forked worker hung on its first token")
"""


def test_a_worker_forked_after_construction_resolves_its_first_token(
    lwa_emulator: LWAEmulator,
) -> None:
    token = lwa_emulator.issue_token()
    done = subprocess.run(
        [sys.executable, "-c", PREFORK, lwa_emulator.client_id, lwa_emulator.base_url, token],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert lwa_emulator.calls["tokeninfo"] == 1
    assert lwa_emulator.calls["profile"] == 1


def test_construction_leaves_no_thread_running(lwa_emulator: LWAEmulator) -> None:
    before = set(threading.enumerate())
    mw = LWAWSGIMiddleware(
        lambda environ, start_response: [],
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
    )
    try:
        # The emulator serves each connection the warm start opens in a
        # thread of its own (in this process): those are not the middleware's.
        made = {t for t in set(threading.enumerate()) - before if "process_request" not in t.name}
        assert made == set()
    finally:
        mw.close()
