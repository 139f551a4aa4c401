"""The authorize page (``/ap/oa``): the request's checks and the customer's consent.

``GET /ap/oa`` checks the app's request and shows a consent page listing
:data:`BUILTIN_CUSTOMERS` and *exactly the scopes the app requested*, all
ticked; ``POST /ap/oa`` (the page's form) redirects back to the app with an
authorization code for the scopes the customer left ticked, or with
``error=access_denied``.  The HTML comes from package data in ``pages/``.

The rules are LWA's: only a registered redirect_uri (exact match) is ever
redirected to; errors go back to it with ``error`` and ``state``; the
implicit grant is refused (``unsupported_response_type``).  Consent can drop
requested scopes, never add one (Amazon's "Requesting Scopes as
Essential/Voluntary" page): the form carries a signed *consent ticket*
naming the requested scopes, and a scope the ticket does not name is never
granted, whatever the form submits.  A form without a valid ticket (not
made by ``GET /ap/oa``, altered, or older than an hour) gets an error page.
Tests play the customer without HTML through :func:`_play_customer`
(``LWAEmulator.consent()`` / ``deny()``).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import html
import json
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from lwa_middleware.testing._grants import (
    _CODE_TTL,
    BUILTIN_CUSTOMERS,
    Customer,
    _Client,
    _new_code,
    _PendingCode,
)
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _HTML_TYPE,
    _PROFILE_SCOPES,
    AUTHORIZE_PATH,
    SDK_POPUP_PATH,
    _first,
    _Response,
)

_PAGES: Final = resources.files("lwa_middleware.testing") / "pages"

_SCOPE_LABELS: Final[Mapping[str, str]] = {
    "profile": "Your name and email address",
    "profile:user_id": "Your Amazon account identifier",
    "postal_code": "Your postal code",
}

_PAGE_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    # The stylesheet is inlined into each page, hence 'unsafe-inline'.
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


# -- pages ---------------------------------------------------------------------


@functools.cache
def _template(name: str) -> string.Template:
    # Files end with a newline; the pieces put together from them do not,
    # the template that includes them decides the line breaks.
    text = (_PAGES / name).read_text(encoding="utf-8")
    return string.Template(text.removesuffix("\n"))


def _page(status: int, title: str, content: str) -> _Response:
    document = _template("layout.html").substitute(
        title=html.escape(title), css=_template("style.css").template, content=content
    )
    return _Response(status, f"{document}\n".encode(), _HTML_TYPE, list(_PAGE_HEADERS))


def _error_page(message: str) -> _Response:
    content = _template("error.html").substitute(message=html.escape(message))
    return _page(400, "Login with Amazon (emulator): error", content)


def _option(kind: str, name: str, value: str, *, checked: bool, title: str, detail: str) -> str:
    """One radio button or checkbox of the form; ``detail`` is already HTML."""
    return _template("option.html").substitute(
        type=kind,
        name=name,
        value=html.escape(value),
        checked=" checked" if checked else "",
        title=html.escape(title),
        detail=detail,
    )


# -- the authorize request -----------------------------------------------------

# RFC 7636 section 4.1/4.2: 43 to 128 unreserved characters.
_PKCE_VALUE: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_CHALLENGE_METHODS: Final = ("S256", "plain")


@dataclasses.dataclass(frozen=True, slots=True)
class _AuthorizeRequest:
    """A request whose client and redirect_uri are known: errors can be redirected."""

    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    code_challenge_method: str


def _parse_authorize(
    state: _State, params: list[tuple[str, str]]
) -> tuple[_AuthorizeRequest, _Response | None] | str:
    """The request and the error to redirect with, if any; or an error page's message.

    As LWA does, a request whose client or redirect_uri cannot be vouched
    for gets a page: only a redirect_uri registered for the client, matched
    exactly, is ever redirected to.  Every other error goes back to it.
    """
    client_id = _first(params, "client_id") or ""
    redirect_uri = _first(params, "redirect_uri") or ""
    if not client_id:
        return "The request is missing a required parameter: client_id."
    with state.lock:
        client = state.clients.get(client_id)
        registered = client is not None and (
            redirect_uri in client.redirect_uris
            or _is_sdk_popup_return(state, client, redirect_uri)
        )
    if client is None:
        return "Unknown client_id: no app is registered with it."
    if not registered:
        return "redirect_uri is not one of the app's registered return URLs (exact match)."
    challenge = _first(params, "code_challenge") or ""
    method = _first(params, "code_challenge_method") or ""
    request = _AuthorizeRequest(
        client_id,
        redirect_uri,
        _first(params, "state") or "",
        challenge,
        # RFC 7636 section 4.3: plain when the method is absent.
        method or ("plain" if challenge else ""),
    )
    found = _problem(_first(params, "response_type") or "", method, request)
    return request, _error_redirect(request, *found) if found is not None else None


def _problem(response_type: str, method: str, request: _AuthorizeRequest) -> tuple[str, str] | None:
    """``(error, description)`` of what is wrong with an authorization
    request whose client and redirect_uri are vouched for, if anything."""
    challenge = request.code_challenge
    if not response_type:
        return "invalid_request", "response_type is missing."
    if response_type != "code":
        # The implicit grant (response_type=token) is no longer accepted.
        return "unsupported_response_type", "Only response_type=code is supported."
    if method and not challenge:
        return "invalid_request", "code_challenge_method without code_challenge."
    if challenge and request.code_challenge_method not in _CHALLENGE_METHODS:
        return "invalid_request", "code_challenge_method must be S256 or plain."
    if challenge and not _PKCE_VALUE.fullmatch(challenge):
        return "invalid_request", "code_challenge is malformed."
    return None


def _is_valid_redirect_uri(uri: str) -> bool:
    """Whether ``uri`` can be registered: https, or http on a loopback host."""
    if not uri or any(ch <= " " or ch in "\\\x7f" for ch in uri):
        return False
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return (
        (parts.scheme == "https" or (parts.scheme == "http" and loopback))
        and bool(parts.hostname)
        and parts.username is None
        and parts.password is None
        and not parts.fragment
        and "#" not in uri
    )


def _is_sdk_popup_return(state: _State, client: _Client, uri: str) -> bool:
    """Whether ``uri`` is the SDK popup's return page for one of the app's origins.

    ``amazon.Login.authorize`` in a popup needs no Allowed Return URL, only
    the page's origin among the app's Allowed Origins; the SDK stand-in ends
    its popups on the emulator's own ``/sdk/popup?origin=…``, which hands the
    answer to that origin only.  Called with ``state.lock`` held.
    """
    server = state.server
    if server is None:
        return False
    parts = urlsplit(uri)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    own = f"{'https' if server.tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    return (
        f"{parts.scheme}://{parts.netloc}" == own
        and parts.path == SDK_POPUP_PATH
        and len(query) == 1
        and query[0][0] == "origin"
        and client.allows_origin(query[0][1])
        and not parts.fragment
    )


def _requested_scopes(values: Iterable[str]) -> tuple[str, ...] | None:
    """The scopes named (space separated or one per field); ``None`` if one is unknown."""
    named = {s for value in values for s in value.split()}
    if named - set(_PROFILE_SCOPES):
        return None
    return tuple(s for s in _PROFILE_SCOPES if s in named)


# -- consent -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Consent:
    """A request that passed every check, and the scopes it asks the customer for."""

    request: _AuthorizeRequest
    requested: tuple[str, ...]


def _open_consent(state: _State, params: list[tuple[str, str]]) -> _Consent | _Response | str:
    """What the customer is asked; else the redirect to send, or an error page's message."""
    parsed = _parse_authorize(state, params)
    if isinstance(parsed, str):
        return parsed
    request, problem = parsed
    if problem is not None:
        return problem
    requested = _requested_scopes([v for k, v in params if k == "scope"])
    if not requested:
        return _error_redirect(
            request,
            "invalid_scope",
            "scope must name one or more of: profile, profile:user_id, postal_code.",
        )
    return _Consent(request, requested)


