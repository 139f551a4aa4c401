"""Options, validation and environment fallbacks (``Settings.from_options``)."""

from __future__ import annotations

from typing import Any

import pytest
from support.private import REGIONS, Access, Settings

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware

CLIENT = "amzn1.application-oa2-client.ours"
ENV = (
    "LWA_CLIENT_ID",
    "LWA_REGION",
    "LWA_API_BASE_URL",
    "LWA_CACHE_TTL",
    "LWA_CACHE_MAXSIZE",
    "LWA_REDIS_URL",
    "LWA_CACHE_KEY_SECRET",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def settings(**options: Any) -> Settings:
    options.setdefault("client_id", CLIENT)
    return Settings.from_options(**options)


async def _asgi(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise AssertionError("never called")


def _wsgi(environ: Any, start_response: Any) -> Any:  # pragma: no cover
    raise AssertionError("never called")


# -- api_base_url / region -----------------------------------------------------


def test_default_is_north_america() -> None:
    s = settings()
    assert s.api_base_url == "https://api.amazon.com"
    assert s.tokeninfo_url == "https://api.amazon.com/auth/o2/tokeninfo"
    assert s.profile_url == "https://api.amazon.com/user/profile"


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("na", "api.amazon.com"),
        ("eu", "api.amazon.co.uk"),
        ("fe", "api.amazon.co.jp"),
        ("EU", "api.amazon.co.uk"),
    ],
)
def test_regions(region: str, host: str) -> None:
    s = settings(region=region)
    assert s.tokeninfo_url == f"https://{host}/auth/o2/tokeninfo"
    assert s.profile_url == f"https://{host}/user/profile"
    assert REGIONS[region.lower()] == f"https://{host}"


@pytest.mark.parametrize("region", ["us", "", "jp", "north-america"])
def test_unknown_region(region: str) -> None:
    with pytest.raises(ConfigurationError):
        settings(region=region)


def test_region_and_api_base_url_conflict() -> None:
    with pytest.raises(ConfigurationError):
        settings(region="eu", api_base_url="https://api.amazon.co.uk")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.1.2.3:1",
        "http://127.255.255.254",
        "http://[::1]:9000",
        "http://localhost:5000",
        "http://localhost",
        "https://lwa.example.com",
        "https://api.amazon.com/",
    ],
)
def test_accepted_base_urls(url: str) -> None:
    s = settings(api_base_url=url)
    assert s.api_base_url == url.rstrip("/")
    assert s.tokeninfo_url == url.rstrip("/") + "/auth/o2/tokeninfo"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.amazon.com",
        "http://10.0.0.1",
        "http://192.168.1.1:8080",
        "http://[::2]:80",
        "http://128.0.0.1",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:80",
        "ftp://127.0.0.1",
        "api.amazon.com",
        "https://",
        "https://user:pass@api.amazon.com",
        "https://api.amazon.com?x=1",
        "https://api.amazon.com#frag",
        "https://api.amazon.com:notaport",
    ],
)
def test_refused_base_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        settings(api_base_url=url)


def test_middlewares_refuse_plain_http_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        LWAMiddleware(_asgi, client_id=CLIENT, api_base_url="http://example.com")
    with pytest.raises(ConfigurationError):
        LWAWSGIMiddleware(_wsgi, client_id=CLIENT, api_base_url="http://example.com")


def test_middlewares_plumb_region_and_base_url() -> None:
    assert (
        LWAMiddleware(_asgi, client_id=CLIENT, region="fe").settings.tokeninfo_url
        == "https://api.amazon.co.jp/auth/o2/tokeninfo"
    )
    assert (
        LWAWSGIMiddleware(_wsgi, client_id=CLIENT, region="eu").settings.profile_url
        == "https://api.amazon.co.uk/user/profile"
    )
    mw = LWAWSGIMiddleware(_wsgi, client_id=CLIENT, api_base_url="http://localhost:1/")
    assert mw.settings.tokeninfo_url == "http://localhost:1/auth/o2/tokeninfo"


# -- client_id -----------------------------------------------------------------


def test_client_id_forms() -> None:
    assert settings(client_id=CLIENT).client_ids == {CLIENT}
    two = [CLIENT, "amzn1.application-oa2-client.two"]
    assert settings(client_id=two).client_ids == set(two)
    assert settings(client_id=tuple(two)).client_ids == set(two)


@pytest.mark.parametrize("client_id", [[], "", "   ", [""], [None]])
def test_bad_client_ids(client_id: Any) -> None:
    with pytest.raises(ConfigurationError):
        settings(client_id=client_id)


def test_client_id_is_mandatory() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_options()
    with pytest.raises(ConfigurationError):
        LWAMiddleware(_asgi)
    with pytest.raises(ConfigurationError):
        LWAWSGIMiddleware(_wsgi)


