"""The checks of single options that need more than a type (the shared ones
are in :mod:`._options`): client ids, the API origin, token sources, cache
key secrets, factories, paths. Each raises :class:`ConfigurationError` with
a message that says what to fix, and never echoes a secret.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._login_redirect import safe_next
from ._observe import fields
from .errors import ConfigurationError
from .tokens import TOKEN_SOURCES

logger = logging.getLogger("lwa_middleware.config")

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
        # Brackets: an IPv6 host as typed in a URL or on a command line ([::1]).
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_url(url: str) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"api_base_url must be a URL, not {type(url).__name__}")
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


def check_login_redirect(path: str | None) -> None:
    if path is None:
        return
    if not isinstance(path, str) or safe_next(path, "") != path or "?" in path:
        raise ConfigurationError(
            f"login_redirect must be a path of this site such as '/login' "
            f"(signin.login_path), not {path!r}"
        )


def client_ids(client_id: str | Collection[str] | None) -> frozenset[str]:
    """``client_id`` as a set, each checked; a secret pasted instead is never echoed."""
    if not isinstance(client_id, str | Collection | None):
        raise ConfigurationError(
            f"client_id must be a client id or a list of them, not {type(client_id).__name__}"
        )
    ids = frozenset([client_id] if isinstance(client_id, str) else client_id or ())
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


def token_sources(sources: Collection[str]) -> frozenset[str]:
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


def key_secrets(given: str | bytes | Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """``cache_key_secret`` as a tuple of bytes, the writing secret first (issue 14)."""
    if given is None:
        return ()
    if not isinstance(given, str | bytes | Sequence):
        raise ConfigurationError(
            f"cache_key_secret must be a str or bytes, or a list of them, not "
            f"{type(given).__name__}"
        )
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


def _check_factory(factory: Callable[..., Any] | None, not_one: str, no_asyncio: str) -> None:
    """A factory called as ``factory(asyncio=...)``, not a client or a class."""
    if factory is None:
        return
    if not callable(factory) or isinstance(factory, type):
        raise ConfigurationError(not_one)
    try:
        inspect.signature(factory).bind(asyncio=False)
    except TypeError:
        raise ConfigurationError(no_asyncio) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): trusted


def check_redis_client(factory: Callable[..., Any] | None) -> None:
    hint = (
        "pass a function called as redis_client(asyncio=False) for a redis.Redis (or "
        "redis.cluster.RedisCluster) and redis_client(asyncio=True) for a redis.asyncio.Redis "
        "(or redis.asyncio.cluster.RedisCluster), such as "
        "lambda asyncio: (redis.asyncio.Redis if asyncio else redis.Redis)(host=..., "
        "socket_timeout=0.05)"
    )
    _check_factory(
        factory,
        f"redis_client must be a factory, not a client or a class: {hint}",
        f"redis_client must accept asyncio=: {hint}",
    )


def check_http_client(factory: Callable[..., Any] | None) -> None:
    """The signature of ``http_client``; the resolver calls it both ways once
    (:func:`lwa_middleware.upstream.check_http_client`), so a wrong answer
    still fails at construction (issue 21)."""
    _check_factory(
        factory,
        "http_client must be a factory called as http_client(asyncio=False) for an "
        "httpx2.Client and http_client(asyncio=True) for an httpx2.AsyncClient, not a "
        "client or a class",
        "http_client must accept asyncio=: it is called as http_client(asyncio=False) "
        "and http_client(asyncio=True)",
    )


def check_realm(realm: Any) -> None:
    if not isinstance(realm, str) or not realm or '"' in realm or "\\" in realm:
        raise ConfigurationError("realm must be a non-empty string without quotes")


def check_region(region: Any) -> None:
    if not isinstance(region, str) or region.lower() not in REGIONS:
        raise ConfigurationError(f"region {region!r} is not one of {', '.join(REGIONS)}")


def check_session(source: Any) -> None:
    """A session token source (a :class:`~lwa_middleware.signin.SignIn`), or ``None``."""
    needed = ("origin", "session_id", "same_origin", "access_token", "access_token_async")
    if source is not None and not all(hasattr(source, name) for name in (*needed, "attach")):
        raise ConfigurationError(
            f"session must be a SignIn (a session cookie source), not {type(source).__name__}"
        )
