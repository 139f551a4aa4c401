"""Options shared by both middlewares, validated once at construction.

Every option can be given as a keyword argument; the most common ones also
fall back to environment variables, so a twelve-factor deployment needs no
code change:

=====================  ==========================================
environment variable   option
=====================  ==========================================
``LWA_CLIENT_ID``      ``client_id`` (comma-separated for several)
``LWA_REGION``         ``region``
``LWA_API_BASE_URL``   ``api_base_url``
``LWA_CACHE_TTL``      ``cache_ttl``
``LWA_CACHE_MAXSIZE``  ``cache_maxsize``
``LWA_REDIS_URL``      ``redis_url``
``LWA_CACHE_KEY_SECRET``  ``cache_key_secret``
=====================  ==========================================

An explicit keyword always wins over the environment.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import ssl
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from ._observe import fields
from .errors import DEFAULT_REALM, ConfigurationError
from .routes import Policy, PolicySpec, RouteTable
from .tokens import TOKEN_SOURCES

if TYPE_CHECKING:
    from .signin._source import SessionSource

__all__ = ["REGIONS", "Options", "Settings"]

logger = logging.getLogger("lwa_middleware.config")

#: Fields computed from other options, never given directly.
_DERIVED = frozenset({"client_ids", "routes", "cache_key_secrets"})

REGIONS: dict[str, str] = {
    "na": "https://api.amazon.com",
    "eu": "https://api.amazon.co.uk",
    "fe": "https://api.amazon.co.jp",
}
CLIENT_ID_PREFIX = "amzn1.application-oa2-client."
#: LWA client secrets start so; one pasted as a client id is refused, unechoed.
CLIENT_SECRET_PREFIX = "amzn1.oa2-cs."


def _looks_like_secret(value: str) -> bool:
    """Whether any comma-separated part of ``value`` looks like a client secret.

    Secrets start with :data:`CLIENT_SECRET_PREFIX`; one pasted without it is
    long hex, which no client id is. Checked before any message quotes the
    value, since messages end up in logs.
    """
    for part in value.split(","):
        bare = part.strip().lower()
        if bare.startswith(CLIENT_SECRET_PREFIX) or (
            len(bare) >= 48 and all(c in "0123456789abcdef" for c in bare)
        ):
            return True
    return False


def _is_loopback(host: str) -> bool:
    # Only "localhost" itself: resolvers need not map *.localhost to loopback.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"api_base_url {url!r} is not a URL: {exc}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"api_base_url {url!r} must be an https:// origin")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(
            "api_base_url must not carry credentials, a query or a fragment: "
            f"give the origin only, such as {REGIONS['na']!r}"
        )
    if parts.path not in ("", "/"):
        # The endpoints are fixed paths below the origin ({origin}/auth/o2/
        # tokeninfo): with a path, every lookup would miss and answer 503.
        raise ConfigurationError(
            f"api_base_url {url!r} must be an origin without a path: use "
            f"{parts.scheme}://{parts.netloc!s} (the LWA paths are added to it)"
        )
    _refuse_signin_host(url, host)
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"api_base_url {url!r}: plain http is only allowed on loopback; "
            "tokens must not cross a network unencrypted"
        )
    del port
    return url.rstrip("/")


def _refuse_signin_host(url: str, host: str) -> None:
    """``www.amazon.*`` serves the sign-in pages, not the API: every tokeninfo
    call there would miss, and each request would answer 503."""
    if host.lower().rstrip(".").startswith("www.amazon."):
        raise ConfigurationError(
            f"api_base_url {url!r} is Amazon's sign-in host (the authorize page), not the LWA "
            f"API host: use api_base_url={REGIONS['na']!r} (or region='na'; "
            f"{REGIONS['eu']!r} is 'eu', {REGIONS['fe']!r} is 'fe')"
        )


def _validate_login_redirect(path: str | None) -> None:
    if path is None:
        return
    from .signin.cookies import safe_next

    if not isinstance(path, str) or safe_next(path, "") != path or "?" in path:
        raise ConfigurationError(
            f"login_redirect must be a path of this site such as '/login' "
            f"(signin.login_path), not {path!r}"
        )


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _client_ids(client_id: str | Collection[str] | None) -> frozenset[str]:
    if client_id is None:
        raw = os.environ.get("LWA_CLIENT_ID", "")
        client_id = [part.strip() for part in raw.split(",") if part.strip()]
    ids = frozenset([client_id] if isinstance(client_id, str) else client_id)
    if not ids:
        raise ConfigurationError(
            "client_id is required (or set LWA_CLIENT_ID): tokens issued to other "
            "clients must be refused"
        )
    for cid in ids:
        if not isinstance(cid, str) or not cid.strip():
            raise ConfigurationError(f"client_id {cid!r} is not a client id")
        if _looks_like_secret(cid):
            # Never echo it: it is a secret, and error messages end up in logs.
            raise ConfigurationError(
                "client_id holds what looks like a client *secret* (amzn1.oa2-cs.…): pass "
                "the client id (amzn1.application-oa2-client.…), and rotate the secret if "
                "it was exposed"
            )
        if cid != cid.strip() or "," in cid:
            raise ConfigurationError(
                f"client_id {cid!r} holds commas or surrounding spaces; pass several client "
                "ids as a list, such as client_id=['amzn1.application-oa2-client.a', ...]"
            )
        if not cid.startswith(CLIENT_ID_PREFIX):
            logger.warning(
                "client_id %r does not look like an LWA client id (%s…)",
                cid,
                CLIENT_ID_PREFIX,
                extra=fields("config_warning"),
            )
    return ids


def _token_sources(sources: Collection[str]) -> frozenset[str]:
    if isinstance(sources, str) or not isinstance(sources, Collection):
        raise ConfigurationError(
            f"token_sources must be a collection such as ('header',), not {sources!r}"
        )
    chosen = frozenset(sources)
    unknown = chosen - TOKEN_SOURCES - {"session"}
    if unknown or not chosen:
        raise ConfigurationError(
            f"token_sources {sorted(map(str, chosen))!r}: choose one or more of "
            f"{', '.join(map(repr, sorted(TOKEN_SOURCES | {'session'})))}"
        )
    return chosen


#: Query options of ``redis_url`` that redis-py would let override the
#: deadlines, retries and pool this library sets (its query string wins over
#: keyword arguments): refused, so Redis can never hang a request.
_REDIS_URL_DEADLINES = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "timeout",
        "retry_on_timeout",
        "retry_on_error",
        "health_check_interval",
        "max_connections",
        "socket_keepalive",
    }
)


def _secrets(given: str | bytes | Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """``cache_key_secret`` as a tuple of bytes, the writing secret first (issue 14)."""
    if given is None:
        return ()
    listed = [given] if isinstance(given, str | bytes) else list(given)
    secrets = tuple(s.encode() if isinstance(s, str) else s for s in listed)
    if not secrets or not all(isinstance(s, bytes) and s for s in secrets):
        raise ConfigurationError(
            "cache_key_secret must be a non-empty str or bytes, or a list of them "
            "(the first one writes, all are read: for rotation)"
        )
    if len(set(secrets)) != len(secrets):
        raise ConfigurationError("cache_key_secret lists the same secret twice")
    return secrets


def _refuse_redis_deadlines(url: str) -> None:
    # Issue 14: minimal addition; the names only, never the URL (it may hold a password).
    names = {part.split("=", 1)[0].lower() for part in urlsplit(url).query.split("&") if part}
    given = sorted(names & _REDIS_URL_DEADLINES)
    if given:
        raise ConfigurationError(
            f"redis_url must not set {', '.join(given)}: the shared cache sets every Redis "
            "deadline itself (redis_timeout for each call, a longer budget for TLS connects "
            "and for revoke()/invalidate()) and never retries in redis-py; remove them and "
            "tune redis_timeout instead"
        )


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster")


def _validate_redis(url: str | None, factory: Callable[..., Any] | None) -> None:
    """``redis_url`` or ``redis_client``; no message ever quotes the URL (it may
    hold a password)."""
    if factory is not None:
        if url is not None:
            raise ConfigurationError(
                "give redis_url or redis_client, not both (redis_client builds the clients "
                "itself; LWA_REDIS_URL counts as redis_url)"
            )
        _validate_factory(factory)
        return
    if url is None:
        return
    from .shared_cache import _topology

    if urlsplit(url).scheme not in _REDIS_SCHEMES:
        raise ConfigurationError(
            "redis_url must be redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// (rediss+cluster:// for TLS)"
        )
    try:
        if _topology.is_sentinel(url):
            _topology.parse_sentinel(url)
        elif _topology.is_cluster_url(url):
            _topology.parse_cluster(url)
    except ValueError as exc:
        form = (
            "redis+sentinel://[:password@]host:port[,host:port]/service[/db]"
            if _topology.is_sentinel(url)
            else "redis+cluster://[user:password@]host:port[,host:port...][?options]"
        )
        raise ConfigurationError(f"redis_url: {exc} ({form})") from None
    _refuse_redis_deadlines(url)


def _validate_factory(factory: Callable[..., Any]) -> None:
    import inspect

    hint = (
        "pass a function called as redis_client(asyncio=False) for a redis.Redis (or "
        "redis.cluster.RedisCluster) and redis_client(asyncio=True) for a redis.asyncio.Redis "
        "(or redis.asyncio.cluster.RedisCluster), such as "
        "lambda asyncio: (redis.asyncio.Redis if asyncio else redis.Redis)(host=..., "
        "socket_timeout=0.05)"
    )
    if not callable(factory) or isinstance(factory, type):
        raise ConfigurationError(f"redis_client must be a factory, not a client or a class: {hint}")
    try:
        inspect.signature(factory).bind(asyncio=False)
    except TypeError:
        raise ConfigurationError(f"redis_client must accept asyncio=: {hint}") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): trusted


def _validate_http_client(factory: Callable[..., Any] | None) -> None:
    """Call ``http_client`` both ways once, so a wrong answer fails here, at
    construction, rather than on the first request (issue 21)."""
    if factory is None:
        return
    if not callable(factory) or isinstance(factory, type):
        raise ConfigurationError(
            "http_client must be a factory called as http_client(asyncio=False) for an "
            "httpx2.Client and http_client(asyncio=True) for an httpx2.AsyncClient, not a "
            "client or a class"
        )
    import inspect

    from .upstream import checked_client

    try:
        inspect.signature(factory).bind(asyncio=False)
    except TypeError:
        raise ConfigurationError(
            "http_client must accept asyncio=: it is called as http_client(asyncio=False) "
            "and http_client(asyncio=True)"
        ) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): trusted
    checked_client(factory(asyncio=False), asyncio=False).close()
    # Never opened, so dropping it leaks nothing (it cannot be closed off a loop).
    checked_client(factory(asyncio=True), asyncio=True)


class Options(TypedDict, total=False):
    """Every keyword option of both middlewares, typed; defaults in brackets.

    Give them as keywords (``LWAMiddleware(app, client_id=..., routes=...)``)
    or build a :class:`Settings` once with :meth:`Settings.from_options` and
    pass ``settings=``.
    """

    #: Your LWA client id, or a collection of them: other ``aud`` are refused [$LWA_CLIENT_ID].
    client_id: str | Collection[str]
    #: LWA API origin [https://api.amazon.com]; plain http only on loopback [$LWA_API_BASE_URL].
    api_base_url: str
    #: ``"na"``, ``"eu"`` or ``"fe"``, instead of ``api_base_url`` [$LWA_REGION].
    region: str
    #: Path pattern → ``"public"``, ``"optional"``, ``"required"`` or a list of scopes.
    routes: Mapping[str, PolicySpec | Policy]
    #: Policy of paths no pattern matches ["required"].
    default: PolicySpec | Policy
    #: Seconds a resolved token is served without asking LWA [300] [$LWA_CACHE_TTL].
    cache_ttl: float
    #: Resolved tokens kept in memory [10000] [$LWA_CACHE_MAXSIZE].
    cache_maxsize: int
    #: Seconds a token LWA rejected is remembered [30]; 0 turns it off.
    negative_cache_ttl: float
    #: Rejections remembered [10000].
    negative_cache_maxsize: int
    #: Overall deadline of one lookup, both calls and every byte [5].
    timeout: float
    #: TCP/TLS connect deadline [2].
    connect_timeout: float
    #: Trust for LWA's TLS: a CA file/dir path or an SSLContext; False only on loopback [True].
    verify: str | ssl.SSLContext | bool
    #: Larger LWA answers are refused unread, as a 503 [65536].
    max_response_bytes: int
    #: ``Retry-After`` seconds of a 503 when LWA did not say [5].
    retry_after: int
    #: The ``realm`` of ``WWW-Authenticate`` challenges ["lwa"].
    realm: str
    #: While LWA fails, serve cached identities whose tokens are still live [False].
    stale_if_error: bool
    #: Remove the token (headers, query, raw path) before the app sees the request [False].
    strip_credentials: bool
    #: Let real CORS preflights through without a token, for a CORS layer inside [False].
    allow_preflight: bool
    #: LWA lookups in flight at once; beyond it a request waits up to ``timeout`` [100].
    max_concurrent_lookups: int
    #: Consecutive LWA failures that open the circuit breaker [5].
    breaker_threshold: int
    #: Seconds the breaker fails fast before one probe [5].
    breaker_cooldown: float
    #: The monotonic clock of every deadline and cache [time.monotonic]; tests pass a fake.
    clock: Callable[[], float]
    #: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
    #: ``redis+cluster://`` (``rediss+cluster://``): share resolutions [$LWA_REDIS_URL].
    redis_url: str | None
    #: Instead of ``redis_url``: a factory called as ``redis_client(asyncio=False)``
    #: (a ``redis.Redis``/``RedisCluster``) or ``(asyncio=True)`` (their
    #: ``redis.asyncio`` twins), each call a new client; its timeouts are yours.
    redis_client: Callable[..., Any] | None
    #: Secret keying and sealing (AES-GCM) shared entries, or a list for rotation: the
    #: first writes, all read [$LWA_CACHE_KEY_SECRET; else generated and kept in Redis].
    cache_key_secret: str | bytes | Sequence[str | bytes] | None
    #: Deadline of every Redis call on the request path [0.05].
    redis_timeout: float
    #: With Redis: seconds this process trusts its own copy before asking again [5].
    local_cache_ttl: float
    #: Let ``["profile:user_id"]`` routes skip the profile call [False].
    user_id_from_tokeninfo: bool
    #: Where tokens are accepted from: ``"header"``, ``"query"``, ``"session"`` [header, query;
    #: and session when ``session`` is given].
    token_sources: Collection[str]
    #: A session cookie source (a :class:`~lwa_middleware.signin.SignIn`) [None].
    session: SessionSource | None
    #: Metrics hook, called as ``on_event(name, data)`` [None].
    on_event: Callable[[str, Mapping[str, Any]], None] | None
    #: ASGI, wrapping a FastAPI app: its ``/docs``, ``/redoc``, ``/openapi.json`` are
    #: public unless the route table names them [True]; ``False`` judges them like any path.
    public_docs: bool
    #: A path such as ``"/login"``: a browser's page request (``GET``, ``Accept:
    #: text/html``) refused for having no token is sent there with ``?next=`` [None: 401].
    login_redirect: str | None

    #: Instead of the pooled clients: a factory called as ``http_client(asyncio=False)``
    #: (an ``httpx2.Client``) or ``(asyncio=True)`` (an ``httpx2.AsyncClient``), for a
    #: proxy, mTLS, a corporate CA or instrumentation; ``verify`` is then the client's
    #: own, and the library's deadlines still apply [None].
    http_client: Callable[..., Any] | None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated configuration; build it with :meth:`from_options`."""

    client_ids: frozenset[str]
    api_base_url: str
    routes: RouteTable
    cache_ttl: float = 300.0
    cache_maxsize: int = 10_000
    negative_cache_ttl: float = 30.0
    negative_cache_maxsize: int = 10_000
    timeout: float = 5.0
    connect_timeout: float = 2.0
    verify: str | ssl.SSLContext | bool = True
    max_response_bytes: int = 64 * 1024
    retry_after: int = 5
    realm: str = DEFAULT_REALM
    stale_if_error: bool = False
    strip_credentials: bool = False
    allow_preflight: bool = False
    max_concurrent_lookups: int = 100
    breaker_threshold: int = 5
    breaker_cooldown: float = 5.0
    #: Monotonic seconds for every deadline and cache; tests pass a fake one.
    clock: Callable[[], float] = time.monotonic
    #: Not in the repr (nor the secrets below): it may hold a password.
    redis_url: str | None = field(default=None, repr=False)
    #: A factory of redis-py clients, instead of ``redis_url`` (see :class:`Options`).
    redis_client: Callable[..., Any] | None = None
    #: The secret shared entries are written with (the first of ``cache_key_secrets``).
    cache_key_secret: bytes | None = field(default=None, repr=False)
    #: Every configured secret, the writing one first; entries sealed with any are read.
    cache_key_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    redis_timeout: float = 0.05
    local_cache_ttl: float = 5.0
    user_id_from_tokeninfo: bool = False
    #: Where tokens are accepted from: ``"header"`` and/or ``"query"``.
    token_sources: frozenset[str] = TOKEN_SOURCES
    #: The session cookie source of ``token_sources`` ``"session"``.
    session: SessionSource | None = None
    on_event: Callable[[str, Mapping[str, Any]], None] | None = field(default=None)
    #: A FastAPI app's docs pages are public (see :class:`Options`).
    public_docs: bool = True
    #: Where a browser's page request without a token is redirected (see :class:`Options`).
    login_redirect: str | None = None

    #: A factory of httpx2 clients, instead of the pooled ones (see :class:`Options`).
    http_client: Callable[..., Any] | None = None

    @property
    def uses_redis(self) -> bool:
        """Whether resolutions are shared through Redis (``redis_url`` or ``redis_client``)."""
        return self.redis_url is not None or self.redis_client is not None

    @property
    def tokeninfo_url(self) -> str:
        return self.api_base_url + "/auth/o2/tokeninfo"

    @property
    def profile_url(self) -> str:
        return self.api_base_url + "/user/profile"

    @classmethod
    def from_options(
        cls,
        *,
        client_id: str | Collection[str] | None = None,
        api_base_url: str | None = None,
        region: str | None = None,
        routes: Mapping[str, PolicySpec | Policy] | None = None,
        default: PolicySpec | Policy = "required",
        cache_ttl: float | None = None,
        cache_maxsize: int | None = None,
        redis_url: str | None = None,
        cache_key_secret: str | bytes | Sequence[str | bytes] | None = None,
        token_sources: Collection[str] | None = None,
        **rest: Any,
    ) -> Settings:
        """Validate user options; raise :class:`ConfigurationError` on any mistake."""
        unknown = set(rest) - set(cls.__dataclass_fields__) | (set(rest) & _DERIVED)
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")

        if api_base_url is None and region is None:
            api_base_url = os.environ.get("LWA_API_BASE_URL") or None
            region = os.environ.get("LWA_REGION") or None
        if api_base_url is not None and region is not None:
            raise ConfigurationError("give region or api_base_url, not both")
        if region is not None:
            try:
                api_base_url = REGIONS[region.lower()]
            except KeyError:
                raise ConfigurationError(
                    f"region {region!r} is not one of {', '.join(REGIONS)}"
                ) from None
        base = _base_url(api_base_url or REGIONS["na"])

        ttl = cache_ttl if cache_ttl is not None else _env_float("LWA_CACHE_TTL")
        maxsize = cache_maxsize
        if maxsize is None:
            env_size = _env_float("LWA_CACHE_MAXSIZE")
            maxsize = int(env_size) if env_size is not None else None
        if redis_url is None and rest.get("redis_client") is None:
            redis_url = os.environ.get("LWA_REDIS_URL") or None
        if cache_key_secret is None:
            cache_key_secret = os.environ.get("LWA_CACHE_KEY_SECRET") or None
        secrets = _secrets(cache_key_secret)

        values: dict[str, Any] = dict(rest)
        session = rest.get("session")
        if token_sources is None:
            token_sources = TOKEN_SOURCES | ({"session"} if session is not None else set())
        values["token_sources"] = _token_sources(token_sources)
        if ("session" in values["token_sources"]) != (session is not None):
            raise ConfigurationError(
                "token_sources 'session' needs session=SignIn(...), and session= needs "
                "'session' in token_sources"
            )
        if ttl is not None:
            values["cache_ttl"] = ttl
        if maxsize is not None:
            values["cache_maxsize"] = maxsize
        settings = cls(
            client_ids=_client_ids(client_id),
            api_base_url=base,
            routes=RouteTable(routes, default),
            redis_url=redis_url,
            cache_key_secret=secrets[0] if secrets else None,
            cache_key_secrets=secrets,
            **values,
        )
        settings._validate()
        return settings

    def _validate_verify(self) -> None:
        verify = self.verify
        if isinstance(verify, str):
            if not os.path.exists(verify):
                raise ConfigurationError(
                    f"verify={verify!r}: no such CA file or directory (give the path of a PEM "
                    "bundle, an ssl.SSLContext, or True for the system's CAs)"
                )
            return
        if isinstance(verify, ssl.SSLContext):
            unchecked = verify.verify_mode == ssl.CERT_NONE or not verify.check_hostname
        elif isinstance(verify, bool):
            unchecked = not verify
        else:
            raise ConfigurationError(
                f"verify must be True, a CA file path or an ssl.SSLContext, not {verify!r}"
            )
        if unchecked and not _is_loopback(urlsplit(self.api_base_url).hostname or ""):
            raise ConfigurationError(
                "verify=False (or an SSLContext that does not check certificates and host "
                "names) is only allowed when api_base_url is on loopback: anyone on the path "
                "could impersonate LWA. To trust a private CA, pass verify='/path/to/ca.pem'"
            )

    def _validate(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ConfigurationError(f"{name} must be a finite number, not {value!r}")
            if value < 0 or (value == 0 and not allow_zero):
                raise ConfigurationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}")

        positive("cache_ttl", allow_zero=True)
        positive("negative_cache_ttl", allow_zero=True)
        for name in (
            "timeout",
            "connect_timeout",
            "breaker_cooldown",
            "redis_timeout",
            "local_cache_ttl",
        ):
            positive(name)
        for name in (
            "cache_maxsize",
            "negative_cache_maxsize",
            "max_response_bytes",
            "retry_after",
            "max_concurrent_lookups",
            "breaker_threshold",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")
        for name in (
            "stale_if_error",
            "strip_credentials",
            "allow_preflight",
            "user_id_from_tokeninfo",
            "public_docs",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be True or False")
        if not callable(self.clock):
            raise ConfigurationError("clock must be callable, like time.monotonic")
        if self.on_event is not None and not callable(self.on_event):
            raise ConfigurationError("on_event must be callable")
        _validate_redis(self.redis_url, self.redis_client)
        _validate_http_client(self.http_client)
        self._validate_verify()
        _validate_login_redirect(self.login_redirect)
        if not self.realm or '"' in self.realm or "\\" in self.realm:
            raise ConfigurationError("realm must be a non-empty string without quotes")
