"""A local, faithful emulator of the Login with Amazon (LWA) HTTP endpoints.

The emulator is a real HTTP/1.1 server bound to loopback.  It answers the
two calls a resource server makes (``GET /auth/o2/tokeninfo`` and
``GET /user/profile``) the way Amazon does, and can be told to misbehave in
all the ways a remote service misbehaves: errors, throttling, garbage,
resets, hangs, slow bodies or not listening at all.  It also implements the
browser-facing authorize page and the authorization code exchange so that a
demo app can be clicked through without an Amazon account.

Example::

    with LWAEmulator() as lwa:
        token = lwa.issue_token(scopes=["profile", "postal_code"])
        info = httpx.get(
            lwa.tokeninfo_url, headers={"x-amz-access-token": token}
        ).json()
        assert info["aud"] == lwa.client_id
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import dataclasses
import enum
import hashlib
import html
import json
import logging
import math
import secrets
import socket
import socketserver
import string
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit

__all__ = [
    "BUILTIN_CUSTOMERS",
    "Customer",
    "Fault",
    "LWAEmulator",
    "RecordedRequest",
]

_log = logging.getLogger(__name__)

TOKENINFO_PATH: Final = "/auth/o2/tokeninfo"
PROFILE_PATH: Final = "/user/profile"
MINT_PATH: Final = "/_emulator/tokens"
AUTHORIZE_PATH: Final = "/ap/oa"
TOKEN_PATH: Final = "/auth/o2/token"

#: Endpoint names used by :attr:`LWAEmulator.calls`, faults and latency.
ENDPOINTS: Final = ("tokeninfo", "profile")

# Route name and the methods the route answers.  Paths are matched
# case-insensitively because Amazon's are (``/auth/O2/tokeninfo`` works).
_ROUTES: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    TOKENINFO_PATH: ("tokeninfo", frozenset({"GET"})),
    PROFILE_PATH: ("profile", frozenset({"GET"})),
    MINT_PATH: ("mint", frozenset({"POST"})),
    AUTHORIZE_PATH: ("authorize", frozenset({"GET", "POST"})),
    TOKEN_PATH: ("token", frozenset({"POST"})),
}

_JSON_TYPE: Final = "application/json;charset=UTF-8"
_HTML_TYPE: Final = "text/html;charset=UTF-8"
_ISSUER: Final = "https://www.amazon.com"
_PROFILE_SCOPES: Final = ("profile", "profile:user_id", "postal_code")
_ACCESS_TOKEN_TTL: Final = 3600
_CODE_TTL: Final = 300.0
_DRIP_INTERVAL: Final = 0.2
_OVERSIZED_BYTES: Final = 4 * 1024 * 1024
_MAX_REQUEST_BODY: Final = 1024 * 1024
_TOKEN_ALPHABET_UPPER: Final = string.ascii_uppercase + string.digits

_INVALID_TOKEN: Final = {
    "error": "invalid_token",
    "error_description": "The request has an invalid parameter : access_token",
}
_MISSING_TOKEN: Final = {
    "error": "invalid_request",
    "error_description": "The request is missing a required parameter : access_token",
}
_INSUFFICIENT_SCOPE: Final = {
    "error": "insufficient_scope",
    "error_description": (
        "The access token provided does not have access to the requested resource."
    ),
}

# Set once and never cleared: handed to requests that arrive on a server that
# is shutting down, so nothing they do can block.
_ALWAYS_RELEASED: Final = threading.Event()
_ALWAYS_RELEASED.set()


class Fault(enum.StrEnum):
    """Ways the emulator can misbehave, for :meth:`LWAEmulator.inject`.

    ``SERVER_ERROR``
        ``500`` with ``{"error": "ServerError", ...}``.
    ``UNAVAILABLE``
        ``503`` with a ``Retry-After`` header.
    ``THROTTLED``
        ``429`` with ``{"error": "TooManyRequests", ...}`` and ``Retry-After``.
    ``BAD_JSON``
        ``200`` labelled JSON whose body does not parse.
    ``HTML``
        ``200`` with an HTML error page, as a captive portal or a
        misconfigured proxy answers.
    ``WRONG_TYPES``
        ``200`` JSON whose fields have the wrong types (``"aud": 123``,
        ``"exp": [1]``, ``"user_id": null``; profile ``"user_id": 5``).
    ``OVERSIZED``
        ``200`` valid JSON of about 4 MiB (padded with a long string).
    ``SLOW_DRIP``
        Headers at once, then the normal body one byte every 0.2 s.
    ``RESET``
        The connection is reset (``RST``) without any response.
    ``HANG``
        The request is read and never answered, until :meth:`~LWAEmulator.stop`,
        :meth:`~LWAEmulator.reset` or :meth:`~LWAEmulator.clear_faults`.
    ``LEGACY_PROFILE``
        Profile only: the old ``{"Profile": {"CustomerId": ...}}`` shape.
    ``EXP_STRING``
        Tokeninfo only: ``exp`` and ``iat`` as strings (``"exp": "3599"``).
    ``USER_ID_MISMATCH``
        Profile only: a ``user_id`` other than the one tokeninfo reports.
    ``DOWN``
        Nothing listens: connections are refused until
        :meth:`~LWAEmulator.clear_faults` or :meth:`~LWAEmulator.reset`
        reopens the same port.
    """

    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    BAD_JSON = "bad_json"
    HTML = "html"
    WRONG_TYPES = "wrong_types"
    OVERSIZED = "oversized"
    SLOW_DRIP = "slow_drip"
    RESET = "reset"
    HANG = "hang"
    LEGACY_PROFILE = "legacy_profile"
    EXP_STRING = "exp_string"
    USER_ID_MISMATCH = "user_id_mismatch"
    DOWN = "down"


# Faults that only make sense for one endpoint.  Injecting them "everywhere"
# targets that endpoint alone, so a ``times`` budget is not eaten by the other.
_FAULT_ENDPOINTS: Final[Mapping[Fault, tuple[str, ...]]] = {
    Fault.LEGACY_PROFILE: ("profile",),
    Fault.USER_ID_MISMATCH: ("profile",),
    Fault.EXP_STRING: ("tokeninfo",),
}

# Faults describing a healthy server that answers in another format: they
# only change successful answers, an invalid token is still rejected.
_FORMAT_FAULTS: Final = frozenset({Fault.LEGACY_PROFILE, Fault.EXP_STRING, Fault.USER_ID_MISMATCH})


@dataclasses.dataclass(frozen=True, slots=True)
class Customer:
    """An Amazon customer as LWA exposes it through the profile endpoint.

    :param user_id: ``amzn1.account.`` followed by 26 upper-case letters and
        digits; stable across logins and apps.
    :param name: the customer's name (``profile`` scope).
    :param email: the customer's email address (``profile`` scope).
    :param postal_code: the customer's postal code (``postal_code`` scope).

    Example::

        ada = Customer("amzn1.account.AFADALOVELACE0000000000001",
                       "Ada Lovelace", "ada@example.com", "SW1A 1AA")
        token = lwa.issue_token(customer=ada)
    """

    user_id: str
    name: str
    email: str
    postal_code: str


#: The test customers offered on the emulated authorize page.
BUILTIN_CUSTOMERS: Final[tuple[Customer, ...]] = (
    Customer(
        "amzn1.account.AFADALOVELACE0000000000001",
        "Ada Lovelace",
        "ada.lovelace@example.com",
        "SW1A 1AA",
    ),
    Customer(
        "amzn1.account.AFGRACEHOPPER0000000000002",
        "Grace Hopper",
        "grace.hopper@example.com",
        "10027",
    ),
    Customer(
        "amzn1.account.AFALANTURING00000000000003",
        "Alan Turing",
        "alan.turing@example.com",
        "M13 9PL",
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the emulator received, as kept in :attr:`LWAEmulator.requests`.

    Header *values* are deliberately not kept: they carry tokens.  For the
    same reason the value of an ``access_token`` query parameter is replaced
    by ``<redacted>`` in :attr:`target` (the parameter name stays, so a test
    can still see that a token travelled in the URL).

    :param method: the HTTP method, e.g. ``"GET"``.
    :param target: the request-target (path and query) with token values
        redacted.
    :param endpoint: ``"tokeninfo"``, ``"profile"``, ``"mint"``,
        ``"authorize"``, ``"token"`` or ``"unknown"``.
    :param header_names: the request's header names, lower-cased, in order.
    """

    method: str
    target: str
    endpoint: str
    header_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class _Grant:
    """What an access token stands for.  Never holds the token itself."""

    customer: Customer
    scopes: tuple[str, ...]
    aud: str
    issued_at: float
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingCode:
    customer: Customer
    scopes: tuple[str, ...]
    client_id: str
    redirect_uri: str
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Injection:
    kind: Fault
    retry_after: int