# -- environment ---------------------------------------------------------------


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_CLIENT_ID", f"{CLIENT}, amzn1.application-oa2-client.two ,")
    monkeypatch.setenv("LWA_REGION", "eu")
    monkeypatch.setenv("LWA_CACHE_TTL", "12.5")
    monkeypatch.setenv("LWA_CACHE_MAXSIZE", "77")
    s = Settings.from_options()
    assert s.client_ids == {CLIENT, "amzn1.application-oa2-client.two"}
    assert s.api_base_url == "https://api.amazon.co.uk"
    assert s.cache_ttl == 12.5
    assert s.cache_maxsize == 77
    mw = LWAMiddleware(_asgi)
    assert mw.settings.client_ids == s.client_ids
    assert mw.settings.cache_ttl == 12.5


def test_env_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_API_BASE_URL", "http://127.0.0.1:4567")
    assert settings().tokeninfo_url == "http://127.0.0.1:4567/auth/o2/tokeninfo"
    monkeypatch.setenv("LWA_API_BASE_URL", "http://example.com")
    with pytest.raises(ConfigurationError):
        settings()


def test_env_region_and_base_url_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_REGION", "eu")
    monkeypatch.setenv("LWA_API_BASE_URL", "https://api.amazon.co.uk")
    with pytest.raises(ConfigurationError):
        settings()


def test_keywords_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_CLIENT_ID", "amzn1.application-oa2-client.env")
    monkeypatch.setenv("LWA_REGION", "fe")
    monkeypatch.setenv("LWA_CACHE_TTL", "5")
    monkeypatch.setenv("LWA_CACHE_MAXSIZE", "5")
    s = settings(api_base_url="https://lwa.example.com", cache_ttl=60, cache_maxsize=9)
    assert s.client_ids == {CLIENT}
    assert s.api_base_url == "https://lwa.example.com"
    assert s.cache_ttl == 60
    assert s.cache_maxsize == 9
    assert settings(region="na").api_base_url == "https://api.amazon.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LWA_CACHE_TTL", "five"),
        ("LWA_CACHE_TTL", "-1"),
        ("LWA_CACHE_MAXSIZE", "lots"),
        ("LWA_CACHE_MAXSIZE", "0"),
        ("LWA_REGION", "mars"),
        ("LWA_REDIS_URL", "http://127.0.0.1:6379"),
    ],
)
def test_bad_env_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        settings()


def test_empty_env_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, "")
    s = settings()
    assert s.api_base_url == "https://api.amazon.com"
    assert s.redis_url is None


# -- numbers and other options -------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cache_ttl", -1),
        ("cache_ttl", "300"),
        ("cache_maxsize", 0),
        ("cache_maxsize", 1.5),
        ("cache_maxsize", "10"),
        ("cache_maxsize", True),
        ("negative_cache_ttl", -0.1),
        ("timeout", 0),
        ("timeout", -2),
        ("timeout", True),
        ("timeout", "5"),
        ("connect_timeout", 0),
        ("max_response_bytes", 0),
        ("retry_after", 0),
        ("retry_after", 2.5),
        ("max_concurrent_lookups", 0),
        ("breaker_threshold", 0),
        ("breaker_cooldown", 0),
        ("redis_timeout", 0),
        ("realm", ""),
        ("realm", 'say "hi"'),
        ("realm", "back\\slash"),
        ("redis_url", "http://127.0.0.1:6379"),
        ("clock", 5.0),
        ("clock", "monotonic"),
    ],
)
def test_bad_option_values(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError):
        settings(**{option: value})
    with pytest.raises(ConfigurationError):
        LWAMiddleware(_asgi, client_id=CLIENT, **{option: value})
    with pytest.raises(ConfigurationError):
        LWAWSGIMiddleware(_wsgi, client_id=CLIENT, **{option: value})


def test_good_option_values() -> None:
    s = settings(
        cache_ttl=0,
        cache_maxsize=1,
        negative_cache_ttl=0,
        timeout=0.5,
        connect_timeout=0.25,
        retry_after=30,
        realm="my app",
        strip_credentials=True,
        allow_preflight=False,
        redis_url="redis://127.0.0.1:6379/0",
    )
    assert (s.cache_ttl, s.cache_maxsize, s.negative_cache_ttl) == (0, 1, 0)
    assert (s.timeout, s.connect_timeout, s.retry_after, s.realm) == (0.5, 0.25, 30, "my app")
    assert s.strip_credentials is True
    assert s.allow_preflight is False
    assert s.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("option", ["cachettl", "clientid", "route", "defaults", "client_ids"])
