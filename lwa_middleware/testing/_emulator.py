"""The :class:`LWAEmulator` facade: start, stop, mint tokens, inject faults.

The emulator is a real HTTP/1.1 server bound to loopback.  It answers the
two calls a resource server makes (``GET /auth/o2/tokeninfo`` and
``GET /user/profile``) the way Amazon does, and can be told to misbehave in
all the ways a remote service misbehaves: errors, throttling, garbage,
resets, hangs, slow bodies or not listening at all.  It also implements the
browser-facing authorize page and the authorization code exchange so that a
demo app can be clicked through without an Amazon account.

This module holds the public object and re-exports the public names of the
modules it is built from, so ``from lwa_middleware.testing.emulator import
...`` keeps working: the wire format is in :mod:`._wire`, tokens and
customers in :mod:`._grants`, faults in :mod:`.faults`, shared state in
:mod:`._state`, the server in :mod:`._server`, the resource server
endpoints in :mod:`._api`, the sign-in flow in :mod:`._signin` and the
registered apps (return URLs, clients, companies) in :mod:`._apps`.

Example::

    with LWAEmulator() as lwa:
        token = lwa.issue_token(scopes=["profile", "postal_code"])
        info = httpx2.get(
            lwa.tokeninfo_url, headers={"x-amz-access-token": token}
        ).json()
        assert info["aud"] == lwa.client_id
"""

from __future__ import annotations

import collections
import dataclasses
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from lwa_middleware.testing._apps import _Apps, _checked_redirect_uris
from lwa_middleware.testing._authorize import _PlaysTheCustomer
from lwa_middleware.testing._faults import (
    Fault,
    _check_endpoint,
    _coerce_fault,
    _fault_targets,
    _fresh_schedules,
    _Injection,
)
from lwa_middleware.testing._grants import BUILTIN_CUSTOMERS as BUILTIN_CUSTOMERS
from lwa_middleware.testing._grants import (
    Customer,
    _Grant,
    _new_client_secret,
    _new_customer,
    _normalize_scopes,
)
from lwa_middleware.testing._server import _Server
from lwa_middleware.testing._state import RecordedRequest, _State
from lwa_middleware.testing._tls import LocalCA
from lwa_middleware.testing._wire import AUTHORIZE_PATH as AUTHORIZE_PATH
from lwa_middleware.testing._wire import ENDPOINTS as ENDPOINTS
from lwa_middleware.testing._wire import MINT_PATH as MINT_PATH
from lwa_middleware.testing._wire import PROFILE_PATH, SDK_PATH, TOKENINFO_PATH
from lwa_middleware.testing._wire import TOKEN_PATH as TOKEN_PATH

__all__ = [
    "BUILTIN_CUSTOMERS",
    "DEFAULT_REDIRECT_URIS",
    "Customer",
    "Fault",
    "LWAEmulator",
    "RecordedRequest",
]

#: The return URLs registered when none are given: the demo's callback on
#: its default port (``lwa-middleware demo``).
DEFAULT_REDIRECT_URIS: tuple[str, ...] = (
    "http://127.0.0.1:8000/callback",
    "http://localhost:8000/callback",
)