class _FaultSchedule:
    """Faults pending at one endpoint.

    Counted faults (``times=N``) are served first, in injection order; the
    standing fault (``times=None``) applies whenever none is pending.
    """

    __slots__ = ("queued", "standing")

    def __init__(self) -> None:
        self.standing: _Injection | None = None
        self.queued: collections.deque[tuple[_Injection, int]] = collections.deque()

    def take(self) -> _Injection | None:
        if not self.queued:
            return self.standing
        injection, left = self.queued[0]
        if left <= 1:
            self.queued.popleft()
        else:
            self.queued[0] = (injection, left - 1)
        return injection


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How to treat one request, decided under the lock and acted on outside it."""

    stale: bool
    fault: _Injection | None
    latency: float
    release: threading.Event


class _State:
    """Everything the handler threads share, behind one lock.

    Kept apart from :class:`LWAEmulator` so the handler never reaches into
    the public object's private members.
    """

    def __init__(self, client_id: str) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.client_id = client_id
        self.tokens: dict[str, _Grant] = {}
        self.revoked: set[str] = set()
        self.codes: dict[str, _PendingCode] = {}
        self.refresh_tokens: dict[str, tuple[Customer, tuple[str, ...], str]] = {}
        self.faults: dict[str, _FaultSchedule] = {e: _FaultSchedule() for e in ENDPOINTS}
        self.latency: dict[str, float] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.requests: list[RecordedRequest] = []
        self.token_in_url = 0
        self.release = threading.Event()
        self.open_sockets: set[socket.socket] = set()
        self.server: _Server | None = None

    # -- connection tracking -------------------------------------------------

    def track(self, server: _Server, conn: socket.socket) -> bool:
        with self.lock:
            if server is not self.server:
                return False
            self.connections += 1
            self.open_sockets.add(conn)
            return True

    def untrack(self, conn: socket.socket) -> None:
        with self.lock:
            self.open_sockets.discard(conn)

    def drop_connections(self) -> None:
        with self.lock:
            sockets = list(self.open_sockets)
        for conn in sockets:
            # shutdown, not close: the handler thread owns the descriptor and
            # closing it under the thread could hit a reused file number.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def release_waiters(self) -> None:
        with self.lock:
            released, self.release = self.release, threading.Event()
        released.set()

    # -- per request ---------------------------------------------------------

    def begin(
        self,
        server: _Server,
        record: RecordedRequest,
        token_in_url: bool,
    ) -> _Plan:
        with self.changed:
            if server is not self.server:
                return _Plan(True, None, 0.0, _ALWAYS_RELEASED)
            self.requests.append(record)
            if token_in_url:
                self.token_in_url += 1
            fault: _Injection | None = None
            latency = 0.0
            if record.endpoint in ENDPOINTS:
                self.calls[record.endpoint] += 1
                fault = self.faults[record.endpoint].take()
                latency = self.latency.get(record.endpoint, 0.0)
                self.changed.notify_all()
            return _Plan(False, fault, latency, self.release)

    # -- tokens --------------------------------------------------------------

    def add_token(self, grant: _Grant) -> str:
        token = _new_secret("Atza|")
        with self.lock:
            self.tokens[token] = grant
        return token

    def grant_for(self, token: str | None) -> _Grant | None:
        """The grant of a live token, or ``None`` if unknown, revoked or expired."""
        if not token:
            return None
        with self.lock:
            grant = self.tokens.get(token)
            if grant is None or token in self.revoked:
                return None
        if time.time() >= grant.expires_at:
            return None
        return grant


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        super().__init__(address, _Handler)

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
        _log.error("LWA emulator: unexpected %s in a handler", type(exc).__name__)


@dataclasses.dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = _JSON_TYPE
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _json_body(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _json(status: int, payload: object, *headers: tuple[str, str]) -> _Response:
    return _Response(status, _json_body(payload), _JSON_TYPE, list(headers))


def _error(status: int, error: str, description: str, *headers: tuple[str, str]) -> _Response:
    return _json(status, {"error": error, "error_description": description}, *headers)


_NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


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
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
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
        if fault is not None:
            if fault.kind is Fault.RESET:
                self._reset()
                return
            if fault.kind is Fault.HANG:
                plan.release.wait()
                self.close_connection = True
                return
            transport = _transport_fault(fault)
            if transport is not None:
                self._send(transport)
                return

        if route is None:
            self._send(_error(404, "NotFound", "The requested resource does not exist."))
            return
        if self.command not in route[1]:
            allow = ", ".join(sorted(route[1]))
            self._send(_error(405, "MethodNotAllowed", "Method not allowed.", ("Allow", allow)))
            return

        kind = fault.kind if fault is not None else None
        match endpoint:
            case "tokeninfo":
                response = self._tokeninfo(query, kind)
            case "profile":
                response = self._profile(query, kind)
            case "mint":
                response = self._mint(body)
            case "authorize":
                response = self._authorize(query, body)
            case _:
                response = self._token(body)
        self._send(response, drip=plan.release if kind is Fault.SLOW_DRIP else None)

    # -- LWA API -------------------------------------------------------------

    def _tokeninfo(self, query: list[tuple[str, str]], kind: Fault | None) -> _Response:
        state = self.server.state
        token = self.headers.get("x-amz-access-token") or _first(query, "access_token")
        grant = state.grant_for(token)
        if kind in (Fault.BAD_JSON, Fault.WRONG_TYPES, Fault.OVERSIZED):
            return _broken_answer("tokeninfo", kind, grant, state.client_id)
        if not token:
            return _json(400, _MISSING_TOKEN)
        if grant is None:
            return _json(400, _INVALID_TOKEN)
        info = _tokeninfo_payload(grant)
        if kind is Fault.EXP_STRING:
            info["exp"] = str(info["exp"])
            info["iat"] = str(info["iat"])
        return _json(200, info)

    def _profile(self, query: list[tuple[str, str]], kind: Fault | None) -> _Response:
        state = self.server.state
        token = (
            _bearer(self.headers.get("Authorization"))
            or self.headers.get("x-amz-access-token")
            or _first(query, "access_token")
        )
        grant = state.grant_for(token)
        if kind in (Fault.BAD_JSON, Fault.WRONG_TYPES, Fault.OVERSIZED):
            return _broken_answer("profile", kind, grant, state.client_id)
        if not token:
            return _json(400, _MISSING_TOKEN)
        if grant is None:
            challenge = ("WWW-Authenticate", 'Bearer error="invalid_token"')
            return _json(401, _INVALID_TOKEN, challenge)
        if not set(grant.scopes) & set(_PROFILE_SCOPES):
            challenge = ("WWW-Authenticate", 'Bearer error="insufficient_scope"')
            return _json(401, _INSUFFICIENT_SCOPE, challenge)
        customer = grant.customer
        if kind is Fault.USER_ID_MISMATCH:
            customer = dataclasses.replace(customer, user_id=_new_user_id())
        if kind is Fault.LEGACY_PROFILE:
            return _json(200, {"Profile": _legacy_profile_payload(customer, grant.scopes)})
        return _json(200, _profile_payload(customer, grant.scopes))

    # -- emulator extras -----------------------------------------------------

    def _mint(self, body: bytes) -> _Response:
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "invalid_request", "The body is not valid JSON.")
        if not isinstance(spec, dict):
            return _error(400, "invalid_request", "The body must be a JSON object.")
        try:
            grant = _grant_from_spec(spec, self.server.state.client_id)
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        token = self.server.state.add_token(grant)
        lifetime = grant.expires_at - grant.issued_at
        return _json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": _number(lifetime),
                "scope": " ".join(grant.scopes),
            },
            *_NO_STORE,
        )

    def _authorize(self, query: list[tuple[str, str]], body: bytes) -> _Response:
        if self.command == "GET":
            return _authorize_page(query)
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return _authorize_submit(self.server.state, form)

    def _token(self, body: bytes) -> _Response:
        state = self.server.state
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        client_id = _first(form, "client_id") or _basic_user(self.headers.get("Authorization"))
        grant_type = _first(form, "grant_type")
        if not grant_type:
            return _missing("grant_type")
        if not client_id:
            return _missing("client_id")
        now = time.time()
        if grant_type == "authorization_code":
            code = _first(form, "code")
            if not code:
                return _missing("code")
            with state.lock:
                pending = state.codes.pop(code, None)
            if (
                pending is None
                or pending.expires_at <= now
                or pending.client_id != client_id
                or pending.redirect_uri != _first(form, "redirect_uri")
            ):
                return _error(
                    400, "invalid_grant", "The authorization code is invalid or has expired."
                )
            customer, scopes = pending.customer, pending.scopes
            refresh = _new_secret("Atzr|")
            with state.lock:
                state.refresh_tokens[refresh] = (customer, scopes, client_id)
        elif grant_type == "refresh_token":
            refresh = _first(form, "refresh_token") or ""
            if not refresh:
                return _missing("refresh_token")
            with state.lock:
                known = state.refresh_tokens.get(refresh)
            if known is None or known[2] != client_id:
                return _error(400, "invalid_grant", "The refresh token is invalid.")
            customer, scopes, _ = known
        else:
            return _error(
                400, "unsupported_grant_type", "The authorization grant type is not supported."
            )
        grant = _Grant(customer, scopes, client_id, now, now + _ACCESS_TOKEN_TTL)
        return _json(
            200,
            {
                "access_token": state.add_token(grant),
                "refresh_token": refresh,
                "token_type": "bearer",
                "expires_in": _ACCESS_TOKEN_TTL,
            },
            *_NO_STORE,
        )


# -- payloads ------------------------------------------------------------------


def _app_id(aud: str) -> str:
    # Stable per client id, like Amazon's application id is.
    return "amzn1.application." + hashlib.sha256(aud.encode()).hexdigest()[:32]


def _tokeninfo_payload(grant: _Grant) -> dict[str, object]:
    remaining = max(0, math.floor(grant.expires_at - time.time()))
    return {
        "iss": _ISSUER,
        "user_id": grant.customer.user_id,
        "aud": grant.aud,
        "app_id": _app_id(grant.aud),
        "exp": remaining,
        "iat": int(grant.issued_at),
    }


def _profile_payload(customer: Customer, scopes: Sequence[str]) -> dict[str, object]:
    payload: dict[str, object] = {"user_id": customer.user_id}
    if "profile" in scopes:
        payload["name"] = customer.name
        payload["email"] = customer.email
    if "postal_code" in scopes:
        payload["postal_code"] = customer.postal_code
    return payload


def _legacy_profile_payload(customer: Customer, scopes: Sequence[str]) -> dict[str, object]:
    payload: dict[str, object] = {"CustomerId": customer.user_id}
    if "profile" in scopes:
        payload["Name"] = customer.name
        payload["PrimaryEmail"] = customer.email
    if "postal_code" in scopes:
        payload["PostalCode"] = customer.postal_code
    return payload


def _broken_answer(
    endpoint: str, kind: Fault | None, grant: _Grant | None, client_id: str
) -> _Response:
    """A ``200`` whose body is unusable, whatever token was sent."""
    if grant is None:
        now = time.time()
        grant = _Grant(BUILTIN_CUSTOMERS[0], ("profile",), client_id, now, now + 3600)
    if endpoint == "tokeninfo":
        payload = _tokeninfo_payload(grant)
    else:
        payload = _profile_payload(grant.customer, grant.scopes)
    if kind is Fault.BAD_JSON:
        # Cut mid-document: labelled JSON, valid UTF-8, yet unparseable.
        whole = _json_body(payload)
        return _Response(200, whole[: len(whole) // 2])
    if kind is Fault.WRONG_TYPES:
        if endpoint == "tokeninfo":
            payload.update(user_id=None, aud=123, app_id=["app"], exp=[1], iat="yesterday")
        else:
            payload.update(user_id=5, name=["Ada"], email=False, postal_code=98109)
        return _json(200, payload)
    payload["padding"] = "x" * _OVERSIZED_BYTES
    return _json(200, payload)


def _transport_fault(fault: _Injection) -> _Response | None:
    retry = ("Retry-After", str(fault.retry_after))
    match fault.kind:
        case Fault.SERVER_ERROR:
            return _error(500, "ServerError", "Internal Server Error")
        case Fault.UNAVAILABLE:
            return _error(503, "ServiceUnavailable", "Service Unavailable", retry)
        case Fault.THROTTLED:
            return _error(429, "TooManyRequests", "The request was throttled, slow down.", retry)
        case Fault.HTML:
            return _Response(200, _HTML_ERROR_PAGE, "text/html; charset=utf-8")
        case _:
            return None


_HTML_ERROR_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center>\n"
    b"<hr><center>proxy</center></body></html>\n"
)


def _grant_from_spec(spec: Mapping[str, object], default_aud: str) -> _Grant:
    """Validate a ``POST /_emulator/tokens`` body into a grant."""
    scopes_raw = spec.get("scopes", ("profile",))
    if isinstance(scopes_raw, str):
        scopes_raw = scopes_raw.split()
    if not isinstance(scopes_raw, list | tuple) or not all(isinstance(s, str) for s in scopes_raw):
        raise ValueError("scopes must be a list of strings")
    scopes = _normalize_scopes([str(s) for s in scopes_raw])
    aud = spec.get("aud", default_aud)
    if not isinstance(aud, str) or not aud:
        raise ValueError("aud must be a non-empty string")
    expires_in = spec.get("expires_in", _ACCESS_TOKEN_TTL)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise ValueError("expires_in must be a number")
    if not math.isfinite(expires_in):
        raise ValueError("expires_in must be finite")
    fields: dict[str, str] = {}
    for name in ("user_id", "name", "email", "postal_code"):
        value = spec.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            fields[name] = value
    customer = dataclasses.replace(_new_customer(), **fields)
    now = time.time()
    return _Grant(customer, scopes, aud, now, now + float(expires_in))


# -- authorize page ------------------------------------------------------------

_CSS: Final = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#0f1111;background:#eaeded}
main{width:100%;max-width:27rem;margin:2rem 1rem;padding:1.75rem 2rem;background:#fff;
border:1px solid #d5d9d9;border-radius:10px;box-shadow:0 2px 8px rgba(15,17,17,.08)}
.brand{display:flex;align-items:center;gap:.5rem;margin-bottom:1rem}
.logo{font-weight:700;font-size:1.35rem;letter-spacing:-.02em}
.logo span{color:#ff9900}
.badge{font-size:.7rem;text-transform:uppercase;letter-spacing:.08em;color:#565959;
border:1px solid #d5d9d9;border-radius:999px;padding:.1rem .5rem}
h1{font-size:1.3rem;font-weight:500;margin:0 0 .35rem}
.lead{margin:0 0 1.25rem;color:#565959;word-break:break-all}
fieldset{border:0;margin:0 0 1.1rem;padding:0}
legend{font-weight:700;margin-bottom:.45rem;padding:0}
.option{display:flex;gap:.65rem;align-items:flex-start;padding:.55rem .7rem;margin-bottom:.4rem;
border:1px solid #d5d9d9;border-radius:8px;cursor:pointer}
.option:hover{background:#f7fafa}
.option input{margin-top:.25rem}
.option small{display:block;color:#565959}
.actions{display:flex;gap:.6rem;margin-top:1.25rem}
button{flex:1;font:inherit;padding:.55rem 1rem;border-radius:999px;cursor:pointer;
border:1px solid #d5d9d9;background:#fff}
button.primary{background:#ffd814;border-color:#fcd200;font-weight:500}
button.primary:hover{background:#f7ca00}
button:focus-visible{outline:3px solid #007185;outline-offset:2px}
.note{margin:1.25rem 0 0;font-size:.8rem;color:#565959;text-align:center}
.error{color:#b12704}
"""

