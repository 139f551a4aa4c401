"""Who the emulator's tokens stand for, and how tokens, codes and ids look.

Holds :class:`Customer` and :data:`BUILTIN_CUSTOMERS`, the grant behind each
access token, the authorization code waiting to be exchanged, and the shape
of what LWA hands out: ``Atza|`` access tokens, ``Atzr|`` refresh tokens,
``amzn1.account.`` user ids and scope lists.  Nothing here does I/O or holds
shared state.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import string
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["BUILTIN_CUSTOMERS", "Customer"]

_ACCESS_TOKEN_TTL: Final = 3600
_CODE_TTL: Final = 300.0
_TOKEN_ALPHABET_UPPER: Final = string.ascii_uppercase + string.digits


@dataclasses.dataclass(frozen=True, slots=True)
class Customer:
    """An Amazon customer as LWA exposes it through the profile endpoint.

    :param user_id: ``amzn1.account.`` followed by 26 upper-case letters and
        digits; stable across logins, and the same in every app of the
        emulator's company (another company's apps see another id:
        ``LWAEmulator.user_id_for``).
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
class _Grant:
    """What an access token stands for.  Never holds the token itself."""

    customer: Customer
    scopes: tuple[str, ...]
    aud: str
    issued_at: float
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingCode:
    """What an authorization code stands for until it is exchanged (or expires).

    ``code_challenge`` is empty when the authorize request sent none; then
    ``code_challenge_method`` is empty too.
    """

    customer: Customer
    scopes: tuple[str, ...]
    client_id: str
    redirect_uri: str
    expires_at: float
    code_challenge: str = ""
    code_challenge_method: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _RefreshGrant:
    """What a refresh token stands for.  Never holds the token itself."""

    customer: Customer
    scopes: tuple[str, ...]
    client_id: str


@dataclasses.dataclass(slots=True)
class _Client:
    """An app registered with the emulator: LWA's security profile.

    ``redirect_uris`` are its Allowed Return URLs, matched exactly; their
    origins are its Allowed Origins (CORS on the token endpoint).
    """

    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    redirect_uris: list[str] = dataclasses.field(default_factory=list)

    def allows_origin(self, origin: str) -> bool:
        """Whether ``origin`` (as a browser names it) is the origin of a return
        URL, compared as origins (RFC 6454, as ``SignIn`` does): lower-cased
        host, no default port. Only a browser's canonical spelling passes,
        since callers echo it into a header or a page."""
        # Here, as in the gate: importing the emulator does not load sign-in.
        from lwa_middleware.signin._origins import canonical_origin

        if canonical_origin(origin, bare=True) != origin:
            return False
        return any(canonical_origin(uri) == origin for uri in self.redirect_uris)


def _new_client_secret() -> str:
    # The shape of LWA's client secrets.
    return "amzn1.oa2-cs.v1." + secrets.token_hex(32)


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


def _grant_from_spec(spec: Mapping[str, object], default_aud: str, now: float) -> _Grant:
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
    return _Grant(customer, scopes, aud, now, now + float(expires_in))