def _grant(state: _State, consent: _Consent, ticked: Iterable[str], who: Customer) -> _Response:
    """The customer allows: a code for the ticked scopes *among the requested ones*.

    Anything else ticked (a tampered form, a scripted client's list) is
    dropped: a customer can narrow what the app asked for, never widen it.
    """
    named = {s for value in ticked for s in value.split()}
    scopes = tuple(s for s in consent.requested if s in named)
    request = consent.request
    if not scopes:
        return _error_redirect(request, "invalid_scope", "No scope was granted.")
    code = _new_code()
    pending = _PendingCode(
        who,
        scopes,
        request.client_id,
        request.redirect_uri,
        state.now() + _CODE_TTL,
        request.code_challenge,
        request.code_challenge_method,
    )
    with state.lock:
        state.codes[code] = pending
    return _redirect(request, [("code", code), ("scope", " ".join(scopes))])


# The ticket is signed rather than stored so that the emulator's shared state
# does not grow with every page view.  One key per process is enough: a
# ticket only has to live from the page to its form.
_TICKET_KEY: Final = secrets.token_bytes(32)
_TICKET_TTL: Final = 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ticket_mac(body: str) -> bytes:
    return hmac.new(_TICKET_KEY, body.encode(), hashlib.sha256).digest()


def _ticket(consent: _Consent, now: float) -> str:
    """The form's proof of what was requested, bound to the client and redirect_uri."""
    request = consent.request
    fields = [request.client_id, request.redirect_uri, list(consent.requested), now + _TICKET_TTL]
    body = _b64(json.dumps(fields, separators=(",", ":")).encode())
    return f"{body}.{_b64(_ticket_mac(body))}"


