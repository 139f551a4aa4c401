"""The CLI as shells run it (issue 22, smaller items): ``inspect … | head`` and
``emulator &`` (a background job), each a real ``python -m lwa_middleware``
child process talking to a real emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lwa_middleware.testing import LWAEmulator

REPO = Path(__file__).resolve().parents[1]
#: Generous: the machine running the suite may be loaded.
WAIT = 30.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_inspect_into_a_closed_pipe_exits_0_without_a_traceback(
    lwa_emulator: LWAEmulator,
) -> None:
    # `inspect … | head -c0`: the reader is gone before the first write, so
    # every write meets EPIPE, deterministically (no race with a reader).
    token = lwa_emulator.issue_token(scopes=["profile"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "lwa_middleware",
                "inspect",
                token,
                "--client-id",
                lwa_emulator.client_id,
                "--api-base-url",
                lwa_emulator.base_url,
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=_env(),
            timeout=WAIT,
            check=False,
        )
    finally:
        os.close(write_end)
    stderr = done.stderr.decode(errors="replace")
    assert "BrokenPipeError" not in stderr
    assert "Traceback" not in stderr
    assert done.returncode == 0, stderr  # the token is valid: the command's own answer
    assert lwa_emulator.calls["tokeninfo"] == 1  # it did inspect the token


def _ignore_sigint() -> None:
    # What a non-interactive shell does for `cmd &`: the job starts with
    # SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_emulator_started_as_a_background_job_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwa_middleware", "emulator", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**_env(), "PYTHONUNBUFFERED": "1"},
        preexec_fn=_ignore_sigint,
    )
    try:
        assert proc.stdout is not None
        # --quiet: the URL first, printed once it listens and its handlers are set.
        first = proc.stdout.readline()
        assert first.startswith(b"http://127.0.0.1:"), first
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail("the emulator ignored SIGINT (started with SIGINT ignored)")
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        if proc.stdout is not None:
            proc.stdout.close()
