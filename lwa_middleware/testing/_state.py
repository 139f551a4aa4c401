"""What the emulator's handler threads share: tokens, codes, faults, counters.

One :class:`_State` per emulator, behind one lock.  It outlives the HTTP
server (``stop``/``start`` and ``Fault.DOWN`` replace the server, not the
state), which is why issued tokens survive a restart.  The request log is
:class:`RecordedRequest` entries, kept free of token values.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from lwa_middleware.testing._faults import _fresh_schedules, _Injection
from lwa_middleware.testing._grants import (
    Customer,
    _Client,
    _Grant,
    _new_secret,
    _PendingCode,
    _RefreshGrant,
)
from lwa_middleware.testing._wire import _FAULTABLE

if TYPE_CHECKING:
    from lwa_middleware.testing._server import _Server

__all__ = ["RecordedRequest", "company_user_id"]

# Set once and never cleared: handed to requests that arrive on a server that
# is shutting down, so nothing they do can block.
_ALWAYS_RELEASED: Final = threading.Event()
_ALWAYS_RELEASED.set()


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

    def __init__(
        self,
        client_id: str,
        *,
        client_secret: str = "",
        redirect_uris: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        access_token_lifetime: float = 3600,
        rotate_refresh_tokens: bool = False,
        company: str = "",
    ) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.client_id = client_id
        self.clock = clock
        #: ``expires_in`` of the token endpoint's access tokens.
        self.access_token_lifetime = access_token_lifetime
        #: Whether a refresh grant hands out a new refresh token and voids the old.
        self.rotate_refresh_tokens = rotate_refresh_tokens

        #: CORS on the token endpoint (``LWAEmulator(token_cors=True)``); off
        #: by default because Amazon documents none.
        self.token_cors = False
        # The apps registered at construction; reset() comes back to them.
        self._registered = (client_id, client_secret, tuple(redirect_uris))
        self._registered_company = company
        self.clients: dict[str, _Client] = {}
        #: The company (developer account) of each client id; see :func:`company_user_id`.
        self.companies: dict[str, str] = {}
        self._register_initial_client()
        self.tokens: dict[str, _Grant] = {}
        self.revoked: set[str] = set()
        self.codes: dict[str, _PendingCode] = {}
        self.refresh_tokens: dict[str, _RefreshGrant] = {}
        self.faults = _fresh_schedules()
        self.latency: dict[str, float] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.requests: list[RecordedRequest] = []
        self.token_in_url = 0
        self.release = threading.Event()
        self.open_sockets: set[socket.socket] = set()
        self.server: _Server | None = None

    def clear(self) -> None:
        """Forget tokens, codes, faults, latency, counters and the request log."""
        with self.lock:
            self._register_initial_client()
            self.tokens.clear()
            self.revoked.clear()
            self.codes.clear()
            self.refresh_tokens.clear()
            self.faults = _fresh_schedules()
            self.latency.clear()
            self.calls.clear()
            self.connections = 0
            self.requests.clear()
            self.token_in_url = 0

    def _register_initial_client(self) -> None:
        client_id, secret, uris = self._registered
        self.clients = {client_id: _Client(client_id, secret, list(uris))}
        self.companies = {client_id: self._registered_company}

    def now(self) -> float:
        """The emulator's time (``time.time`` unless a clock was injected)."""
        return self.clock()

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
            if record.endpoint in _FAULTABLE:
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
        """The grant of a live token, or ``None`` if unknown, revoked or expired.

        Its customer carries the ``user_id`` the token's client sees
        (:meth:`user_id_for`), which tokeninfo and profile answer.
        """
        if not token:
            return None
        with self.lock:
            grant = self.tokens.get(token)
            if grant is None or token in self.revoked:
                return None
            seen = self._user_id_for(grant.customer.user_id, grant.aud)
        if self.now() >= grant.expires_at:
            return None
        if seen == grant.customer.user_id:
            return grant
        return dataclasses.replace(
            grant, customer=dataclasses.replace(grant.customer, user_id=seen)
        )

    def user_id_for(self, user_id: str, client_id: str) -> str:
        """The ``user_id`` that ``client_id`` sees for the customer ``user_id``."""
        with self.lock:
            return self._user_id_for(user_id, client_id)

    def _user_id_for(self, user_id: str, client_id: str) -> str:
        return company_user_id(user_id, self.companies.get(client_id, ""))

    def remove_app(self, user_id: str, client_id: str) -> int:
        """The customer removes the app: its tokens and codes for them stop working.

        :returns: how many access and refresh tokens were revoked.
        """
        with self.lock:
            # The customer's own user_id, or the one this client sees.
            ids = {user_id} | {
                c.user_id
                for c in self._customers()
                if self._user_id_for(c.user_id, client_id) == user_id
            }
            access = [
                token
                for token, grant in self.tokens.items()
                if grant.customer.user_id in ids
                and grant.aud == client_id
                and token not in self.revoked
            ]
            self.revoked.update(access)
            refresh = [
                token
                for token, held in self.refresh_tokens.items()
                if held.customer.user_id in ids and held.client_id == client_id
            ]
            for token in refresh:
                del self.refresh_tokens[token]
            codes = [
                code
                for code, pending in self.codes.items()
                if pending.customer.user_id in ids and pending.client_id == client_id
            ]
            for code in codes:
                del self.codes[code]
        return len(access) + len(refresh)

    def _customers(self) -> list[Customer]:
        return [
            *(grant.customer for grant in self.tokens.values()),
            *(held.customer for held in self.refresh_tokens.values()),
            *(pending.customer for pending in self.codes.values()),
        ]


def company_user_id(user_id: str, company: str) -> str:
    """The ``user_id`` of a customer as apps of ``company`` see it.

    "Customer Profile": ``user_id`` is the same for every app of one company
    and differs for another company's. The customer's own ``user_id`` is
    what the emulator's default company ``""`` sees; another company sees a
    stable id derived from both, in the same ``amzn1.account.`` shape.
    """
    if not company:
        return user_id
    digest = hashlib.sha256(f"{company}\n{user_id}".encode()).digest()
    return "amzn1.account." + base64.b32encode(digest).decode("ascii")[:26]
