"""The ``redis_url`` option's forms, parsed and checked without redis-py.

Kept below :mod:`lwa_middleware.config` (stdlib only) so that configuration
can refuse a malformed URL at construction, while
:mod:`lwa_middleware.shared_cache._topology` builds the clients from the same
parse. No message ever quotes the URL: it may hold a password.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError

__all__ = [
    "check_redis_url",
    "is_cluster_url",
    "is_sentinel",
    "is_tls",
    "parse_cluster",
    "parse_sentinel",
]

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME, *CLUSTER_SCHEMES)

#: Query options of ``redis_url`` that redis-py would let override the
#: deadlines, retries and pool this library sets (its query string wins over
#: keyword arguments): refused, so Redis can never hang a request.
_DEADLINES = frozenset(
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


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_tls(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("rediss", "rediss+cluster")


def _nodes(netloc: str, what: str) -> tuple[list[tuple[str, int]], dict[str, str], str]:
    """``(nodes, credentials, userinfo)`` of a ``[user:password@]host:port[,...]``."""
    credentials: dict[str, str] = {}
    userinfo = ""
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            credentials["username"] = unquote(user)
        if password:
            credentials["password"] = unquote(password)
    nodes: list[tuple[str, int]] = []
    for node in netloc.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"each {what} must be host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, credentials, userinfo


def parse_cluster(url: str) -> tuple[list[tuple[str, int]], str]:
    """``(nodes, URL of the first node)`` of a ``redis+cluster://`` URL: the
    node's URL carries the credentials and query options, for redis-py to
    parse. ``ValueError`` (never echoing the URL) if malformed."""
    parts = urlsplit(url)
    nodes, _, userinfo = _nodes(parts.netloc, "Cluster node")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0: give no path, or /0")
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    host, port = nodes[0]
    host = f"[{host}]" if ":" in host else host
    scheme = "rediss" if is_tls(url) else "redis"
    first = f"{scheme}://{userinfo + '@' if userinfo else ''}{host}:{port}/0"
    return nodes, first + (f"?{parts.query}" if parts.query else "")


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int, dict[str, str]]:
    """``(sentinels, service, db, credentials)`` of a ``redis+sentinel://`` URL;
    ``ValueError`` (never echoing the URL, which may hold a password) if malformed."""
    parts = urlsplit(url)
    nodes, credentials, _ = _nodes(parts.netloc, "Sentinel")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /service or /service/db")
    return nodes, path[0], int(path[1]) if len(path) == 2 else 0, credentials


def check_redis_url(url: str) -> None:
    """Raise :class:`ConfigurationError` unless ``url`` is a ``redis_url`` this
    library can use (a known scheme, a well-formed Sentinel or Cluster URL, no
    query option that would override its deadlines)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise ConfigurationError(
            "redis_url must be redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// (rediss+cluster:// for TLS)"
        )
    try:
        if is_sentinel(url):
            parse_sentinel(url)
        elif is_cluster_url(url):
            parse_cluster(url)
    except ValueError as exc:
        form = (
            "redis+sentinel://[:password@]host:port[,host:port]/service[/db]"
            if is_sentinel(url)
            else "redis+cluster://[user:password@]host:port[,host:port...][?options]"
        )
        raise ConfigurationError(f"redis_url: {exc} ({form})") from None
    # Issue 14: the names only, never the URL (it may hold a password).
    names = {part.split("=", 1)[0].lower() for part in urlsplit(url).query.split("&") if part}
    given = sorted(names & _DEADLINES)
    if given:
        raise ConfigurationError(
            f"redis_url must not set {', '.join(given)}: the shared cache sets every Redis "
            "deadline itself (redis_timeout for each call, a longer budget for TLS connects "
            "and for revoke()/invalidate()) and never retries in redis-py; remove them and "
            "tune redis_timeout instead"
        )