def _ticket_scopes(ticket: str, request: _AuthorizeRequest, now: float) -> tuple[str, ...] | None:
    """The requested scopes a ticket vouches for; ``None`` if it is not valid here and now."""
    body, _, mac = ticket.partition(".")
    expected = _b64(_ticket_mac(body)).encode()
    if not hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), expected):
        return None
    # Signed by us, so well formed; only its meaning is left to check.
    client_id, redirect_uri, scopes, expires = json.loads(
        base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    )
    if (client_id, redirect_uri) != (request.client_id, request.redirect_uri) or expires <= now:
        return None
    return tuple(scopes)


# -- /ap/oa --------------------------------------------------------------------


def _authorize(state: _State, method: str, query: list[tuple[str, str]], body: bytes) -> _Response:
    if method == "GET":
        return _authorize_page(state, query)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return _authorize_submit(state, form)


def _authorize_page(state: _State, query: list[tuple[str, str]]) -> _Response:
    consent = _open_consent(state, query)
    if isinstance(consent, str):
        return _error_page(consent)
    if isinstance(consent, _Response):
        return consent
    request = consent.request
    esc = html.escape
    customers = "\n".join(
        _option(
            "radio",
            "customer",
            str(i),
            checked=i == 0,
            title=c.name,
            detail=f"{esc(c.email)} &middot; {esc(c.postal_code)}",
        )
        for i, c in enumerate(BUILTIN_CUSTOMERS)
    )
    # Exactly what the app asked for, all ticked: the customer may untick.
    scopes = "\n".join(
        _option("checkbox", "scope", s, checked=True, title=s, detail=esc(_SCOPE_LABELS[s]))
        for s in consent.requested
    )
    content = _template("authorize.html").substitute(
        client_id=esc(request.client_id),
        action=AUTHORIZE_PATH,
        customers=customers,
        scopes=scopes,
        consent=esc(_ticket(consent, state.now())),
        response_type="code",
        redirect_uri=esc(request.redirect_uri),
        state=esc(request.state),
        code_challenge=esc(request.code_challenge),
        code_challenge_method=esc(request.code_challenge_method),
    )
    return _page(200, "Login with Amazon (emulator)", content)


_NO_TICKET: Final = (
    "This consent form does not come from this sign-in page, was altered, or is over an hour "
    "old: open the app's authorize URL again. (Tests play the customer with "
    "LWAEmulator.consent(url) or deny(url).)"
)


def _authorize_submit(state: _State, form: list[tuple[str, str]]) -> _Response:
    parsed = _parse_authorize(state, form)
    if isinstance(parsed, str):
        return _error_page(parsed)
    request, problem = parsed
    if problem is not None:
        return problem
    if _first(form, "action") == "deny":
        # Refusing grants nothing, so it needs no ticket.
        return _error_redirect(request, "access_denied", "The user denied access.")
    requested = _ticket_scopes(_first(form, "consent") or "", request, state.now())
    if requested is None:
        return _error_page(_NO_TICKET)
    choice = _first(form, "customer") or "0"
    if not choice.isdigit() or int(choice) >= len(BUILTIN_CUSTOMERS):
        return _error_page("Choose one of the test customers.")
    # Browsers send one ``scope`` field per ticked box.
    ticked = [v for k, v in form if k == "scope"]
    return _grant(state, _Consent(request, requested), ticked, BUILTIN_CUSTOMERS[int(choice)])


def _error_redirect(request: _AuthorizeRequest, error: str, description: str) -> _Response:
    return _redirect(request, [("error", error), ("error_description", description)])