_SCOPE_LABELS: Final[Mapping[str, str]] = {
    "profile": "Your name and email address",
    "profile:user_id": "Your Amazon account identifier",
    "postal_code": "Your postal code",
}

_PAGE_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def _page(status: int, title: str, content: str) -> _Response:
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        '<div class="brand"><span class="logo">amazon<span>.</span></span>'
        '<span class="badge">emulator</span></div>\n'
        f"{content}\n</main>\n</body>\n</html>\n"
    )
    return _Response(status, document.encode(), _HTML_TYPE, list(_PAGE_HEADERS))


def _error_page(message: str) -> _Response:
    content = (
        "<h1>Login with Amazon (emulator)</h1>\n"
        f'<p class="error">{html.escape(message)}</p>\n'
        '<p class="note">Local test emulator: no real Amazon account is involved.</p>'
    )
    return _page(400, "Login with Amazon (emulator): error", content)


@dataclasses.dataclass(frozen=True, slots=True)
class _AuthorizeRequest:
    client_id: str
    response_type: str
    redirect_uri: str
    state: str


def _parse_authorize(params: list[tuple[str, str]]) -> _AuthorizeRequest | str:
    """The validated request, or the message of the page explaining why not."""
    client_id = _first(params, "client_id") or ""
    redirect_uri = _first(params, "redirect_uri") or ""
    response_type = _first(params, "response_type") or ""
    if not client_id:
        return "The request is missing a required parameter: client_id."
    if not _is_loopback_redirect(redirect_uri):
        # Never redirect to an address we cannot vouch for: an error page it is.
        return (
            "redirect_uri must be an http(s) URL on a loopback host "
            "(127.0.0.1, localhost or [::1]) without a fragment."
        )
    if response_type not in ("token", "code"):
        return "response_type must be token or code."
    return _AuthorizeRequest(client_id, response_type, redirect_uri, _first(params, "state") or "")


