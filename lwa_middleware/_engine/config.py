"""Options shared by both middlewares, declared once and validated once at construction.

:data:`OPTIONS` declares every option (name, type, default, environment
variable, doc, check; see :mod:`lwa_middleware._options`); ``docs/options.md``
shows it as a table. The ``LWA_*`` environment variables it names are read
when the keyword is not given, so a twelve-factor deployment needs no code
change; an explicit keyword always wins over the environment.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from . import _checks as check
from ._checks import REGIONS
from ._checks import _is_loopback as _is_loopback
from ._options import (
    COMPUTED,
    Option,
    boolean,
    checking,
    comma_list,
    count,
    flag,
    from_environment,
    function,
    number,
    seconds,
    seconds_or_zero,
    whole,
)
from ._redis_url import check_redis_url
from .clock import Clock, check_clock, monotonic_of
from .errors import DEFAULT_REALM, ConfigurationError
from .routes import Policy, PolicySpec, RouteTable
from .tokens import TOKEN_SOURCES

if TYPE_CHECKING:
    from ..signin._source import SessionSource

__all__ = ["OPTIONS", "REGIONS", "Options", "Settings"]

_S = "`float` seconds"

#: Every option of both middlewares, in the order the docs list them.
OPTIONS: tuple[Option, ...] = (
    Option(
        "client_id", "`str | Collection[str]`", COMPUTED,
        "your LWA client id(s); a token whose `aud` is not one of them is refused. Required.",
        env="LWA_CLIENT_ID", parse=comma_list, shown="`$LWA_CLIENT_ID` (comma-separated)",
    ),
    Option(
        "api_base_url", "`str`", REGIONS["na"],
        "LWA API origin. Plain `http://` is refused unless the host is loopback (the emulator).",
        env="LWA_API_BASE_URL", env_unless=("region",),
    ),
    Option(
        "region", '`"na" | "eu" | "fe"`', None,
        "`api.amazon.com`, `api.amazon.co.uk` or `api.amazon.co.jp`, instead of `api_base_url`",
        check.check_region, env="LWA_REGION", env_unless=("api_base_url",),
    ),
    Option("routes", "`Mapping[str, policy]`", COMPUTED, "path pattern → policy", shown="`{}`"),
    Option("default", "policy", "required", "policy for paths no pattern matches"),
    Option(
        "cache_ttl", _S, 300.0,
        "how long a resolved token is served without asking LWA; also the longest a revocation "
        "goes unnoticed. Never past the token's expiry. `0` disables the cache.",
        seconds_or_zero("cache_ttl"), env="LWA_CACHE_TTL", parse=number,
    ),
    Option(
        "cache_maxsize", "`int`", 10_000, "resolved tokens kept in memory",
        count("cache_maxsize"), env="LWA_CACHE_MAXSIZE", parse=whole,
    ),
    Option(
        "negative_cache_ttl", _S, 30.0,
        "how long a token LWA rejected is remembered (`0` disables)",
        seconds_or_zero("negative_cache_ttl"),
    ),
    Option(
        "negative_cache_maxsize", "`int`", 10_000, "rejections kept",
        count("negative_cache_maxsize"),
    ),
    Option(
        "warm_connections", "`bool`", True,
        "at warm start (WSGI: construction; ASGI: lifespan startup) open the first lookup's "
        "TLS connections to LWA, sending nothing; off: the first lookup opens them (for "
        "tests and tools that must not reach the network)",
        flag("warm_connections"), env="LWA_WARM_CONNECTIONS", parse=boolean,
    ),
    Option(
        "stale_if_error", "`bool`", False,
        "while LWA fails, keep serving a cached identity whose token has not expired "
        "(instead of 503)",
        flag("stale_if_error"),
    ),
    Option(
        "timeout", _S, 5.0,
        "overall deadline of one lookup (both calls, every byte), counted from when it gets its "
        "in-flight slot",
        seconds("timeout"),
    ),
    Option(
        "connect_timeout", _S, 2.0, "TCP/TLS connect deadline", seconds("connect_timeout"),
    ),
    Option(
        "verify", "`bool | str | ssl.SSLContext`", True,
        "how LWA's TLS certificate is checked: `True` (the system's CA store, or "
        "`$SSL_CERT_FILE` / `$SSL_CERT_DIR`), a CA file or directory, or an `SSLContext` (e.g. "
        "`verify=lwa.ca_file` for `LWAEmulator(tls=True)`). `False`, or a context that checks "
        "nothing, is refused unless `api_base_url` is on loopback",
    ),
    Option(
        "max_response_bytes", "`int`", 64 * 1024, "larger LWA answers are refused unread (503)",
        count("max_response_bytes"),
    ),
    Option(
        "max_concurrent_lookups", "`int`", 100,
        "cap on LWA lookups in flight; beyond it, a request waits up to `timeout` for a slot, "
        "then 503 (`Saturated`, which never opens the breaker). Tokens not shaped like LWA's "
        "(`Atza\\|…`) hold at most half the slots",
        count("max_concurrent_lookups"),
    ),
    Option(
        "breaker_threshold", "`int`", 5,
        "consecutive LWA failures that open the circuit breaker", count("breaker_threshold"),
    ),
    Option(
        "breaker_cooldown", _S, 5.0, "how long the breaker fails fast before one probe",
        seconds("breaker_cooldown"),
    ),
    Option(
        "clock", "clock", time,
        "what reads time: an object with `monotonic()` and `time()`, like the `time` module; "
        "the same one `SignIn` and `LWAEmulator` take. Read here: `monotonic()`, the clock of "
        "the caches (entries, rejections, revocations, token expiry), the circuit breaker, the "
        "warning throttles and the lookup timings of `on_event`. Not of the HTTP and Redis "
        "deadlines (`timeout`, `connect_timeout`, `redis_timeout`): sockets wait in real time. "
        "Tests pass a fake one. A bare callable (read as `time.monotonic`) is deprecated",
        check_clock("clock"), shown="`time`",
    ),
    Option(
        "retry_after", "`int` seconds", 5, "`Retry-After` on 503 when LWA did not say",
        count("retry_after"),
    ),
    Option(
        "realm", "`str`", DEFAULT_REALM, "the `realm` of `WWW-Authenticate` challenges",
        check.check_realm,
    ),
    Option(
        "strip_credentials", "`bool`", False,
        "remove `Authorization`, `x-amz-access-token` and `access_token` (query string, "
        "`raw_path`, `QUERY_STRING`, `REQUEST_URI`) before the app sees the request",
        flag("strip_credentials"),
    ),
    Option(
        "allow_preflight", "`bool`", False,
        "opt-in: let real CORS preflights (`OPTIONS` with `Origin` and "
        "`Access-Control-Request-Method`) through without a token, for a CORS layer that must "
        "sit inside (flask-cors); prefer CORS outside (see SECURITY.md)",
        flag("allow_preflight"),
    ),
    Option(
        "redis_url", "`str`", None,
        "`redis://`, `rediss://`, `unix://`, `redis+sentinel://host:port[,host:port]/service[/db]` "
        "or `redis+cluster://host:port[,host:port]` (`rediss+cluster://`): share resolutions "
        "between processes ([Redis and fleets](how-to/redis.md))",
        check_redis_url, env="LWA_REDIS_URL", env_unless=("redis_client",),
    ),
    Option(
        "redis_client", "callable", None,
        "instead of `redis_url`: a factory called as `redis_client(asyncio=False)` / "
        "`(asyncio=True)` returning a new redis-py client ([Redis and fleets]"
        "(how-to/redis.md#your-own-client-redis_client-iam-credentials-custom-pools))",
        check.check_redis_client,
    ),
    Option(
        "cache_key_secret", "`str | bytes`, or a list of them", None,
        "HMAC key of the Redis keys and, when set, the AES-GCM sealing of the values; a list "
        "rotates (the first writes, all read). Generated and kept in Redis if absent (values "
        "then only MAC-sealed)",
        env="LWA_CACHE_KEY_SECRET",
    ),
    Option(
        "redis_timeout", _S, 0.05, "deadline of every Redis call", seconds("redis_timeout"),
    ),
    Option(
        "local_cache_ttl", _S, 5.0,
        "with `redis_url`, while this process's revocation subscriber is not connected: how "
        "long it trusts its own copy before asking Redis again (while connected, revocations "
        "are pushed and copies live `cache_ttl`)",
        seconds("local_cache_ttl"),
    ),
    Option(
        "user_id_from_tokeninfo", "`bool`", False,
        'let `["profile:user_id"]` routes skip the profile call ([Quickstart and route '
        "policies](quickstart.md#route-policies))",
        flag("user_id_from_tokeninfo"),
    ),
    Option(
        "token_sources", 'collection of `"header"`, `"query"`, `"session"`', COMPUTED,
        "where a token is accepted; a token sent another way gets `400 invalid_request` "
        "saying why (below)",
        shown="header and query (and session with `session=`)",
    ),
    Option(
        "session", "`SignIn`", None,
        "accept the sign-in session cookie ([Sign-in](how-to/sign-in.md#sign-in))",
        check.check_session,
    ),
    Option(
        "on_event", "`Callable[[str, Mapping], None]`", None,
        "metrics hook ([Observability](observability.md))",
        function("on_event", optional=True),
    ),
    Option(
        "http_client", "callable", None,
        "a factory called as `http_client(asyncio=False)` / `(asyncio=True)` returning an "
        "`httpx2.Client` / `httpx2.AsyncClient`: a proxy, mTLS, a corporate CA, your "
        "instrumentation ([Observability](observability.md)); no cookie of its jar goes to LWA "
        "(nor one LWA set about another customer), and the jar is left as it is",
        check.check_http_client,
    ),
    Option(
        "login_redirect", "`str` path", None,
        "e.g. `signin.login_path`: a page load (`GET`/`HEAD` with `Accept: text/html`) refused "
        "for having *no* token gets `303` to `/login?next=<the page>` instead of 401; API calls "
        "and invalid tokens keep their 401",
        check.check_login_redirect,
    ),
    Option(
        "public_docs", "`bool`", True,
        "ASGI, wrapping a FastAPI app (directly or inside other layers): its `/docs`, `/redoc`, "
        "`/openapi.json` and Swagger OAuth2 redirect are public unless `routes` names them; "
        "`False` judges them like any path",
        flag("public_docs"),
    ),
)  # fmt: skip

#: Option name → its declaration.
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


#: Option name → its default (what :class:`Settings` holds when it is not given).
DEFAULTS: dict[str, Any] = {option.name: option.default for option in OPTIONS}


class Options(TypedDict, total=False):
    """Every keyword option of both middlewares, typed for type checkers.

    What each does, its default and its environment variable: :data:`OPTIONS`
    (and ``docs/options.md``, made from it). Give them as keywords
    (``LWAMiddleware(app, client_id=..., routes=...)``) or build a
    :class:`Settings` once with :meth:`Settings.from_options` and pass ``settings=``.
    """

    client_id: str | Collection[str]
    api_base_url: str
    region: str
    routes: Mapping[str, PolicySpec | Policy]
    default: PolicySpec | Policy
    cache_ttl: float
    cache_maxsize: int
    negative_cache_ttl: float
    negative_cache_maxsize: int
    timeout: float
    connect_timeout: float
    verify: str | ssl.SSLContext | bool
    max_response_bytes: int
    retry_after: int
    realm: str
    warm_connections: bool
    stale_if_error: bool
    strip_credentials: bool
    allow_preflight: bool
    max_concurrent_lookups: int
    breaker_threshold: int
    breaker_cooldown: float
    clock: Clock | Callable[[], float]
    redis_url: str | None
    redis_client: Callable[..., Any] | None
    cache_key_secret: str | bytes | Sequence[str | bytes] | None
    redis_timeout: float
    local_cache_ttl: float
    user_id_from_tokeninfo: bool
    token_sources: Collection[str]
    session: SessionSource | None
    on_event: Callable[[str, Mapping[str, Any]], None] | None
    public_docs: bool
    login_redirect: str | None
    http_client: Callable[..., Any] | None


#: Options :meth:`Settings.from_options` turns into other fields (``client_ids``,
#: ``api_base_url``, ``routes``, ``cache_key_secrets``) rather than storing as given.
_CONVERTED = frozenset(
    {"client_id", "api_base_url", "region", "routes", "default", "cache_key_secret"}
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated configuration; build it with :meth:`from_options`.

    Each field is the option of the same name (see :data:`OPTIONS`), except
    ``client_ids`` (``client_id``), ``api_base_url`` (also from ``region``),
    ``routes`` (``routes`` and ``default``) and ``cache_key_secrets``.
    """

    client_ids: frozenset[str]
    api_base_url: str
    routes: RouteTable
    cache_ttl: float = DEFAULTS["cache_ttl"]
    cache_maxsize: int = DEFAULTS["cache_maxsize"]
    negative_cache_ttl: float = DEFAULTS["negative_cache_ttl"]
    negative_cache_maxsize: int = DEFAULTS["negative_cache_maxsize"]
    timeout: float = DEFAULTS["timeout"]
    connect_timeout: float = DEFAULTS["connect_timeout"]
    verify: str | ssl.SSLContext | bool = DEFAULTS["verify"]
    max_response_bytes: int = DEFAULTS["max_response_bytes"]
    retry_after: int = DEFAULTS["retry_after"]
    realm: str = DEFAULTS["realm"]
    warm_connections: bool = DEFAULTS["warm_connections"]
    stale_if_error: bool = DEFAULTS["stale_if_error"]
    strip_credentials: bool = DEFAULTS["strip_credentials"]
    allow_preflight: bool = DEFAULTS["allow_preflight"]
    max_concurrent_lookups: int = DEFAULTS["max_concurrent_lookups"]
    breaker_threshold: int = DEFAULTS["breaker_threshold"]
    breaker_cooldown: float = DEFAULTS["breaker_cooldown"]
    clock: Callable[[], float] = time.monotonic  # the monotonic face of the option
    #: Not in the repr (nor the secrets below): it may hold a password.
    redis_url: str | None = field(default=None, repr=False)
    redis_client: Callable[..., Any] | None = DEFAULTS["redis_client"]
    #: The secret shared entries are written with (the first of ``cache_key_secrets``).
    cache_key_secret: bytes | None = field(default=None, repr=False)
    #: Every configured secret, the writing one first; entries sealed with any are read.
    cache_key_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    redis_timeout: float = DEFAULTS["redis_timeout"]
    local_cache_ttl: float = DEFAULTS["local_cache_ttl"]
    user_id_from_tokeninfo: bool = DEFAULTS["user_id_from_tokeninfo"]
    #: Where tokens are accepted from: ``"header"``, ``"query"``, ``"session"``.
    token_sources: frozenset[str] = TOKEN_SOURCES
    session: SessionSource | None = DEFAULTS["session"]
    on_event: Callable[[str, Mapping[str, Any]], None] | None = DEFAULTS["on_event"]
    public_docs: bool = DEFAULTS["public_docs"]
    login_redirect: str | None = DEFAULTS["login_redirect"]
    http_client: Callable[..., Any] | None = DEFAULTS["http_client"]

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
    def from_options(cls, **options: Any) -> Settings:
        """Validate user options (keywords of :class:`Options`), the environment
        filling what is not given.

        :raises lwa_middleware._options.OptionError: a :class:`ConfigurationError`
            naming the option, and the environment variable when it came from there.
        """
        unknown = sorted(set(options) - set(BY_NAME))
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(unknown)}")
        values, sources = from_environment(OPTIONS, options)
        given = {name: value for name, value in values.items() if not _unset(name, value)}
        for name, value in given.items():
            test = BY_NAME[name].check
            if test is not None:
                with checking(name, sources):
                    test(value)
        fields = {name: value for name, value in given.items() if name not in _CONVERTED}
        if "clock" in fields:
            fields["clock"] = monotonic_of(fields["clock"], "LWAMiddleware")
        with checking("token_sources", sources):
            fields["token_sources"] = _token_sources(given)
        with checking("redis_url", sources):
            if "redis_url" in given and "redis_client" in given:
                raise ConfigurationError(
                    "give redis_url or redis_client, not both (redis_client builds the clients "
                    "itself; LWA_REDIS_URL counts as redis_url)"
                )
        with checking("cache_key_secret", sources):
            secrets = check.key_secrets(given.get("cache_key_secret"))
        with checking("client_id", sources):
            client_ids = check.client_ids(given.get("client_id"))
        with checking("api_base_url", sources):
            base = _api_base_url(given)
        with checking("verify"):
            _check_verify(fields.get("verify", True), base)
        default = given.get("default", DEFAULTS["default"])
        with checking("default"):
            RouteTable(None, default)
        with checking("routes"):
            routes = RouteTable(given.get("routes"), default)
        return cls(
            client_ids=client_ids,
            api_base_url=base,
            routes=routes,
            cache_key_secret=secrets[0] if secrets else None,
            cache_key_secrets=secrets,
            **fields,
        )


