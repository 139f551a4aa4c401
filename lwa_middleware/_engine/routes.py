"""Per-route policy: which requests need a token, and which scopes.

Patterns are compiled once, at construction:

* an exact path (``/me``) lands in a dict, so its lookup is one hash probe;
* ``*`` stands for exactly one non-empty path segment (``/users/*/orders``);
* a trailing ``/**`` matches the prefix itself and everything under it
  (``/static/**`` matches ``/static`` and ``/static/a/b``).

Precedence: an exact pattern beats any wildcard; among wildcards the longest
pattern wins. All wildcards are folded into one alternation regex ordered by
that precedence, and its answers are memoised per path in a bounded LRU, so a
lookup never walks a list in Python.

Paths are matched after folding repeated slashes and a trailing slash, which
frameworks route to the same view. A path with ``.`` or ``..`` segments is
judged by the *stricter* of its raw and resolved forms: the app might route
either, and a traversal must never make a protected view look public.
"""

from __future__ import annotations

import difflib
import enum
import functools
import posixpath
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .identity import POSTAL_CODE, PROFILE, PROFILE_USER_ID, expand_scopes

__all__ = ["Access", "Policy", "PolicySpec", "RouteTable", "revalidate", "wsgi_path"]


#: The scopes an LWA profile answer can prove; see :func:`~.identity.infer_scopes`.
PROVABLE_SCOPES = frozenset({PROFILE, PROFILE_USER_ID, POSTAL_CODE})

#: Markers in ``Policy.hot`` and ``Entry.serves``; not scope names (they hold a NUL).
PROFILE_FETCHED = "\0profile-fetched"
NEVER_CACHED = "\0never-cached"


class Access(enum.IntEnum):
    """How much a route asks for, ordered from least to most."""

    PUBLIC = 0
    OPTIONAL = 1
    REQUIRED = 2


#: What users write: ``"public"``, ``"optional"``, ``"required"`` or scope names.
PolicySpec = str | Collection[str]