def _authorize_page(query: list[tuple[str, str]]) -> _Response:
    parsed = _parse_authorize(query)
    if isinstance(parsed, str):
        return _error_page(parsed)
    requested = (_first(query, "scope") or "").split()
    unknown = [s for s in requested if s not in _PROFILE_SCOPES]
    if not requested or unknown:
        return _error_page("scope must name one or more of: profile, profile:user_id, postal_code.")
    esc = html.escape
    customers = "\n".join(
        f'<label class="option"><input type="radio" name="customer" value="{i}"'
        f"{' checked' if i == 0 else ''}><span><strong>{esc(c.name)}</strong>"
        f"<small>{esc(c.email)} &middot; {esc(c.postal_code)}</small></span></label>"
        for i, c in enumerate(BUILTIN_CUSTOMERS)
    )
    scopes = "\n".join(
        f'<label class="option"><input type="checkbox" name="scope" value="{esc(s)}"'
        f"{' checked' if s in requested else ''}><span><strong>{esc(s)}</strong>"
        f"<small>{esc(_SCOPE_LABELS[s])}</small></span></label>"
        for s in _PROFILE_SCOPES
    )
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{esc(value)}">'
        for name, value in (
            ("client_id", parsed.client_id),
            ("response_type", parsed.response_type),
            ("redirect_uri", parsed.redirect_uri),
            ("state", parsed.state),
        )
    )
    content = f"""<h1>Login with Amazon (emulator)</h1>
<p class="lead">Sign in to <strong>{esc(parsed.client_id)}</strong> as a test customer.</p>
<form method="post" action="{AUTHORIZE_PATH}">
<fieldset><legend>Test customer</legend>
{customers}
</fieldset>
<fieldset><legend>Share with the app</legend>
{scopes}
</fieldset>
{hidden}
<div class="actions">
<button type="submit" name="action" value="allow" id="lwa-signin" class="primary">Sign in</button>
<button type="submit" name="action" value="deny" id="lwa-cancel">Cancel</button>
</div>
</form>
<p class="note">Local test emulator: no real Amazon account is involved.</p>"""
    return _page(200, "Login with Amazon (emulator)", content)


