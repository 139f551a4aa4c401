"""``lwa-middleware emulator --quiet``: the emulator as a child process of a script.

It replaces ``python -m lwa_middleware.testing``: the first line of stdout
is the base URL, the second the ``--mint`` token, and nothing else is
printed, so a script (``benchmarks/soak.py``, a test in another language)
can read them without parsing prose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "amzn1.application-oa2-client.script"


def test_quiet_prints_the_url_and_the_token_only() -> None:
    env = dict(os.environ)
    # The package may not be installed yet: run it from this checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = ["emulator", "--port", "0", "--quiet", "--mint", "profile", "--client-id", CLIENT_ID]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwa_middleware", *argv],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        token = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        assert token.startswith("Atza|")
        with httpx2.Client(timeout=5, trust_env=False) as http:
            info = http.get(base_url + "/auth/o2/tokeninfo", headers={"x-amz-access-token": token})
        assert info.status_code == 200
        assert info.json()["aud"] == CLIENT_ID

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