def _unset(name: str, value: Any) -> bool:
    """``None`` is "not given" for an option with an environment variable or no
    default of its own; elsewhere it is a value, and checked."""
    option = BY_NAME[name]
    return value is None and (option.env is not None or option.default in (None, COMPUTED))


def _token_sources(given: Mapping[str, Any]) -> frozenset[str]:
    session = given.get("session")
    default = TOKEN_SOURCES | ({"session"} if session is not None else set())
    chosen = check.token_sources(given.get("token_sources", default))
    if ("session" in chosen) != (session is not None):
        raise ConfigurationError(
            "token_sources 'session' needs session=SignIn(...), and session= needs "
            "'session' in token_sources"
        )
    return chosen


def _api_base_url(given: Mapping[str, Any]) -> str:
    region = given.get("region")
    if region is not None and "api_base_url" in given:
        raise ConfigurationError("give region or api_base_url, not both")
    if region is not None:
        return REGIONS[region.lower()]
    return check.base_url(given.get("api_base_url", DEFAULTS["api_base_url"]))


def _check_verify(verify: Any, api_base_url: str) -> None:
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
    if unchecked and not _is_loopback(urlsplit(api_base_url).hostname or ""):
        raise ConfigurationError(
            "verify=False (or an SSLContext that does not check certificates and host "
            "names) is only allowed when api_base_url is on loopback: anyone on the path "
            "could impersonate LWA. To trust a private CA, pass verify='/path/to/ca.pem'"
        )