def _authorize_submit(state: _State, form: list[tuple[str, str]]) -> _Response:
    parsed = _parse_authorize(form)
    if isinstance(parsed, str):
        return _error_page(parsed)
    # OAuth 2.0: the implicit grant answers in the fragment, the code grant
    # in the query.
    in_fragment = parsed.response_type == "token"
    tail = [("state", parsed.state)] if parsed.state else []
    if _first(form, "action") == "deny":
        params = [("error", "access_denied"), ("error_description", "The user denied access.")]
        return _redirect(_redirect_target(parsed.redirect_uri, params + tail, in_fragment))
    # Browsers send one ``scope`` field per ticked box; scripted clients
    # often send the space separated list of the authorize URL instead.
    ticked = {s for name, value in form if name == "scope" for s in value.split()}
    scopes = tuple(s for s in _PROFILE_SCOPES if s in ticked)
    if not scopes:
        params = [("error", "invalid_scope"), ("error_description", "No scope was granted.")]
        return _redirect(_redirect_target(parsed.redirect_uri, params + tail, in_fragment))
    choice = _first(form, "customer") or "0"
    if not choice.isdigit() or int(choice) >= len(BUILTIN_CUSTOMERS):
        return _error_page("Choose one of the test customers.")
    customer = BUILTIN_CUSTOMERS[int(choice)]
    now = time.time()
    scope = " ".join(scopes)
    if parsed.response_type == "token":
        grant = _Grant(customer, scopes, parsed.client_id, now, now + _ACCESS_TOKEN_TTL)
        params = [
            ("access_token", state.add_token(grant)),
            ("token_type", "bearer"),
            ("expires_in", str(_ACCESS_TOKEN_TTL)),
            ("scope", scope),
        ]
    else:
        code = _new_code()
        pending = _PendingCode(
            customer, scopes, parsed.client_id, parsed.redirect_uri, now + _CODE_TTL
        )
        with state.lock:
            state.codes[code] = pending
        params = [("code", code), ("scope", scope)]
    return _redirect(_redirect_target(parsed.redirect_uri, params + tail, in_fragment))


