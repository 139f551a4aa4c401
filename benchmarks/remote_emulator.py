"""The LWA emulator in a child process, so it does not share the GIL with the middleware.

At scale (thousands of HTTPS requests a second) an in-process emulator would
compete with the code under test for the interpreter; in its own process it
behaves more like a remote service. The parent talks to it over a pipe: mint
tokens, read counters (``calls``, ``connections``), change latency.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def _serve(tls: bool, latency: float) -> None:
    from lwa_middleware.testing import LWAEmulator

    def say(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    with LWAEmulator(tls=tls) as lwa:
        lwa.set_latency(latency)
        say([lwa.base_url, lwa.ca_file if tls else None, lwa.client_id])
        for line in sys.stdin:
            command, arg = json.loads(line)
            if command == "stop":
                say(None)
                return
            if command == "mint":
                say([lwa.issue_token(scopes=["profile"]) for _ in range(arg)])
            elif command == "stats":
                say([lwa.connections, dict(lwa.calls)])
            elif command == "latency":
                lwa.set_latency(arg)
                say(None)


class RemoteEmulator:
    """``with RemoteEmulator(tls=True, latency=0.02) as lwa: lwa.mint(2000)``."""

    def __init__(self, *, tls: bool = True, latency: float = 0.02) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        self._process = subprocess.Popen(
            [sys.executable, __file__, "1" if tls else "0", str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        self.base_url, self.ca_file, self.client_id = self._read()

    def _read(self) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process died")
        return json.loads(line)

    def _ask(self, command: str, arg: Any = None) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps([command, arg]) + "\n")
        self._process.stdin.flush()
        return self._read()

    def mint(self, n: int) -> list[str]:
        return list(self._ask("mint", n))

    def stats(self) -> tuple[int, dict[str, int]]:
        connections, calls = self._ask("stats")
        return int(connections), dict(calls)

    def set_latency(self, seconds: float) -> None:
        self._ask("latency", seconds)

    def close(self) -> None:
        if self._process.poll() is None:
            self._ask("stop")
        self._process.wait(10)

    def __enter__(self) -> RemoteEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _serve(sys.argv[1] == "1", float(sys.argv[2]))
