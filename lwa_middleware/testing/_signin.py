"""The browser sign-in flow: the authorize page, codes and the token endpoint.

``GET /ap/oa`` shows a sign-in page listing :data:`BUILTIN_CUSTOMERS`;
``POST /ap/oa`` (the page's form) redirects back to the app with an access
token (implicit grant) or an authorization code; ``POST /auth/o2/token``
exchanges a code or a refresh token for an access token.  The HTML comes
from package data in ``pages/``.

Where a more faithful flow goes: client authentication in
:func:`_client_id`, code verification (PKCE) in :func:`_redeem_code`, with
what it needs stored on ``_PendingCode``, and refresh token rules in
:func:`_redeem_refresh_token`.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import string
import time
from collections.abc import Mapping
from email.message import Message
from importlib import resources
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from lwa_middleware.testing._grants import (
    _ACCESS_TOKEN_TTL,
    _CODE_TTL,
    BUILTIN_CUSTOMERS,
    Customer,
    _Grant,
    _new_code,
    _new_secret,
    _PendingCode,
)
from lwa_middleware.testing._state import _State
from lwa_middleware.testing._wire import (
    _HTML_TYPE,
    _NO_STORE,
    _PROFILE_SCOPES,
    AUTHORIZE_PATH,
    _basic_user,
    _error,
    _first,
    _json,
    _missing,
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


# -- /ap/oa --------------------------------------------------------------------


def _authorize(state: _State, method: str, query: list[tuple[str, str]], body: bytes) -> _Response:
    if method == "GET":
        return _authorize_page(query)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return _authorize_submit(state, form)


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
        client_id=esc(parsed.client_id),
        action=AUTHORIZE_PATH,
        customers=customers,
        scopes=scopes,
        response_type=esc(parsed.response_type),
        redirect_uri=esc(parsed.redirect_uri),
        state=esc(parsed.state),
    )
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


# -- /auth/o2/token ------------------------------------------------------------

# What a redeemed code or refresh token grants: customer, scopes, refresh token.
_Redeemed = tuple[Customer, tuple[str, ...], str]


def _token(state: _State, headers: Message[str, str], body: bytes) -> _Response:
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    client_id = _client_id(form, headers)
    grant_type = _first(form, "grant_type")
    if not grant_type:
        return _missing("grant_type")
    if not client_id:
        return _missing("client_id")
    now = time.time()
    redeemed: _Redeemed | _Response
    match grant_type:
        case "authorization_code":
            redeemed = _redeem_code(state, form, client_id, now)
        case "refresh_token":
            redeemed = _redeem_refresh_token(state, form, client_id)
        case _:
            return _error(
                400, "unsupported_grant_type", "The authorization grant type is not supported."
            )
    if isinstance(redeemed, _Response):
        return redeemed
    customer, scopes, refresh = redeemed
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


def _client_id(form: list[tuple[str, str]], headers: Message[str, str]) -> str | None:
    """Who is asking: the form's ``client_id`` or the HTTP Basic user name.

    The client secret is not checked (yet): any client id is trusted.
    """
    return _first(form, "client_id") or _basic_user(headers.get("Authorization"))


def _redeem_code(
    state: _State, form: list[tuple[str, str]], client_id: str, now: float
) -> _Redeemed | _Response:
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
        return _error(400, "invalid_grant", "The authorization code is invalid or has expired.")
    refresh = _new_secret("Atzr|")
    with state.lock:
        state.refresh_tokens[refresh] = (pending.customer, pending.scopes, client_id)
    return pending.customer, pending.scopes, refresh


def _redeem_refresh_token(
    state: _State, form: list[tuple[str, str]], client_id: str
) -> _Redeemed | _Response:
    refresh = _first(form, "refresh_token") or ""
    if not refresh:
        return _missing("refresh_token")
    with state.lock:
        known = state.refresh_tokens.get(refresh)
    if known is None or known[2] != client_id:
        return _error(400, "invalid_grant", "The refresh token is invalid.")
    customer, scopes, _ = known
    # The refresh token stays valid and is handed back as it came.
    return customer, scopes, refresh
