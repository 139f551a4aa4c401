"""Real Redis for the shared-cache tests and benchmark: a throwaway
``redis-server``, a black hole that accepts and never answers, and uvicorn
worker *processes* (``sys.executable -m uvicorn``) serving the middleware,
each on its own loopback port, so xdist workers never share one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

from .servers import listening_socket

__all__ = [
    "WORKER_APP",
    "BlackHole",
    "LocalCluster",
    "RedisServer",
    "SentinelTopology",
    "Workers",
    "free_port",
    "redis_binary",
    "wait_for",
]


def wait_for(condition: Callable[[], bool], bound: float, poll: float = 0.05) -> None:
    """Poll ``condition`` (real servers are acting) until true, failing after ``bound`` s."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound} s")
        time.sleep(poll)


def free_port() -> int:
    """A port free a moment ago. Only for ``redis-server``, which cannot be
    handed a bound socket; :meth:`RedisServer.start` retries on a clash."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """A throwaway ``redis-server`` (no persistence) that can be killed and
    started again on the same port.

    :param extra: more command-line options (``--cluster-enabled yes``, ...).
    :param tls: ``(certificate chain, key, CA)`` files: then the server
        speaks TLS only, on :attr:`port` (``--port 0 --tls-port``).
    :param password: the default user's password (``--requirepass``).
    """

    def __init__(
        self,
        binary: str,
        port: int | None = None,
        *,
        extra: Sequence[str] = (),
        tls: tuple[str, str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = binary
        self.extra = list(extra)
        self.tls = tls
        self.password = password
        self._auto_port = port is None
        self._started_once = False
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="lwa-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_path(self) -> str:
        return os.path.join(self._dir.name, "redis.sock")

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_path}?db=0"

    def client(self) -> redis.Redis:
        options: dict[str, Any] = {"password": self.password}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=self.tls[2])
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **options)

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, on the same port) and wait for PING. A first
        start on a port another process took meanwhile moves to a new port."""
        for _attempt in range(5):
            if self._spawn(timeout):
                self._started_once = True
                return
            if self._started_once or not self._auto_port:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _spawn(self, timeout: float) -> bool:
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            cert, key, ca = self.tls
            ports = [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
            ]
        if self.password is not None:
            ports += ["--requirepass", self.password]
        self._proc = subprocess.Popen(
            [
                self.binary,
                *ports,
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir.name,
                "--unixsocket", self.unix_path,
                "--unixsocketperm", "700",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                return False  # most likely: the port was taken
            try:
                with contextlib.closing(self.client()) as client:
                    if client.ping():
                        return True
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)  # polling start-up

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stall the server (SIGSTOP: connections open, nothing answered) for the block."""
        proc = self._proc
        assert proc is not None, "not running"
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class LocalCluster:
    """A Redis Cluster of ``masters`` nodes (no replicas), each a
    :class:`RedisServer` with ``--cluster-enabled yes`` and a bus port of its
    own, joined by ``redis-cli --cluster create``; ready once every node
    says ``cluster_state:ok``."""

    def __init__(
        self,
        binary: str,
        masters: int = 3,
        timeout: float = 60.0,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 5000,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(masters * (1 + replicas)):
                node = RedisServer(binary)
                node.extra = [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(node._dir.name, "nodes.conf"),
                    "--cluster-port", str(free_port()),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    *extra,
                ]
                node.start()
                self.nodes.append(node)
            cli = shutil.which("redis-cli") or os.path.join(os.path.dirname(binary), "redis-cli")
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            )
            deadline = time.monotonic() + timeout
            want = masters * replicas
            while not all(self._ok(n) for n in self.nodes) or self._replicating() < want:
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok in time")
                time.sleep(0.05)  # the nodes are gossiping
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        with contextlib.closing(node.client()) as client:
            return b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")

    def _replicating(self) -> int:
        """How many nodes are replicas with their link to their master up."""
        count = 0
        for node in self.nodes:
            with contextlib.closing(node.client()) as client:
                role = client.execute_command("ROLE")
            count += role[0] == b"slave" and role[3] == b"connected"
        return count

    def masters(self) -> list[RedisServer]:
        """The live nodes that are masters now (by their own ``ROLE``).

        A stopped node is not asked: redis-py 8 retries a refused connect
        for about 4 s, which made one look outlast a whole promotion (the
        bench's failover loop then never ran its revocations)."""
        found = []
        for node in self.nodes:
            if node._proc is None:
                continue
            try:
                with contextlib.closing(node.client()) as client:
                    if client.execute_command("ROLE")[0] == b"master":
                        found.append(node)
            except redis.RedisError:
                continue  # down
        return found

    def healthy(self) -> bool:
        """Whether every live node says ``cluster_state:ok``."""
        live = [n for n in self.nodes if n._proc is not None]
        try:
            return all(self._ok(n) for n in live)
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def client(self) -> Any:
        """A blocking cluster client, for the tests' own looks."""
        import redis.cluster

        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.nodes[0].port,
                                          socket_timeout=2)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelTopology:
    """A primary, ``replicas`` replicas of it, and ``sentinels`` Sentinels
    (quorum: a majority) watching them as service ``svc``."""

    def __init__(self, binary: str, replicas: int = 1, sentinels: int = 3,
                 down_after_ms: int = 800) -> None:
        self.primary = RedisServer(binary)
        self.replicas = [RedisServer(binary) for _ in range(replicas)]
        self.sentinels: list[tuple[int, subprocess.Popen[bytes]]] = []
        self._dir = tempfile.TemporaryDirectory(prefix="lwa-sentinel-")
        try:
            self.primary.start()
            for replica in self.replicas:
                replica.start()
                with contextlib.closing(replica.client()) as client:
                    client.replicaof("127.0.0.1", self.primary.port)
            quorum = sentinels // 2 + 1
            for index in range(sentinels):
                port = free_port()
                conf = os.path.join(self._dir.name, f"sentinel-{index}.conf")
                with open(conf, "w") as handle:
                    handle.write(
                        f"port {port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                        f"sentinel monitor svc 127.0.0.1 {self.primary.port} {quorum}\n"
                        f"sentinel down-after-milliseconds svc {down_after_ms}\n"
                        "sentinel failover-timeout svc 4000\n"
                    )
                proc = subprocess.Popen([binary, conf, "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.sentinels.append((port, proc))
            wait_for(lambda: self.primary_port() == self.primary.port, 30)
            wait_for(self._all_known, 30)
        except BaseException:
            self.close()
            raise

    def _ask(self, port: int, *command: str) -> Any:
        with contextlib.closing(redis.Redis(host="127.0.0.1", port=port,
                                            socket_timeout=2)) as client:
            return client.execute_command(*command)

    def primary_port(self) -> int | None:
        """The primary's port, as the first Sentinel says."""
        try:
            found = self._ask(self.sentinels[0][0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "svc")
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def _all_known(self) -> bool:
        """Every Sentinel knows every replica and the other Sentinels."""
        try:
            for port, _ in self.sentinels:
                if len(self._ask(port, "SENTINEL", "REPLICAS", "svc")) < len(self.replicas):
                    return False
                if len(self._ask(port, "SENTINEL", "SENTINELS", "svc")) < len(self.sentinels) - 1:
                    return False
        except redis.RedisError:
            return False
        return True

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port, _ in self.sentinels)
        return f"redis+sentinel://{nodes}/svc/0"

    def close(self) -> None:
        for _, proc in self.sentinels:
            proc.kill()
            proc.wait(timeout=10)
        for server in (self.primary, *self.replicas):
            server.close()
        self._dir.cleanup()


class BlackHole:
    """A TCP server that accepts connections and never answers, like a
    Redis behind a dead firewall rule that still completes handshakes."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)  # hold it open; never read, never write

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        for conn in self._held:
            conn.close()


#: A tiny ASGI app module for worker processes: two copies of the middleware,
#: ``/r/...`` with Redis and ``/n/...`` without, over one echo app, so one set
#: of processes measures both. Configured through the environment.
WORKER_APP = '''
import json, os
from lwa_middleware import LWAMiddleware, get_identity

async def echo(scope, receive, send):
    identity = get_identity(scope)
    body = json.dumps({"user_id": identity.user_id if identity else None,
                       "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

common = dict(client_id=os.environ["W_CLIENT_ID"], api_base_url=os.environ["W_API"],
              default="required")
if os.environ.get("W_NO_LEASE"):
    # The engine's module: the resolver builds its cache from there.
    import lwa_middleware._engine.shared_cache as sc
    class NoLease(sc.AsyncSharedCache):
        def __init__(self, settings, **options):
            super().__init__(settings, **dict(options, lease=False))
    sc.AsyncSharedCache = NoLease
with_redis = LWAMiddleware(echo, redis_url=os.environ["W_REDIS"],
                           redis_timeout=float(os.environ.get("W_REDIS_TIMEOUT", "0.05")),
                           **common)
without = LWAMiddleware(echo, **common)

async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/ready":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] == "http" and scope["path"] == "/stats":
        shared = with_redis.resolver._async_shared
        data = dict(with_redis.stats.snapshot(), pid=os.getpid())
        if shared is not None:
            data.update(redis_errors=shared.errors, redis_skipped=shared.skipped,
                        lease_waits=shared.waits)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(data).encode()})
        return
    if scope["type"] == "http" and scope["path"].startswith("/r/"):
        await with_redis(scope, receive, send)
    else:
        await without(scope, receive, send)
'''


class Workers:
    """``count`` separate uvicorn processes serving :data:`WORKER_APP`."""

    def __init__(self, directory: str, count: int, env: dict[str, str]) -> None:
        import lwa_middleware

        with open(os.path.join(directory, "lwa_worker_app.py"), "w") as handle:
            handle.write(WORKER_APP)
        root = os.path.dirname(os.path.dirname(os.path.abspath(lwa_middleware.__file__)))
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (directory, root, os.environ.get("PYTHONPATH", "")) if p
        )
        # Each worker gets a socket bound and listening here, handed over
        # with uvicorn's --fd: no port is ever free for someone else to take.
        socks = [listening_socket() for _ in range(count)]
        self.ports = [int(sock.getsockname()[1]) for sock in socks]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn",
                    "lwa_worker_app:app", "--fd", str(sock.fileno()),
                    "--log-level", "warning", "--no-access-log", "--lifespan", "off",
                ],
                env=full_env,
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(sock.fileno(),),
            )
            for sock in socks
        ]
        for sock in socks:
            sock.close()  # the worker holds its own copy

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def wait_ready(self, timeout: float = 30.0) -> None:
        import httpx2

        deadline = time.monotonic() + timeout
        pending = set(self.urls)
        while pending:
            for proc in self.procs:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"a worker exited: {err[-2000:]}")
            for url in list(pending):
                try:
                    if httpx2.get(url + "/ready", timeout=1).status_code == 200:
                        pending.discard(url)
                except httpx2.HTTPError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start in time")
                time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stderr:
                proc.stderr.close()