@dataclass(frozen=True, slots=True)
class Policy:
    """A compiled policy. ``scopes`` is only ever non-empty when ``REQUIRED``.

    ``needs_profile`` tells whether the identity needs a profile call, or
    tokeninfo is enough: tokeninfo already proves ``user_id``, so only richer
    scopes need the profile. An empty scope set still wants the profile, to
    fill the identity's name and email.

    ``revalidate`` makes every request on the route ask LWA again instead of
    trusting the cache (see :func:`revalidate`).
    """

    access: Access
    scopes: frozenset[str] = frozenset()
    revalidate: bool = False
    needs_profile: bool = field(init=False, compare=False)

    #: What a cached entry must hold to answer a request here at all: a
    #: marker for "the profile was fetched" when needed, and a marker no entry
    #: holds when the route revalidates (see ``Entry.serves``).
    needs: frozenset[str] = field(init=False, compare=False, repr=False)
    #: ``needs`` plus the scopes: what an entry must hold to be served on the
    #: hot path with no further check, as one set, so one C-level subset test
    #: replaces three checks per request.
    hot: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Precomputed: they are read on every request.
        needs = not self.scopes or bool(expand_scopes(self.scopes) - {"profile:user_id"})
        object.__setattr__(self, "needs_profile", needs)
        markers = set()
        if needs:
            markers.add(PROFILE_FETCHED)
        if self.revalidate:
            markers.add(NEVER_CACHED)
        object.__setattr__(self, "needs", frozenset(markers))
        object.__setattr__(self, "hot", frozenset(markers | self.scopes))

    @classmethod
    def parse(cls, spec: PolicySpec | Policy, where: str = "policy") -> Policy:
        if isinstance(spec, Policy):
            return spec
        if isinstance(spec, str):
            try:
                return _NAMED[spec.lower()]
            except KeyError:
                raise ConfigurationError(_unknown_policy(spec, where)) from None
        if not isinstance(spec, Collection):
            raise ConfigurationError(f"{where}: a policy is a string or a list of scopes")
        scopes = frozenset(spec)
        for scope in scopes:
            if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
                raise ConfigurationError(f"{where}: {scope!r} is not a scope name")
            if scope not in PROVABLE_SCOPES:
                # LWA's profile can only prove these: any other name would
                # refuse every token on the route.
                near = difflib.get_close_matches(scope, sorted(PROVABLE_SCOPES), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise ConfigurationError(
                    f"{where}: LWA cannot prove the scope {scope!r}, so every token would be "
                    f"refused; {hint}use {', '.join(map(repr, sorted(PROVABLE_SCOPES)))}"
                )
        return cls(Access.REQUIRED, scopes)

    def stricter(self, other: Policy) -> Policy:
        if self.access != other.access:
            winner = self if self.access > other.access else other
            return Policy(winner.access, winner.scopes, self.revalidate or other.revalidate)
        return Policy(self.access, self.scopes | other.scopes, self.revalidate or other.revalidate)


def revalidate(spec: PolicySpec | Policy = "required") -> Policy:
    """A policy whose requests always ask LWA, for sensitive routes.

    Use it where a revoked token must stop working at once (payments,
    account changes): the cache is not trusted for these requests, though
    concurrent lookups of one token are still shared, and the fresh answer
    refreshes the cache for other routes. It costs one LWA round trip per
    request, so keep it to the few routes that need it.

    Example::

        routes={"/account/delete": revalidate(), "/checkout/**": revalidate(["postal_code"])}
    """
    policy = Policy.parse(spec, "revalidate()")
    if policy.access is not Access.REQUIRED:
        raise ConfigurationError("revalidate() applies to 'required' or scope policies")
    return Policy(policy.access, policy.scopes, revalidate=True)


_NAMED = {
    "public": Policy(Access.PUBLIC),
    "optional": Policy(Access.OPTIONAL),
    "required": Policy(Access.REQUIRED),
}

_SLASHES = re.compile(r"//+")

#: Longest path (in characters) whose policy is memoised; see RouteTable.
MEMO_MAX_PATH = 512


def _fold(path: str) -> str:
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def wsgi_path(native: str) -> str:
    """A PEP 3333 path (latin-1 decoded bytes) as the UTF-8 text ASGI servers give."""
    if native.isascii():
        return native
    return native.encode("latin-1", "replace").decode("utf-8", "replace")


def _has_dot_segment(path: str) -> bool:
    return any(seg in (".", "..") for seg in path.split("/"))


#: Path parameters of Starlette/FastAPI (``{id}``), Flask/Werkzeug (``<int:id>``)
#: and Express-style routers (``:id``): not this table's syntax.
_PLACEHOLDER = re.compile(r"\{[^/]*\}|<[^/]*>|(?:^|/):[^/]+")


def _refuse_placeholders(pattern: str) -> None:
    # Taken literally, "/users/{id}" would match no request, so the route
    # would silently fall to the default: protection lost without a word.
    found = _PLACEHOLDER.search(pattern)
    if found is not None:
        fixed = _PLACEHOLDER.sub(lambda m: "/*" if m.group().startswith("/") else "*", pattern)
        raise ConfigurationError(
            f"route {pattern!r}: {found.group().lstrip('/')!r} is a framework's path "
            f"parameter, which this table would match literally; write {fixed!r} "
            "('*' is one segment, a trailing '/**' a whole subtree)"
        )


def _pattern_regex(pattern: str) -> str:
    prefix = pattern[:-3] if pattern.endswith("/**") else pattern
    parts = []
    for segment in prefix.split("/")[1:] if prefix else []:
        if segment == "*":
            parts.append("/[^/]+")
        elif "*" in segment:
            raise ConfigurationError(
                f"route {pattern!r}: '*' must be a whole segment, '**' only at the end"
            )
        else:
            parts.append("/" + re.escape(segment))
    body = "".join(parts)
    if pattern.endswith("/**"):
        return body + "(?:/.*)?" if body else "(?:/.*)?"
    return body


class RouteTable:
    """Maps a request path to its :class:`Policy`.

    :param routes: pattern → policy spec.
    :param default: the policy for paths no pattern matches.
    :param cache_size: how many distinct wildcard-matched paths to memoise.
    """

    #: ``lookup(path) -> Policy`` for a decoded path, as ASGI and WSGI give it:
    #: :meth:`_resolve`, memoised in a plain dict for paths up to
    #: :data:`MEMO_MAX_PATH` characters (at most ``cache_size`` of them).
    lookup: Callable[[str], Policy]
    #: ``memo_get(path) -> Policy | None``: the memo's ``dict.get``, so a hot
    #: path finds a path seen before with one C call (``None``: call :attr:`lookup`).
    memo_get: Callable[[str], Policy | None]
    #: ``lookup_mounted(path, root_path)``: the policy of an ASGI request below
    #: a non-empty ``root_path`` (see :meth:`_resolve_forms`).
    lookup_mounted: Callable[[str, str], Policy]
    #: ``lookup_below(path_info, script_name)``: the same for WSGI.
    lookup_below: Callable[[str, str], Policy]

    def __init__(
        self,
        routes: Mapping[str, PolicySpec | Policy] | None,
        default: PolicySpec | Policy = "required",
        *,
        cache_size: int = 4096,
    ) -> None:
        self.default = Policy.parse(default, "default")
        self._exact: dict[str, Policy] = {}
        wild: list[tuple[tuple[int, int], str, Policy]] = []
        if routes is not None and not isinstance(routes, Mapping):
            raise ConfigurationError(
                f"routes must be a mapping of pattern to policy, such as "
                f"{{'/health': 'public'}}, not a {type(routes).__name__}; "
                "for a list of (pattern, policy) pairs, pass dict(pairs)"
            )
        for pattern, spec in (routes or {}).items():
            if not isinstance(pattern, str) or not pattern.startswith("/"):
                raise ConfigurationError(f"route {pattern!r}: a pattern starts with '/'")
            _refuse_placeholders(pattern)
            policy = Policy.parse(spec, f"route {pattern!r}")
            if "*" not in pattern:
                self._exact[_fold(pattern)] = policy
                continue
            regex = _pattern_regex(_fold(pattern))
            literal = sum(1 for s in pattern.split("/") if s and "*" not in s)
            wild.append(((len(pattern), literal), regex, policy))
        wild.sort(key=lambda item: item[0], reverse=True)
        self._wild_policies = [policy for _, _, policy in wild]
        self._regex = (
            re.compile("|".join(f"(?P<r{i}>{rx})" for i, (_, rx, _) in enumerate(wild)), re.DOTALL)
            if wild
            else None
        )
        memo: dict[str, Policy] = {}
        memo_forms = functools.lru_cache(maxsize=cache_size)(self._resolve_forms)
        resolve, resolve_forms = self._resolve, self._resolve_forms

        # Only short paths are memoised: a client choosing 4096 distinct 60 KiB
        # paths would otherwise pin 240 MiB in the memo. Real routes are far
        # shorter than the cap; a longer path costs one match, unmemoised.
        # Full, the memo starts over (a dict's operations are atomic under the
        # GIL, so WSGI threads need no lock): distinct paths past cache_size
        # cost a match each, as with any LRU.
        def lookup(path: str) -> Policy:
            policy = memo.get(path)
            if policy is None:
                policy = resolve(path)
                if len(path) <= MEMO_MAX_PATH:
                    if len(memo) >= cache_size:
                        memo.clear()
                    memo[path] = policy
            return policy

        def forms(inner: str, outer: str) -> Policy:
            if len(outer) <= MEMO_MAX_PATH:
                return memo_forms(inner, outer)
            return resolve_forms(inner, outer)

        def lookup_mounted(path: str, root_path: str) -> Policy:
            # ASGI: uvicorn and Starlette put root_path in path, hypercorn does
            # not; the app strips it when there (Starlette's get_route_path,
            # Django's removeprefix), so do the same to find what it routes on.
            root = root_path.rstrip("/")
            if path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
                return forms(path[len(root) :] or "/", path)
            return forms(path, root + path)

        def lookup_below(path_info: str, script_name: str) -> Policy:
            # WSGI: PATH_INFO never includes SCRIPT_NAME.
            if not script_name:
                return lookup(path_info)
            return forms(path_info, script_name.rstrip("/") + path_info)

        self.lookup = lookup
        self.memo_get = memo.get
        self.lookup_mounted = lookup_mounted
        self.lookup_below = lookup_below

    def _explicit(self, path: str) -> Policy | None:
        """The policy of the pattern ``path`` matches, or ``None`` (the default applies)."""
        policy = self._exact.get(path)
        if policy is not None:
            return policy
        if self._regex is not None:
            match = self._regex.fullmatch(path)
            if match is not None and match.lastgroup is not None:
                return self._wild_policies[int(match.lastgroup[1:])]
        return None

    def _match(self, path: str) -> Policy:
        policy = self._explicit(path)
        return self.default if policy is None else policy

    def _resolve(self, path: str) -> Policy:
        if "\n" in path or "\r" in path:
            # Python's "$" also matches before a final newline, so Starlette
            # routes "/admin\n" to "/admin": judge both, keep the stricter.
            trimmed = path.rstrip("\r\n") or "/"
            return self._resolve_plain(path).stricter(self._resolve_plain(trimmed))
        return self._resolve_plain(path)

    def _resolve_forms(self, inner: str, outer: str) -> Policy:
        """The policy of a request to a mounted app, given both forms of its path.

        ``inner`` is the path the app routes on (below its mount point),
        ``outer`` the full path (mount point included). Patterns may be
        written either way, so both are looked up, and an *explicit* match
        beats the default of the other form: ``{"/health": "public"}`` makes
        ``/api/health`` public below ``/api``, and so does
        ``{"/api/health": "public"}``; ``{"/api/admin": "required"}`` protects
        ``/admin`` below ``/api`` even where the default is public. When both
        forms match a pattern, the stricter wins. A path with dot segments or
        newlines is judged by the stricter of every reading, default included:
        those are the forms a bypass would use.
        """
        if "/." in outer or "\n" in outer or "\r" in outer:
            return self.lookup(outer).stricter(self.lookup(inner))
        below = self._explicit(_fold(inner))
        full = self._explicit(_fold(outer))
        if below is None:
            return self.default if full is None else full
        return below if full is None else below.stricter(full)

    def _resolve_plain(self, path: str) -> Policy:
        path = _fold(path) if path else "/"
        if "/." in path and _has_dot_segment(path):
            resolved = _fold(posixpath.normpath(path)) if path.startswith("/") else path
            return self._match(path).stricter(self._match(resolved))
        return self._match(path)


def _unknown_policy(spec: str, where: str) -> str:
    """Says what ``spec`` probably meant: a misspelt name, or a scope that
    belongs in a list (``"postal_code"`` is not a policy, ``["postal_code"]`` is)."""
    if spec in PROVABLE_SCOPES:
        hint = f"a scope goes in a list: [{spec!r}]"
    else:
        near = difflib.get_close_matches(spec.lower(), sorted(_NAMED), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        hint += "use 'public', 'optional', 'required' or a list of scopes such as ['profile']"
    return f"{where}: unknown policy {spec!r}; {hint}"