def _redirect(request: _AuthorizeRequest, params: list[tuple[str, str]]) -> _Response:
    """A redirect to the (registered) redirect_uri, with ``state`` appended."""
    if request.state:
        params = [*params, ("state", request.state)]
    encoded = urlencode(params, quote_via=quote)
    uri = request.redirect_uri
    separator = "&" if "?" in uri else "?"
    if uri.endswith(("?", "&")):
        separator = ""
    location = f"{uri}{separator}{encoded}"
    return _Response(302, b"", None, [("Location", location), ("Cache-Control", "no-store")])


# -- the customer, played by a test ----------------------------------------------


def _play_customer(
    state: _State,
    base_url: str,
    authorize_url: str,
    *,
    grant: Iterable[str] | None = None,
    customer: Customer | int = 0,
    deny: bool = False,
) -> str:
    """What ``LWAEmulator.consent()``/``deny()`` do: the URL the browser is sent back to."""
    parts = urlsplit(authorize_url)
    if f"{parts.scheme}://{parts.netloc}" != base_url or parts.path.lower() != AUTHORIZE_PATH:
        raise ValueError(f"not this emulator's authorize URL ({base_url}{AUTHORIZE_PATH}?...)")
    opened = _open_consent(state, parse_qsl(parts.query, keep_blank_values=True))
    if isinstance(opened, str):
        raise ValueError(f"the sign-in page refuses this request: {opened}")
    if isinstance(opened, _Response):
        return _location(opened)
    if deny:
        refusal = _error_redirect(opened.request, "access_denied", "The user denied access.")
        return _location(refusal)
    if isinstance(customer, int):
        if not 0 <= customer < len(BUILTIN_CUSTOMERS):
            last = len(BUILTIN_CUSTOMERS) - 1
            raise ValueError(f"customer must index BUILTIN_CUSTOMERS (0 to {last})")
        customer = BUILTIN_CUSTOMERS[customer]
    ticked = opened.requested if grant is None else _checked_grant(grant, opened.requested)
    return _location(_grant(state, opened, ticked, customer))


class _PlaysTheCustomer:
    """``LWAEmulator.consent()`` and ``deny()``: the customer on the consent page, in tests.

    A base class of :class:`~lwa_middleware.testing.LWAEmulator`, kept here
    with the page it plays.
    """

    _state: _State

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def consent(
        self,
        authorize_url: str,
        *,
        grant: Iterable[str] | None = None,
        customer: Customer | int = 0,
    ) -> str:
        """Play the customer on the consent page of ``authorize_url``, and allow.

        No HTML and no HTTP: the page's checks and grant, run directly (not
        counted in :attr:`requests`).

        :param authorize_url: where the app sent the browser (``…/ap/oa?…``).
        :param grant: the scopes left ticked; all requested ones by default.
        :param customer: a :class:`Customer` or an index in :data:`BUILTIN_CUSTOMERS`.
        :returns: the URL the browser is sent back to: the app's redirect_uri
            with ``code``, ``scope`` and ``state``, or with ``error`` if the
            request is one LWA answers with an error (e.g. ``invalid_scope``).
        :raises ValueError: ``grant`` names a scope the app did not request,
            or the request gets an error page (unknown client, unregistered
            redirect_uri), or the URL is not this emulator's.

        Example::

            back = lwa.consent(login.headers["location"], grant=["profile"])
            client.get(back)  # the app's callback, with code and state
        """
        return _play_customer(
            self._state, self.base_url, authorize_url, grant=grant, customer=customer
        )

    def deny(self, authorize_url: str) -> str:
        """Play the customer refusing: the redirect_uri with ``error=access_denied``.

        :raises ValueError: as :meth:`consent`.
        """
        return _play_customer(self._state, self.base_url, authorize_url, deny=True)


def _checked_grant(grant: Iterable[str], requested: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(grant, str):
        grant = grant.split()
    ticked = tuple(grant)
    extra = sorted(set(ticked) - set(requested))
    if extra:
        # A test that grants what the app never asked for would hide the very
        # bug this page exists to show: say so instead of dropping it.
        raise ValueError(
            f"the app did not request {' '.join(extra)}: the consent page offers only "
            f"{' '.join(requested)}, and a customer can only narrow that"
        )
    return ticked


def _location(response: _Response) -> str:
    return next(value for name, value in response.headers if name == "Location")