def test_unknown_options(option: str) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown|option"):
        settings(**{option: 1})
    with pytest.raises(ConfigurationError):
        LWAMiddleware(_asgi, client_id=CLIENT, **{option: 1})
    with pytest.raises(ConfigurationError):
        LWAWSGIMiddleware(_wsgi, client_id=CLIENT, **{option: 1})


def test_routes_and_default_are_validated_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        settings(routes={"/zip": "postal_code"})
    with pytest.raises(ConfigurationError):
        settings(default="postal_code")
    with pytest.raises(ConfigurationError):
        LWAMiddleware(_asgi, client_id=CLIENT, routes={"/x": "secret"})
    s = settings(routes={"/health": "public"}, default="optional")
    assert s.routes.lookup("/health").access is Access.PUBLIC
    assert s.routes.lookup("/other").access is Access.OPTIONAL


# -- mistakes that used to weaken or break protection silently -----------------


@pytest.mark.parametrize(
    "url", ["https://api.amazon.com/auth/o2", "https://api.amazon.com/v1/", "http://127.0.0.1:9/x"]
)
def test_api_base_url_with_a_path_is_refused_with_the_origin_to_use(url: str) -> None:
    with pytest.raises(ConfigurationError, match="without a path") as caught:
        settings(api_base_url=url)
    assert url.split("/")[2] in str(caught.value)


def test_api_base_url_credentials_are_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(api_base_url="https://user:hunter2@api.amazon.com")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "client_id",
    [
        f"{CLIENT},amzn1.application-oa2-client.theirs",
        f"{CLIENT}, amzn1.application-oa2-client.theirs",
        f" {CLIENT}",
        f"{CLIENT}\n",
        [f"{CLIENT} "],
    ],
)
def test_client_id_keyword_with_commas_or_spaces_says_to_pass_a_list(client_id: Any) -> None:
    with pytest.raises(ConfigurationError, match="as a list"):
        settings(client_id=client_id)


_SECRET = "amzn1.oa2-cs.v1.0f3c0e8a2b5d4c6e9f1a7b3d5e8c2a4f6b9d1e3f5a7c9b2d4e6f8a1c3e5b7d9f0a"


@pytest.mark.parametrize(
    "secret",
    [
        _SECRET,
        "0f3c0e8a2b5d4c6e9f1a7b3d5e8c2a4f6b9d1e3f5a7c9b2d4e6f8a1c3e5b7d9f",
        " " + _SECRET,
        _SECRET.upper(),
        f"{CLIENT},{_SECRET}",
    ],
    ids=["prefixed", "bare", "leading-space", "upper-case", "after-a-comma"],
)
def test_a_client_secret_pasted_as_client_id_is_named_and_never_echoed(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    for kind in (settings, lambda **kw: LWAMiddleware(_asgi, **kw)):
        with pytest.raises(ConfigurationError, match="client \\*secret\\*") as caught:
            kind(client_id=secret)
        assert secret not in str(caught.value)
        assert secret[-16:] not in str(caught.value)
        assert secret[-16:] not in repr(caught.value)
        with pytest.raises(ConfigurationError):
            kind(client_id=[secret])
    assert secret[-16:].lower() not in caplog.text.lower()


def test_routes_as_a_list_of_pairs_says_to_pass_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match=r"dict\(pairs\)"):
        settings(routes=[("/health", "public")])
    for middleware, app in ((LWAMiddleware, _asgi), (LWAWSGIMiddleware, _wsgi)):
        with pytest.raises(ConfigurationError, match="mapping"):
            middleware(app, client_id=CLIENT, routes=[("/health", "public")])  # type: ignore[arg-type]


@pytest.mark.parametrize("sources", ["header", (), ["header", "cookie"], [1]])
def test_bad_token_sources(sources: Any) -> None:
    with pytest.raises(ConfigurationError, match="token_sources"):
        settings(token_sources=sources)


def test_token_sources_default_to_header_and_query() -> None:
    assert settings().token_sources == frozenset({"header", "query"})
    assert settings(token_sources=["header"]).token_sources == frozenset({"header"})


def test_the_settings_repr_shows_no_password_nor_secret() -> None:
    """Settings is public (``middleware.settings``) and a dataclass: its repr
    must not print the Redis password of the URL nor the key secrets."""
    for url in ("redis+cluster://lwa:hunter2-pw@127.0.0.1:7000",
                "rediss://:hunter2-pw@127.0.0.1:6380/0"):
        settings = Settings.from_options(
            client_id="amzn1.application-oa2-client.repr", redis_url=url,
            cache_key_secret=["secret-one-0123456789", "secret-two-0123456789"],
        )
        shown = repr(settings)
        assert "hunter2-pw" not in shown
        assert "secret-one" not in shown
        assert "secret-two" not in shown
