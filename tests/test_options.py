"""Every option is declared once (``config.OPTIONS``, ``signin._options.SIGNIN_OPTIONS``):
the typed keywords, ``Settings``, the environment variables, the Flask keys, the
Django settings, the docs tables and the errors all agree with the declaration."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from support.private import (
    COMPUTED,
    OPTIONS,
    SIGNIN_OPTIONS,
    OptionError,
    Options,
    Settings,
    with_tables,
)

from lwa_middleware import ConfigurationError, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.signin import SignIn

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "amzn1.application-oa2-client.ours"
#: A value no option accepts: not a bool, not callable, not a str, not positive.
BAD = -1.5
#: Declared options that Settings keeps under another name (or folds into one).
CONVERTED = {"client_id", "region", "routes", "default"}
NAMES = [option.name for option in OPTIONS]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in (*OPTIONS, *SIGNIN_OPTIONS):
        if option.env:
            monkeypatch.delenv(option.env, raising=False)


def test_the_typed_keywords_are_the_declared_options() -> None:
    assert set(Options.__annotations__) == set(NAMES)
    assert len(NAMES) == len(set(NAMES))
    for middleware in (LWAMiddleware, LWAWSGIMiddleware):
        options = inspect.signature(middleware.__init__).parameters["options"]
        assert "Unpack[Options]" in str(options.annotation)


def test_settings_holds_every_declared_option_with_its_default() -> None:
    fields = Settings.__dataclass_fields__
    stored = set(NAMES) - CONVERTED
    assert stored <= set(fields)
    assert set(fields) - stored == {"client_ids", "cache_key_secrets", "routes"}
    built = Settings.from_options(client_id=CLIENT)
    for option in OPTIONS:
        if option.name in stored and option.name not in ("cache_key_secret", "token_sources"):
            # clock: Settings holds the face the middleware reads (issue 19, item 3)
            default = option.default.monotonic if option.name == "clock" else option.default
            assert getattr(built, option.name) == default, option.name
    assert built.api_base_url == next(o.default for o in OPTIONS if o.name == "api_base_url")


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_value_is_refused_naming_the_option(name: str) -> None:
    given: dict[str, Any] = {"client_id": CLIENT, name: BAD}
    if name == "session":
        given["token_sources"] = ("header", "session")
    with pytest.raises(OptionError) as caught:
        Settings.from_options(**given)
    assert caught.value.option == name
    assert caught.value.source is None


ENV_CASES = {
    "client_id": ("amzn1.oa2-cs.0123", r"client \*secret\*"),
    "api_base_url": ("http://example.com", "loopback"),
    "region": ("mars", "is not one of"),
    "cache_ttl": ("soon", "not a number"),
    "cache_maxsize": ("0", "integer >= 1"),
    "redis_url": ("http://redis.example", "redis_url must be"),
    "warm_connections": ("perhaps", "is not one of"),
}


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.env], ids=lambda o: o.name)
def test_the_environment_variable_is_read_and_named_in_errors(
    option: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert option.env == "LWA_" + option.name.upper()
    if option.name == "cache_key_secret":
        monkeypatch.setenv(option.env, "from the environment")
        assert Settings.from_options(client_id=CLIENT).cache_key_secret == b"from the environment"
        return
    value, message = ENV_CASES[option.name]
    monkeypatch.setenv(option.env, value)
    given = {} if option.name == "client_id" else {"client_id": CLIENT}
    with pytest.raises(OptionError, match=message) as caught:
        Settings.from_options(**given)
    assert caught.value.option == option.name
    assert str(caught.value).startswith(f"{option.env}: ")
    assert value not in str(caught.value) or option.name != "client_id"  # a secret stays out


def test_a_keyword_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_CACHE_TTL", "soon")
    assert Settings.from_options(client_id=CLIENT, cache_ttl=7).cache_ttl == 7


def test_flask_keys_are_the_declared_options_and_named_in_errors() -> None:
    flask = pytest.importorskip("flask")
    from lwa_middleware.integrations.flask import LWA, OPTION_NAMES

    assert sorted(OPTION_NAMES) == sorted(NAMES)
    for option in OPTIONS:
        app = flask.Flask(__name__)
        app.config.update({"LWA_CLIENT_ID": CLIENT, option.flask_key: BAD})
        if option.name == "session":
            app.config["LWA_TOKEN_SOURCES"] = ("header", "session")
        with pytest.raises(ConfigurationError) as caught:
            LWA(app)
        assert str(caught.value).startswith(f"app.config['LWA_{option.name.upper()}']: ")
    app = flask.Flask(__name__)
    app.config.update(LWA_CACHE_TTL=BAD)
    with pytest.raises(ConfigurationError) as caught:  # a keyword is not app.config
        LWA(app, client_id=CLIENT, cache_ttl=-2)
    assert not str(caught.value).startswith("app.config")


def test_django_settings_are_the_declared_options_and_named_in_errors() -> None:
    pytest.importorskip("django")
    from django.core.exceptions import ImproperlyConfigured
    from support.private import OPTION_KEYS, settings_from_django

    assert {option.name.upper(): option.name for option in OPTIONS} == OPTION_KEYS
    for key, name in OPTION_KEYS.items():
        config: dict[str, Any] = {"CLIENT_ID": CLIENT, key: BAD}
        if name == "session":
            config["TOKEN_SOURCES"] = ("header", "session")
        with pytest.raises(ImproperlyConfigured) as caught:
            settings_from_django(config)
        assert str(caught.value).startswith(f"settings.LWA[{key!r}]: "), str(caught.value)


def test_the_docs_tables_are_the_declarations() -> None:
    page = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    tables = {"middleware": OPTIONS, "signin": SIGNIN_OPTIONS}
    assert with_tables(page, tables) == page, "run: python scripts/options_table.py"
    for option in (*OPTIONS, *SIGNIN_OPTIONS):
        assert f"| `{option.name}` |" in page


def test_signin_keywords_are_its_declared_options() -> None:
    parameters = dict(inspect.signature(SignIn.__init__).parameters)
    parameters.pop("self")
    assert list(parameters) == [option.name for option in SIGNIN_OPTIONS]
    for option in SIGNIN_OPTIONS:
        default = parameters[option.name].default
        expected = inspect.Parameter.empty if option.default is COMPUTED else option.default
        assert default == expected, option.name


def _signin(**given: Any) -> SignIn:
    return SignIn(
        client_id=CLIENT,
        client_secret="amzn1.oa2-cs.v1.secret",
        redirect_uri="https://app.example/callback",
        session_secret=b"k" * 32,
        **given,
    )


@pytest.mark.parametrize("name", [o.name for o in SIGNIN_OPTIONS if o.check is not None])
def test_signin_refuses_a_bad_value_naming_the_option(name: str) -> None:
    with pytest.raises(OptionError) as caught:
        _signin(**{name: BAD})
    assert caught.value.option == name
    _signin().close()


def test_signin_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWA_AUTHORIZE_URL", "https://www.amazon.co.uk/ap/oa")
    signin = _signin()
    assert signin.authorize_url == "https://www.amazon.co.uk/ap/oa"
    signin.close()


#: What configuration may import: nothing above it (no shared cache, sign-in,
#: upstream or resolver), so it can never be part of an import cycle.
LOW = {"errors", "routes", "tokens", "_observe", "_options", "_checks", "_redis_url"}
LOW |= {"_login_redirect", "clock"}


@pytest.mark.parametrize(
    "module", ["config", "_options", "_checks", "_redis_url", "_login_redirect"]
)
def test_config_depends_on_nothing_above_it(module: str) -> None:
    path = ROOT / "lwa_middleware" / "_engine" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # annotations only, never imported when running
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            imported |= {node.module or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in getattr(node, "names", [])]
            assert not any(str(n).startswith("lwa_middleware") for n in names), names
    assert imported <= LOW, imported - LOW



def test_warm_connections_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """LWA_WARM_CONNECTIONS keeps a test or tool off the network at warm start."""
    for raw, expected in (("0", False), ("off", False), ("TRUE", True), ("yes", True)):
        monkeypatch.setenv("LWA_WARM_CONNECTIONS", raw)
        assert Settings.from_options(client_id=CLIENT).warm_connections is expected
