"""The browser sign-in flow: the authorize page, codes and the token endpoint.

``GET /ap/oa`` shows a sign-in page listing :data:`BUILTIN_CUSTOMERS`;
``POST /ap/oa`` (the page's form) redirects back to the app with an
authorization code (the Authorization Code grant, with or without PKCE);
``POST /auth/o2/token`` exchanges a code or a refresh token for an access
token.  The HTML comes from package data in ``pages/``.

The rules are LWA's: only a registered redirect_uri (exact match) is ever
redirected to; errors go back to it with ``error`` and ``state``; the
implicit grant is refused (``unsupported_response_type``); codes are
single-use and live five minutes; the token endpoint checks the client
secret (body or HTTP Basic), the PKCE verifier (S256 or plain) and the
redirect_uri, hands out a refresh token only to a client that sent its
secret, and refreshes only for that client and only with the secret.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import html
import re
import string
from collections.abc import Mapping
from email.message import Message
from importlib import resources
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from lwa_middleware.testing._grants import (
    _CODE_TTL,
    BUILTIN_CUSTOMERS,
    Customer,
    _Grant,
    _new_code,
    _new_secret,
    _PendingCode,
    _RefreshGrant,
)
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _HTML_TYPE,
    _NO_STORE,
    _PROFILE_SCOPES,
    AUTHORIZE_PATH,
    _basic_credentials,
    _error,
    _first,
    _json,
    _missing,
    _Response,
    _whole_seconds,
)
from lwa_middleware.testing.faults import (
    _BROKEN_BODY,
    Fault,
    _broken_answer,
    _expires_in_as_string,
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
) -> tuple[_AuthorizeRequest, _Response | None] | _Response:
    """The request and the error to redirect with, if any; or an error page.

    As LWA does, a request whose client or redirect_uri cannot be vouched
    for gets a page: only a redirect_uri registered for the client, matched
    exactly, is ever redirected to.  Every other error goes back to it.
    """
    client_id = _first(params, "client_id") or ""
    redirect_uri = _first(params, "redirect_uri") or ""
    if not client_id:
        return _error_page("The request is missing a required parameter: client_id.")
    with state.lock:
        client = state.clients.get(client_id)
        registered = client is not None and redirect_uri in client.redirect_uris
    if client is None:
        return _error_page("Unknown client_id: no app is registered with it.")
    if not registered:
        return _error_page(
            "redirect_uri is not one of the app's registered return URLs (exact match)."
        )
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
    response_type = _first(params, "response_type") or ""
    problem: _Response | None = None
    if not response_type:
        problem = _error_redirect(request, "invalid_request", "response_type is missing.")
    elif response_type != "code":
        # The implicit grant (response_type=token) is no longer accepted.
        problem = _error_redirect(
            request, "unsupported_response_type", "Only response_type=code is supported."
        )
    elif method and not challenge:
        problem = _error_redirect(
            request, "invalid_request", "code_challenge_method without code_challenge."
        )
    elif challenge and request.code_challenge_method not in _CHALLENGE_METHODS:
        problem = _error_redirect(
            request, "invalid_request", "code_challenge_method must be S256 or plain."
        )
    elif challenge and not _PKCE_VALUE.fullmatch(challenge):
        problem = _error_redirect(request, "invalid_request", "code_challenge is malformed.")
    return request, problem


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


def _requested_scopes(values: list[str]) -> tuple[str, ...] | None:
    """The scopes named (space separated or one per field); ``None`` if one is unknown."""
    named = {s for value in values for s in value.split()}
    if named - set(_PROFILE_SCOPES):
        return None
    return tuple(s for s in _PROFILE_SCOPES if s in named)


# -- /ap/oa --------------------------------------------------------------------


def _authorize(state: _State, method: str, query: list[tuple[str, str]], body: bytes) -> _Response:
    if method == "GET":
        return _authorize_page(state, query)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return _authorize_submit(state, form)


def _authorize_page(state: _State, query: list[tuple[str, str]]) -> _Response:
    parsed = _parse_authorize(state, query)
    if isinstance(parsed, _Response):
        return parsed
    request, problem = parsed
    if problem is not None:
        return problem
    requested = _requested_scopes([v for k, v in query if k == "scope"])
    if not requested:
        return _error_redirect(
            request,
            "invalid_scope",
            "scope must name one or more of: profile, profile:user_id, postal_code.",
        )
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
    scopes = "\n".join(
        _option(
            "checkbox",
            "scope",
            s,
            checked=s in requested,
            title=s,
            detail=esc(_SCOPE_LABELS[s]),
        )
        for s in _PROFILE_SCOPES
    )
    content = _template("authorize.html").substitute(
        client_id=esc(request.client_id),
        action=AUTHORIZE_PATH,
        customers=customers,
        scopes=scopes,
        response_type="code",
        redirect_uri=esc(request.redirect_uri),
        state=esc(request.state),
        code_challenge=esc(request.code_challenge),
        code_challenge_method=esc(request.code_challenge_method),
    )
    return _page(200, "Login with Amazon (emulator)", content)


def _authorize_submit(state: _State, form: list[tuple[str, str]]) -> _Response:
    parsed = _parse_authorize(state, form)
    if isinstance(parsed, _Response):
        return parsed
    request, problem = parsed
    if problem is not None:
        return problem
    if _first(form, "action") == "deny":
        return _error_redirect(request, "access_denied", "The user denied access.")
    # Browsers send one ``scope`` field per ticked box; scripted clients
    # often send the space separated list of the authorize URL instead.
    scopes = _requested_scopes([v for k, v in form if k == "scope"])
    if scopes is None:
        return _error_redirect(request, "invalid_scope", "An unknown scope was requested.")
    if not scopes:
        return _error_redirect(request, "invalid_scope", "No scope was granted.")
    choice = _first(form, "customer") or "0"
    if not choice.isdigit() or int(choice) >= len(BUILTIN_CUSTOMERS):
        return _error_page("Choose one of the test customers.")
    code = _new_code()
    pending = _PendingCode(
        BUILTIN_CUSTOMERS[int(choice)],
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


# -- /auth/o2/token ------------------------------------------------------------

_INVALID_GRANT: Final = "The authorization code is invalid, expired, used or not yours."


def _token(
    state: _State, method: str, headers: Message[str, str], body: bytes, kind: Fault | None
) -> _Response:
    origin = headers.get("Origin")
    if method == "OPTIONS":
        return _preflight(state, origin)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if kind in _BROKEN_BODY:
        response = _broken_answer("token", kind, None, state.client_id, state.now())
    else:
        response = _token_answer(state, headers, form)
        if kind is Fault.EXPIRES_IN_STRING:
            response = _expires_in_as_string(response)
    if origin:
        with state.lock:
            client = state.clients.get(_first(form, "client_id") or "")
            allowed = client is not None and client.allows_origin(origin)
        if allowed:
            response.headers.extend(_cors_headers(origin))
    return response


def _cors_headers(origin: str) -> list[tuple[str, str]]:
    # No Allow-Credentials: the token endpoint never needs cookies.
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def _preflight(state: _State, origin: str | None) -> _Response:
    """A CORS preflight: allowed for the Allowed Origins of any registered app."""
    response = _Response(204, b"", None, [("Allow", "POST, OPTIONS")])
    with state.lock:
        clients = list(state.clients.values())
    if origin and any(c.allows_origin(origin) for c in clients):
        response.headers += [
            *_cors_headers(origin),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
    return response


def _token_answer(
    state: _State, headers: Message[str, str], form: list[tuple[str, str]]
) -> _Response:
    grant_type = _first(form, "grant_type")
    if not grant_type:
        return _missing("grant_type")
    if grant_type not in ("authorization_code", "refresh_token"):
        return _error(
            400, "unsupported_grant_type", "The authorization grant type is not supported."
        )
    authenticated = _authenticate(state, headers, form)
    if isinstance(authenticated, _Response):
        return authenticated
    client_id, with_secret = authenticated
    if grant_type == "authorization_code":
        redeemed = _redeem_code(state, form, client_id, with_secret)
    else:
        redeemed = _redeem_refresh_token(state, form, client_id, with_secret)
    if isinstance(redeemed, _Response):
        return redeemed
    customer, scopes, refresh = redeemed
    now = state.now()
    # Whole seconds: Amazon's expires_in is an integer, and the token lives
    # exactly as long as it says.
    lifetime = max(1, _whole_seconds(state.access_token_lifetime))
    grant = _Grant(customer, scopes, client_id, now, now + lifetime)
    payload: dict[str, object] = {"access_token": state.add_token(grant)}
    if refresh is not None:
        payload["refresh_token"] = refresh
    payload.update(token_type="bearer", expires_in=lifetime)
    return _json(200, payload, *_NO_STORE)


def _invalid_client(basic: bool) -> _Response:
    # RFC 6749 section 5.2: a client that tried Basic gets the challenge back.
    challenge = [("WWW-Authenticate", 'Basic realm="token"')] if basic else []
    return _error(401, "invalid_client", "Client authentication failed.", *challenge)


def _authenticate(
    state: _State, headers: Message[str, str], form: list[tuple[str, str]]
) -> tuple[str, bool] | _Response:
    """Who is asking, and whether it proved it with the client secret.

    The secret comes in the body (``client_secret``) or as HTTP Basic, not
    both.  A client that sends no secret is a public (PKCE) client: it is
    identified, not authenticated, and gets no refresh token.
    """
    basic = _basic_credentials(headers.get("Authorization"))
    secret: str | None
    form_id = _first(form, "client_id")
    form_secret = _first(form, "client_secret")
    if basic == "malformed":
        return _invalid_client(True)
    if isinstance(basic, tuple):
        if form_secret is not None:
            return _error(
                400, "invalid_request", "Use one client authentication method, not two."
            )
        if form_id and form_id != basic[0]:
            return _invalid_client(True)
        client_id, secret = basic
    else:
        if not form_id:
            return _missing("client_id")
        client_id, secret = form_id, form_secret
    with state.lock:
        client = state.clients.get(client_id)
    if client is None:
        return _invalid_client(basic is not None)
    if secret is not None and not hmac.compare_digest(
        secret.encode("utf-8", "surrogateescape"), client.client_secret.encode()
    ):
        return _invalid_client(basic is not None)
    return client_id, secret is not None


def _verifier_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 section 4.6."""
    if not _PKCE_VALUE.fullmatch(verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        derived = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        derived = verifier
    return hmac.compare_digest(derived, challenge)


# What a redeemed code or refresh token grants: customer, scopes, refresh token.
_Redeemed = tuple[Customer, tuple[str, ...], str | None]


def _redeem_code(
    state: _State, form: list[tuple[str, str]], client_id: str, with_secret: bool
) -> _Redeemed | _Response:
    code = _first(form, "code")
    if not code:
        return _missing("code")
    redirect_uri = _first(form, "redirect_uri")
    if not redirect_uri:
        return _missing("redirect_uri")
    verifier = _first(form, "code_verifier")
    if not with_secret and verifier is None:
        return _error(
            400, "invalid_request", "The request must carry client_secret or code_verifier."
        )
    # Popped whatever comes next: a code is tried once, right or wrong.
    with state.lock:
        pending = state.codes.pop(code, None)
    if (
        pending is None
        or pending.expires_at <= state.now()
        or pending.client_id != client_id
        or pending.redirect_uri != redirect_uri
    ):
        return _error(400, "invalid_grant", _INVALID_GRANT)
    if pending.code_challenge:
        if verifier is None or not _verifier_matches(
            verifier, pending.code_challenge, pending.code_challenge_method
        ):
            return _error(400, "invalid_grant", "The code verifier does not match the challenge.")
    elif verifier is not None:
        return _error(
            400, "invalid_grant", "A code_verifier was sent for a code issued without a challenge."
        )
    refresh: str | None = None
    if with_secret:
        refresh = _new_secret("Atzr|")
        with state.lock:
            state.refresh_tokens[refresh] = _RefreshGrant(
                pending.customer, pending.scopes, client_id
            )
    return pending.customer, pending.scopes, refresh


def _redeem_refresh_token(
    state: _State, form: list[tuple[str, str]], client_id: str, with_secret: bool
) -> _Redeemed | _Response:
    if not with_secret:
        return _missing("client_secret")
    refresh = _first(form, "refresh_token") or ""
    if not refresh:
        return _missing("refresh_token")
    with state.lock:
        held = state.refresh_tokens.get(refresh)
    if held is None or held.client_id != client_id:
        return _error(400, "invalid_grant", "The refresh token is invalid.")
    if not state.rotate_refresh_tokens:
        # The refresh token stays valid and is handed back as it came.
        return held.customer, held.scopes, refresh
    # Rotation ("Login with Amazon Access Tokens": a refresh gives a new
    # refresh token): the old one is void, taken under the lock so two
    # concurrent refreshes cannot both rotate it.
    rotated = _new_secret("Atzr|")
    with state.lock:
        if state.refresh_tokens.pop(refresh, None) is None:
            return _error(400, "invalid_grant", "The refresh token is invalid.")
        state.refresh_tokens[rotated] = held
    return held.customer, held.scopes, rotated