class LWAEmulator(_Apps, _PlaysTheCustomer):
    """A Login with Amazon server on loopback, for tests and demos.

    It serves, on ``base_url``:

    - ``GET /auth/o2/tokeninfo`` and ``GET /user/profile``, answering like
      ``api.amazon.com`` (token in ``x-amz-access-token``, ``Authorization:
      Bearer`` or, as Amazon still allows, ``?access_token=``);
    - ``POST /_emulator/tokens``, which mints a token from a JSON body, for
      tests written in other languages;
    - ``GET``/``POST /ap/oa`` (a sign-in page listing three test customers)
      and ``POST /auth/o2/token`` (code and refresh token exchange), so a
      browser demo works end to end; the consent page offers exactly the
      requested scopes (:meth:`consent` and :meth:`deny` play the customer
      in tests); ``GET /sdk/login1.js`` (:attr:`sdk_url`) stands in for
      Amazon's JavaScript SDK.  They enforce LWA's rules: registered
      redirect URIs only, single-use codes that expire after five minutes,
      PKCE (``S256`` and ``plain``), the client secret (body or HTTP Basic),
      refresh tokens only for clients that sent their secret, and
      :meth:`remove_app`.

    Answers have Amazon's documented shapes ("Obtain Customer Profile
    Information"): every answer carries ``Content-Language: en-US`` and an
    ``x-amzn-RequestId`` header; profile errors are ``400 invalid_request``
    (no token), ``400 invalid_token`` (bad, expired or revoked token),
    ``401 insufficient_scope`` and, injected, ``500 ServerError``, each with
    a ``request_id`` in its JSON body equal to the header.  ``expires_in``
    is an integer; :attr:`Fault.EXPIRES_IN_STRING` sends it as a string,
    as Amazon's Alexa account-linking page shows.

    Every request is counted and recorded (without header values or token
    values), and faults and latency can be injected per endpoint.  The
    server runs in daemon threads; nothing it does is logged or printed, and
    its ``repr`` never shows a token.

    :param client_id: the ``aud`` of tokens issued without an explicit one,
        and the app registered for sign-in.
    :param client_secret: that app's client secret, which the token
        endpoint checks; a fresh random ``amzn1.oa2-cs.v1.…`` by default.
    :param redirect_uris: that app's Allowed Return URLs: ``/ap/oa``
        redirects only to one of them, matched exactly.  https URLs, or
        http ones on loopback; :data:`DEFAULT_REDIRECT_URIS` by default.
        Their origins are its Allowed JavaScript Origins: pages there may
        use the JavaScript SDK stand-in (:attr:`sdk_url`).
    :param clock: the emulator's time source, so tests can expire codes and
        tokens without sleeping: the kind of clock the middleware and
        ``SignIn`` take (``monotonic()`` and ``time()``, like the ``time``
        module, the default), of which it reads ``time()``; or a callable
        giving epoch seconds.
    :param access_token_lifetime: seconds an access token from the token
        endpoint (code or refresh grant) lives: its ``expires_in`` and its
        tokeninfo ``exp``; 3600 (LWA's hour) by default.  Shorter lifetimes
        show refreshes in demos.  Rounded down to whole seconds (at least
        one): ``expires_in`` is always an integer.
    :param rotate_refresh_tokens: the refresh grant answers a new refresh
        token and voids the one it was sent ("Login with Amazon Access
        Tokens" says a refresh gives a new refresh token; whether Amazon
        ever hands back the same value is not documented, so by default the
        emulator does, and the option tests a client that keeps the new one).
    :param company: the developer account (company) of :attr:`client_id`.
        ``user_id`` is the same for every app of one company and differs
        between companies ("Customer Profile"): apps added with another
        ``company`` (:meth:`add_client`) see other ids, :meth:`user_id_for`
        tells which. A :class:`Customer`'s own ``user_id`` is what this
        company's apps see.
    :param host: the loopback address to bind, ``127.0.0.1`` by default
        (``::1`` works too).
    :param port: the port to bind; ``0`` picks a free one.  Once bound, the
        port is kept across :meth:`stop`/:meth:`start` and :attr:`Fault.DOWN`.
    :param tls: serve HTTPS with a certificate signed by a CA made at start-up
        (needs ``cryptography``); trust it with :attr:`ca_file` or
        :attr:`ssl_context`, e.g. ``LWAMiddleware(..., verify=lwa.ca_file)``.
    :param token_cors: answer cross-origin ``fetch`` calls to the token
        endpoint from the registered apps' origins (CORS headers and
        preflights).  Off by default: **Amazon does not document CORS on
        its token endpoint**; its documented browser path is the JavaScript
        SDK (:attr:`sdk_url`), so a page that passes only with this flag on
        may fail in production.

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
        client_secret: str | None = None,
        redirect_uris: Iterable[str] | None = None,
        clock: Any = None,
        tls: bool = False,
        access_token_lifetime: float = 3600,
        rotate_refresh_tokens: bool = False,
        company: str = "",
        token_cors: bool = False,
    ) -> None:
        if not client_id:
            raise ValueError("client_id must not be empty")
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        if client_secret == "":
            raise ValueError("client_secret must not be empty")
        if (
            isinstance(access_token_lifetime, bool)
            or not isinstance(access_token_lifetime, int | float)
            or not math.isfinite(access_token_lifetime)
            or access_token_lifetime <= 0
        ):
            raise ValueError("access_token_lifetime must be a positive number of seconds")
        uris = _checked_redirect_uris(
            DEFAULT_REDIRECT_URIS if redirect_uris is None else redirect_uris
        )
        self.client_id = client_id
        #: Seconds the token endpoint's access tokens live (``expires_in``).
        self.access_token_lifetime = access_token_lifetime
        #: The client secret of :attr:`client_id`; never in a ``repr``.
        self.client_secret = client_secret or _new_client_secret()
        self._host = host
        self._port = port
        self._bound = False
        self._state = _State(
            client_id,
            client_secret=self.client_secret,
            redirect_uris=uris,
            clock=_epoch_face(clock),
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            company=company,
        )
        # Serialises start/stop/DOWN; distinct from the state lock so that
        # joining threads never happens while a handler could need the state.
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down = False
        self._tls: LocalCA | None = LocalCA() if tls else None
        self._state.token_cors = bool(token_cors)

    # -- lifecycle -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with ``tls=True``; no trailing slash).

        Valid once :meth:`start` has bound the port; stays the same across
        :meth:`stop`/:meth:`start` and :attr:`Fault.DOWN`.
        """
        if not self._bound:
            raise RuntimeError("the emulator has not been started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._tls else 'http'}://{host}:{self._port}"

    @property
    def tls(self) -> bool:
        """Whether the emulator serves HTTPS."""
        return self._tls is not None

    @property
    def ca_file(self) -> str:
        """Path of the PEM file of the CA that signed the server certificate (``tls=True``)."""
        if self._tls is None:
            raise RuntimeError("the emulator serves plain http: start it with tls=True")
        return self._tls.ca_file

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A new client ``SSLContext`` trusting only the emulator's CA (``tls=True``)."""
        if self._tls is None:
            raise RuntimeError("the emulator serves plain http: start it with tls=True")
        return self._tls.client_context()

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
        tls = self._tls.server_context if self._tls is not None else None
        server = _Server((self._host, self._port), self._state, tls)
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
        self._state.clear()
        self._state.release_waiters()
        self._ensure_up()

    @property
    def calls(self) -> collections.Counter[str]:
        """Requests received per endpoint (``"tokeninfo"``, ``"profile"``, ``"token"``).

        Faulted requests count; minting and the sign-in page do not.
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
        now = self._state.now()
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

        Its ``user_id`` is the one the emulator's company sees; an app of
        another company sees :meth:`user_id_for` instead.

        :raises KeyError: the emulator never issued this token.
        """
        with self._state.lock:
            grant = self._state.tokens.get(token)
        if grant is None:
            raise KeyError("unknown token")
        return grant.customer

    # -- sign-in -------------------------------------------------------------

    @property
    def token_url(self) -> str:
        """The full URL of the token endpoint (``POST /auth/o2/token``)."""
        return self.base_url + TOKEN_PATH

    @property
    def authorize_url(self) -> str:
        """The full URL of the sign-in page (``/ap/oa``)."""
        return self.base_url + AUTHORIZE_PATH

    @property
    def sdk_url(self) -> str:
        """The stand-in for Amazon's ``login1.js`` (see :mod:`._sdk`): the one
        ``<script src>`` a page changes to go to production."""
        return self.base_url + SDK_PATH

    # -- faults --------------------------------------------------------------

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Delay every answer at ``endpoint`` by ``seconds``.

        ``endpoint`` is ``"tokeninfo"``, ``"profile"``, ``"token"`` or ``None``
        for tokeninfo and profile.

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
        :param endpoint: ``"tokeninfo"``, ``"profile"``, ``"token"`` (the
            token endpoint, ``POST /auth/o2/token``) or ``None`` for the first
            two.  Profile-only and tokeninfo-only faults with ``None`` go to
            their own endpoint.  Ignored for :attr:`Fault.DOWN`.  A faulted
            token request is not processed: its code stays unused.
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
        targets = _fault_targets(fault, endpoint)
        injection = _Injection(fault, 1 if retry_after is None else retry_after)
        with self._state.lock:
            for name in targets:
                self._state.faults[name].add(injection, times)

    def clear_faults(self) -> None:
        """Remove every fault and release hanging requests; latency stays.

        A server that is :attr:`Fault.DOWN` listens again on the same port.
        """
        with self._state.lock:
            self._state.faults = _fresh_schedules()
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


def _epoch_face(clock: Any) -> Callable[[], float]:
    """Epoch seconds from ``clock=``: a clock's ``time()``, or the callable itself."""
    if clock is None:
        return time.time
    face = getattr(clock, "time", None)
    read: Callable[[], float] = face if callable(face) else clock
    return read