def _redirect(location: str) -> _Response:
    return _Response(302, b"", None, [("Location", location), ("Cache-Control", "no-store")])


def _redirect_target(redirect_uri: str, params: list[tuple[str, str]], in_fragment: bool) -> str:
    encoded = urlencode(params, quote_via=quote)
    if in_fragment:
        return f"{redirect_uri}#{encoded}"
    separator = "&" if "?" in redirect_uri else "?"
    if redirect_uri.endswith(("?", "&")):
        separator = ""
    return f"{redirect_uri}{separator}{encoded}"


def _is_loopback_redirect(uri: str) -> bool:
    if not uri or any(ch <= " " or ch in "\\\x7f" for ch in uri):
        return False
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
        and parts.username is None
        and parts.password is None
        and not parts.fragment
        and "#" not in uri
    )


# -- small helpers -------------------------------------------------------------


def _first(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    for name, value in pairs:
        if name == key:
            return value
    return None


def _missing(parameter: str) -> _Response:
    return _error(
        400,
        "invalid_request",
        f"The request is missing a required parameter : {parameter}",
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _basic_user(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def _redact_target(target: str) -> str:
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        # Decoded, so access%5Ftoken=... (which parse_qsl accepts) is caught too.
        secret = unquote_plus(name) == "access_token" and eq
        parts.append(f"{name}=<redacted>" if secret else item)
    return f"{path}?{'&'.join(parts)}"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _random_upper(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET_UPPER) for _ in range(length))


def _new_user_id() -> str:
    return "amzn1.account." + _random_upper(26)


def _new_customer() -> Customer:
    user_id = _new_user_id()
    tag = user_id[-6:]
    return Customer(
        user_id=user_id,
        name=f"Test Customer {tag}",
        email=f"test.customer.{tag.lower()}@example.com",
        postal_code=f"{secrets.randbelow(100000):05d}",
    )


def _new_secret(prefix: str) -> str:
    # Amazon documents access tokens as 350+ characters, at most 2048 bytes;
    # a random length keeps callers from depending on an exact size.
    length = 380 + secrets.randbelow(121)
    return prefix + secrets.token_urlsafe(length)[: length - len(prefix)]


def _new_code() -> str:
    return secrets.token_urlsafe(15)


def _normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    seen: dict[str, None] = {}
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(ch.isspace() for ch in scope):
            raise ValueError(f"invalid scope name: {scope!r}")
        seen[scope] = None
    return tuple(seen)


def _check_endpoint(endpoint: str | None) -> tuple[str, ...]:
    if endpoint is None:
        return ENDPOINTS
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS} or None, not {endpoint!r}")
    return (endpoint,)


def _coerce_fault(kind: Fault | str) -> Fault:
    if isinstance(kind, Fault):
        return kind
    try:
        return Fault(kind)
    except ValueError:
        pass
    try:
        return Fault[kind.upper()]
    except KeyError:
        raise ValueError(f"unknown fault: {kind!r}") from None


# -- the public object ---------------------------------------------------------


class LWAEmulator:
    """A Login with Amazon server on loopback, for tests and demos.

    It serves, on ``base_url``:

    - ``GET /auth/o2/tokeninfo`` and ``GET /user/profile``, answering like
      ``api.amazon.com`` (token in ``x-amz-access-token``, ``Authorization:
      Bearer`` or, as Amazon still allows, ``?access_token=``);
    - ``POST /_emulator/tokens``, which mints a token from a JSON body, for
      tests written in other languages;
    - ``GET``/``POST /ap/oa`` (a sign-in page listing three test customers)
      and ``POST /auth/o2/token`` (code and refresh token exchange), so a
      browser demo works end to end.

    Every request is counted and recorded (without header values or token
    values), and faults and latency can be injected per endpoint.  The
    server runs in daemon threads; nothing it does is logged or printed, and
    its ``repr`` never shows a token.

    :param client_id: the ``aud`` of tokens issued without an explicit one.
    :param host: the loopback address to bind, ``127.0.0.1`` by default
        (``::1`` works too).
    :param port: the port to bind; ``0`` picks a free one.  Once bound, the
        port is kept across :meth:`stop`/:meth:`start` and :attr:`Fault.DOWN`.

    Example::

        with LWAEmulator(client_id="amzn1.application-oa2-client.demo") as lwa:
            token = lwa.issue_token(scopes=["profile:user_id"])
            lwa.inject(Fault.SERVER_ERROR, endpoint="tokeninfo", times=1)
            app = make_app(api_base_url=lwa.base_url)
            ...
            assert lwa.calls["tokeninfo"] == 2
    """

    def __init__(
        self,
        *,
        client_id: str = "amzn1.application-oa2-client.emulator",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not client_id:
            raise ValueError("client_id must not be empty")
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        self.client_id = client_id
        self._host = host
        self._port = port
        self._bound = False
        self._state = _State(client_id)
        # Serialises start/stop/DOWN; distinct from the state lock so that
        # joining threads never happens while a handler could need the state.
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash).

        Valid once :meth:`start` has bound the port; stays the same across
        :meth:`stop`/:meth:`start` and :attr:`Fault.DOWN`.
        """
        if not self._bound:
            raise RuntimeError("the emulator has not been started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound TCP port (``0`` before the first :meth:`start`)."""
        return self._port

    @property
    def tokeninfo_url(self) -> str:
        """The full URL of the tokeninfo endpoint."""
        return self.base_url + TOKENINFO_PATH

    @property
    def profile_url(self) -> str:
        """The full URL of the profile endpoint."""
        return self.base_url + PROFILE_PATH

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not (even if DOWN)."""
        return self._thread is not None or self._down

    def start(self) -> Self:
        """Bind and serve in a background thread; a no-op if already running.

        :returns: the emulator itself, so ``lwa = LWAEmulator().start()`` works.
        """
        with self._lifecycle:
            if self._thread is None:
                self._down = False
                self._open()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket.

        Requests held by :attr:`Fault.HANG`, :attr:`Fault.SLOW_DRIP` or latency
        are released and their connections dropped, so this returns promptly.
        Issued tokens survive; :meth:`start` serves them again on the same port.
        """
        with self._lifecycle:
            self._down = False
            self._close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _open(self) -> None:
        server = _Server((self._host, self._port), self._state)
        self._port = int(server.server_address[1])
        self._bound = True
        with self._state.lock:
            self._state.server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lwa-emulator:{self._port}",
            daemon=True,
        )
        self._thread.start()

    def _close(self) -> None:
        state = self._state
        with state.lock:
            server, state.server = state.server, None
        thread, self._thread = self._thread, None
        # Order matters: wake sleepers first, then stop accepting, then cut
        # the connections already open so idle keep-alive readers return.
        state.release_waiters()
        if server is not None:
            server.shutdown()
            server.server_close()
        state.drop_connections()
        state.release_waiters()
        if thread is not None:
            thread.join(timeout=1.0)

    def _ensure_up(self) -> None:
        with self._lifecycle:
            if self._down:
                self._down = False
                self._open()

    # -- state ---------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: tokens, codes, faults, latency, counters and log.

        Hanging or dripping requests are released, and a server that is
        :attr:`Fault.DOWN` listens again on the same port.
        """
        state = self._state
        with state.lock:
            state.tokens.clear()
            state.revoked.clear()
            state.codes.clear()
            state.refresh_tokens.clear()
            state.faults = {e: _FaultSchedule() for e in ENDPOINTS}
            state.latency.clear()
            state.calls.clear()
            state.connections = 0
            state.requests.clear()
            state.token_in_url = 0
        state.release_waiters()
        self._ensure_up()

    @property
    def calls(self) -> collections.Counter[str]:
        """Requests received per endpoint (``"tokeninfo"``, ``"profile"``).

        Faulted requests count; minting, authorize and token exchange do not.
        """
        return self._state.calls

    @property
    def connections(self) -> int:
        """TCP connections accepted since :meth:`start` or :meth:`reset`."""
        return self._state.connections

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since :meth:`reset`, oldest first."""
        return self._state.requests

    @property
    def token_in_url(self) -> int:
        """How many requests carried an ``access_token`` in their query string."""
        return self._state.token_in_url

    # -- tokens --------------------------------------------------------------

    def issue_token(
        self,
        *,
        scopes: Iterable[str] = ("profile",),
        aud: str | None = None,
        expires_in: float = 3600,
        customer: Customer | None = None,
        user_id: str | None = None,
        name: str | None = None,
        email: str | None = None,
        postal_code: str | None = None,
    ) -> str:
        """Mint an access token the endpoints will accept.

        :param scopes: the scopes granted; the profile endpoint answers the
            fields they allow.  A space separated string works too.
        :param aud: the client id the token belongs to; defaults to
            :attr:`client_id`.
        :param expires_in: lifetime in seconds, fractions allowed; ``0`` or
            less gives a token that is already expired.
        :param customer: whose token it is; a fresh random test customer by
            default.
        :param user_id: overrides the customer's ``user_id``.
        :param name: overrides the customer's ``name``.
        :param email: overrides the customer's ``email``.
        :param postal_code: overrides the customer's ``postal_code``.
        :returns: ``"Atza|..."``, 380 to 500 URL-safe characters.

        Example::

            token = lwa.issue_token(scopes=["profile", "postal_code"], name="Ada")
            assert lwa.customer_for(token).name == "Ada"
        """
        normalized = _normalize_scopes(scopes)
        if not math.isfinite(expires_in):
            raise ValueError("expires_in must be finite")
        base = customer if customer is not None else _new_customer()
        overrides = {
            key: value
            for key, value in (
                ("user_id", user_id),
                ("name", name),
                ("email", email),
                ("postal_code", postal_code),
            )
            if value is not None
        }
        who = dataclasses.replace(base, **overrides)
        now = time.time()
        grant = _Grant(who, normalized, aud or self.client_id, now, now + float(expires_in))
        return self._state.add_token(grant)

    def revoke(self, token: str) -> None:
        """Make a token invalid, as if the customer removed the app.

        :raises KeyError: the emulator never issued this token.
        """
        with self._state.lock:
            if token not in self._state.tokens:
                raise KeyError("unknown token")
            self._state.revoked.add(token)

    def customer_for(self, token: str) -> Customer:
        """The customer a token was issued for, even if revoked or expired.

        :raises KeyError: the emulator never issued this token.
        """
        with self._state.lock:
            grant = self._state.tokens.get(token)
        if grant is None:
            raise KeyError("unknown token")
        return grant.customer

    # -- faults --------------------------------------------------------------

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Delay every answer at ``endpoint`` (both if ``None``) by ``seconds``.

        Other requests are served meanwhile.  ``0`` removes the delay.
        """
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError("latency must be a finite number of seconds >= 0")
        with self._state.lock:
            for name in _check_endpoint(endpoint):
                self._state.latency[name] = float(seconds)

    def inject(
        self,
        kind: Fault | str,
        *,
        endpoint: str | None = None,
        times: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make the emulator misbehave.

        :param kind: a :class:`Fault`, its value (``"503"``) or its name.
        :param endpoint: ``"tokeninfo"``, ``"profile"`` or ``None`` for both.
            Profile-only and tokeninfo-only faults with ``None`` go to their
            own endpoint.  Ignored for :attr:`Fault.DOWN`.
        :param times: fault only the next ``times`` requests at the endpoint,
            then answer normally; ``None`` keeps faulting until
            :meth:`clear_faults`.  Counted faults queue up in injection order
            ahead of the standing (``None``) fault, which a new standing
            fault replaces.  Not allowed with :attr:`Fault.DOWN`, since
            refused connections are not requests.
        :param retry_after: the ``Retry-After`` seconds of ``503``/``429``
            (``1`` by default).

        Example::

            lwa.inject(Fault.UNAVAILABLE, endpoint="tokeninfo", times=2, retry_after=3)
            lwa.inject("reset", endpoint="profile")
        """
        fault = _coerce_fault(kind)
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if fault is Fault.DOWN:
            if times is not None:
                raise ValueError("Fault.DOWN lasts until clear_faults(); times is not supported")
            self._go_down()
            return
        targets = _check_endpoint(endpoint)
        allowed = _FAULT_ENDPOINTS.get(fault, ENDPOINTS)
        if endpoint is None:
            targets = allowed
        elif endpoint not in allowed:
            raise ValueError(f"{fault.name} only applies to {allowed[0]}")
        injection = _Injection(fault, 1 if retry_after is None else retry_after)
        with self._state.lock:
            for name in targets:
                schedule = self._state.faults[name]
                if times is None:
                    schedule.standing = injection
                else:
                    schedule.queued.append((injection, times))

    def clear_faults(self) -> None:
        """Remove every fault and release hanging requests; latency stays.

        A server that is :attr:`Fault.DOWN` listens again on the same port.
        """
        with self._state.lock:
            self._state.faults = {e: _FaultSchedule() for e in ENDPOINTS}
        self._state.release_waiters()
        self._ensure_up()

    def _go_down(self) -> None:
        with self._lifecycle:
            if self._down:
                return
            if self._thread is None:
                raise RuntimeError("the emulator is not running")
            self._close()
            self._down = True

    def wait_for_calls(self, endpoint: str, n: int, timeout: float = 5.0) -> bool:
        """Block until ``calls[endpoint] >= n``; ``False`` if ``timeout`` passes.

        Useful to know that concurrent requests have all reached the server
        (they are counted on arrival, before latency or faults apply).

        Example::

            lwa.set_latency(1.0)
            ...  # fire 10 requests from threads
            assert lwa.wait_for_calls("tokeninfo", 10, timeout=2)
        """
        state = self._state
        with state.changed:
            return state.changed.wait_for(lambda: state.calls[endpoint] >= n, timeout)

    def __repr__(self) -> str:
        where = self.base_url if self._bound else "unbound"
        status = "down" if self._down else ("running" if self._thread else "stopped")
        with self._state.lock:
            count = len(self._state.tokens)
        return f"<LWAEmulator {status} {where} client_id={self.client_id!r} tokens={count}>"
