"""Who is calling: the immutable :class:`Identity`, the scope rules of LWA,
and :func:`get_identity`, which reads the identity back in any framework."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import DEFAULT_REALM, InsufficientScope

__all__ = [
    "IDENTITY_KEY",
    "REALM_KEY",
    "Identity",
    "check_scopes",
    "expand_scopes",
    "get_identity",
    "infer_scopes",
    "missing_scopes",
    "realm_of",
]

PROFILE = "profile"
PROFILE_USER_ID = "profile:user_id"
POSTAL_CODE = "postal_code"

#: A granted scope also satisfies the scopes it implies.
_IMPLIES: dict[str, frozenset[str]] = {PROFILE: frozenset({PROFILE_USER_ID})}


def infer_scopes(
    *, user_id: str | None, name: str | None, email: str | None, postal_code: str | None
) -> frozenset[str]:
    """Scopes a profile answer proves, since tokeninfo does not list them.

    ``name`` or ``email`` prove ``profile``; ``user_id`` alone proves
    ``profile:user_id``; ``postal_code`` proves ``postal_code``.
    """
    return _scope_set(
        name is not None or email is not None, user_id is not None, postal_code is not None
    )


@functools.lru_cache(maxsize=8)
def _scope_set(profile: bool, user_id: bool, postal_code: bool) -> frozenset[str]:
    # Memoised so that a hundred thousand cached identities share a handful
    # of frozensets instead of owning one each.
    scopes: set[str] = set()
    if profile:
        scopes.add(PROFILE)
    elif user_id:
        scopes.add(PROFILE_USER_ID)
    if postal_code:
        scopes.add(POSTAL_CODE)
    return frozenset(scopes)


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` plus everything they imply (``profile`` ⇒ ``profile:user_id``)."""
    return _expand(scopes if isinstance(scopes, frozenset) else frozenset(scopes))


@functools.lru_cache(maxsize=256)
def _expand(scopes: frozenset[str]) -> frozenset[str]:
    expanded = set(scopes)
    for scope in scopes:
        expanded |= _IMPLIES.get(scope, frozenset())
    return frozenset(expanded)


def missing_scopes(granted: frozenset[str], required: frozenset[str]) -> frozenset[str]:
    """The required scopes that ``granted`` (already expanded) does not satisfy."""
    return required - granted


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The LWA customer behind a request, as LWA vouched for it.

    Instances are immutable and never hold the access token, so they are safe
    to log, cache, pickle or hand to templates.

    It also quacks like a Starlette user (``is_authenticated``,
    ``display_name``, ``identity``), which is what the ASGI middleware puts in
    ``scope["user"]``.

    :param user_id: LWA's stable customer id (``amzn1.account.…``).
    :param email: primary email, when the token has the ``profile`` scope.
    :param name: customer name, when the token has the ``profile`` scope.
    :param postal_code: when the token has the ``postal_code`` scope.
    :param scopes: the scopes the token was proven to hold.
    :param client_id: the token's ``aud``: the client it was issued to.
    :param expires_at: epoch seconds at which the token expires.
    """

    user_id: str
    email: str | None = None
    name: str | None = None
    postal_code: str | None = None
    scopes: frozenset[str] = frozenset()
    client_id: str
    expires_at: float

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name or self.email or self.user_id

    @property
    def identity(self) -> str:
        return self.user_id

    def has_scopes(self, *required: str) -> bool:
        """Whether the token holds every scope in ``required`` (with implication)."""
        return not missing_scopes(expand_scopes(self.scopes), frozenset(required))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, scopes sorted."""
        data = dataclasses.asdict(self)
        data["scopes"] = sorted(self.scopes)
        return data


def check_scopes(granted: frozenset[str], required: frozenset[str]) -> None:
    """Raise :class:`InsufficientScope` unless ``granted`` (expanded) covers ``required``.

    The one scope decision: route policies and per-view decorators both use it.
    """
    if required and not required <= granted:
        raise InsufficientScope(required, missing=required - granted)


#: The key under which both middlewares store the identity.
IDENTITY_KEY = "lwa.identity"
#: The key under which both middlewares publish their realm, so per-view
#: checks answer with the same challenge without being told it again.
REALM_KEY = "lwa.realm"


def realm_of(environ_or_scope: Mapping[str, Any]) -> str:
    """The realm the middleware that judged this request answers with."""
    realm = environ_or_scope.get(REALM_KEY)
    return realm if isinstance(realm, str) else DEFAULT_REALM


def get_identity(source: Any) -> Identity | None:
    """The :class:`Identity` of a request, or ``None`` when anonymous or unprotected.

    :param source: an ASGI scope or WSGI environ (any mapping), or a request
        object exposing ``.scope`` (Starlette, FastAPI, Litestar, Quart,
        Falcon ASGI), ``.environ`` (Werkzeug, Flask), ``.META`` (Django) or
        ``.env`` (Falcon WSGI).
    :raises TypeError: for anything else, so a wrong argument is caught early.

    Example::

        @app.route("/me")
        def me():
            identity = get_identity(flask.request)
            return {"user_id": identity.user_id if identity else None}
    """
    if isinstance(source, Mapping):
        mappings: list[Mapping[str, Any]] = [source]
    else:
        # Django's ASGIRequest has both .scope and .META; the identity is in
        # whichever the middleware in use wrote to, so look in each.
        mappings = [
            candidate
            for attribute in ("scope", "environ", "META", "env")
            if isinstance(candidate := getattr(source, attribute, None), Mapping)
        ]
        if not mappings:
            raise TypeError(
                "get_identity() takes an ASGI scope, a WSGI environ, or a request with "
                f".scope, .environ, .META or .env, not {type(source).__name__}"
            )
    for mapping in mappings:
        identity = mapping.get(IDENTITY_KEY)
        if isinstance(identity, Identity):
            return identity
    return None
