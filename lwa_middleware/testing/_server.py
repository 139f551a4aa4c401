"""The loopback HTTP/1.1 server: threads, connections and request plumbing.

:class:`_Server` is a threading ``http.server`` that never does a reverse
DNS lookup and never logs a request line.  :class:`_Handler` reads each
request, records and counts it, waits out latency, carries out the
connection faults (``RESET``, ``HANG``, ``SLOW_DRIP``) and routes the rest
to :mod:`._api` and :mod:`._signin`.  Connections are tracked so that
``stop()`` and ``Fault.DOWN`` can cut them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from lwa_middleware._engine._observe import fields
from lwa_middleware.testing._api import _mint, _profile, _tokeninfo
from lwa_middleware.testing._faults import _DRIP_INTERVAL, Fault, _Injection, _transport_fault
from lwa_middleware.testing._sdk import _sdk_popup, _sdk_relay, _sdk_script
from lwa_middleware.testing._signin import _authorize, _token
from lwa_middleware.testing._state import RecordedRequest, _State
from lwa_middleware.testing._wire import _ROUTES, _error, _redact_target, _Response

# The name it had before the emulator became a package, so logging
# configuration written for it keeps working.
_log = logging.getLogger("lwa_middleware.testing.emulator")

_MAX_REQUEST_BODY: Final = 1024 * 1024
_HANDSHAKE_TIMEOUT: Final = 10.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], state: _State, tls: ssl.SSLContext | None = None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        self.tls = tls
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the connection's own thread, so a slow
        # or failing client never holds up accept().
        request.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            request.close()
            return  # a client that refused our certificate, or went away
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can stall for seconds and must not leave the machine.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exception()
        if isinstance(exc, OSError):
            return
        # Only the type: a message or traceback could quote a token.
        _log.error(
            "LWA emulator: unexpected %s in a handler",
            type(exc).__name__,
            extra=fields("emulator_error", reason=type(exc).__name__),
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A bland Server header: nothing should depend on the emulator's stack.
    server_version = "Server"
    sys_version = ""
    disable_nagle_algorithm = True
    # Idle keep-alive connections are dropped eventually, like any real server.
    timeout = 60.0
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt: str, *args: Any) -> None:
        # The default writes every request line to stderr, and request lines
        # can carry ?access_token=...
        return

    def handle(self) -> None:
        state = self.server.state
        if not state.track(self.server, self.connection):
            self.close_connection = True
            return
        try:
            super().handle()
        except OSError:
            # The peer went away, or stop()/DOWN shut the socket under us.
            self.close_connection = True
        finally:
            state.untrack(self.connection)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- plumbing ------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(_error(411, "invalid_request", "Chunked request bodies are not supported."))
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_REQUEST_BODY:
            # The body cannot be skipped reliably, so the connection is done.
            self.close_connection = True
            self._send(_error(400, "invalid_request", "Bad Content-Length."))
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _send(self, response: _Response, *, drip: threading.Event | None = None) -> None:
        self.send_response(response.status)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        # "Obtain Customer Profile Information": every answer carries its
        # request id, and en-US is the only language.
        self.send_header("x-amzn-RequestId", response.request_id)
        self.send_header("Content-Language", "en-US")
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if drip is None:
            self.wfile.write(response.body)
            return
        for index in range(len(response.body)):
            if drip.wait(_DRIP_INTERVAL):
                # Released (clear_faults/reset/stop): finish at once.
                self.wfile.write(response.body[index:])
                return
            self.wfile.write(response.body[index : index + 1])

    def _reset(self) -> None:
        # Linger on with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
        # The descriptor is only released once the buffered reader lets go.
        self.rfile.close()

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        state = self.server.state
        split = urlsplit(self.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        route = _ROUTES.get(split.path.lower())
        endpoint = route[0] if route else "unknown"
        record = RecordedRequest(
            method=self.command,
            target=_redact_target(self.path),
            endpoint=endpoint,
            header_names=tuple(name.lower() for name in self.headers),
        )
        plan = state.begin(self.server, record, any(k == "access_token" for k, _ in query))
        if plan.stale:
            self.close_connection = True
            return
        if plan.latency > 0:
            plan.release.wait(plan.latency)

        fault = plan.fault
        if fault is not None and self._transport_failed(fault, plan.release, endpoint):
            return

        if route is None:
            self._send(_error(404, "NotFound", "The requested resource does not exist."))
            return
        if self.command not in route[1]:
            allow = ", ".join(sorted(route[1]))
            self._send(_error(405, "MethodNotAllowed", "Method not allowed.", ("Allow", allow)))
            return

        kind = fault.kind if fault is not None else None
        response = self._answer(endpoint, query, body, kind)
        self._send(response, drip=plan.release if kind is Fault.SLOW_DRIP else None)

    def _transport_failed(
        self, fault: _Injection, release: threading.Event, endpoint: str
    ) -> bool:
        """Act out ``fault`` if it fails the transport (a reset, a hang, a
        canned transport answer); whether it did, and the request is over."""
        if fault.kind is Fault.RESET:
            self._reset()
            return True
        if fault.kind is Fault.HANG:
            release.wait()
            self.close_connection = True
            return True
        transport = _transport_fault(fault, endpoint)
        if transport is not None:
            self._send(transport)
            return True
        return False

    def _answer(
        self, endpoint: str, query: list[tuple[str, str]], body: bytes, kind: Fault | None
    ) -> _Response:
        """The answer of ``endpoint`` (a known route, its method allowed)."""
        state = self.server.state
        match endpoint:
            case "tokeninfo":
                return _tokeninfo(state, self.headers, query, kind)
            case "profile":
                return _profile(state, self.headers, query, kind)
            case "mint":
                return _mint(state, body)
            case "authorize":
                return _authorize(state, self.command, query, body)
            case "sdk":
                return _sdk_script()
            case "sdk_relay":
                return _sdk_relay(state, query)
            case "sdk_popup":
                return _sdk_popup(state, query)
            case _:
                return _token(state, self.command, self.headers, body, kind)
