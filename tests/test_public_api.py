"""The public API, pinned (issue 19): which modules are public, what each exports,
that each is documented, and that every old import path still works, with a
DeprecationWarning, for one deprecation period (docs/policy.md).

A name added to or dropped from the public API changes a list below on purpose,
with a CHANGELOG entry and a docs/reference block.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import tomllib
import warnings
from pathlib import Path

import pytest

import lwa_middleware

ROOT = Path(__file__).resolve().parent.parent

PUBLIC: dict[str, list[str]] = {
    "lwa_middleware": [
        "AuthError", "ConfigurationError", "Identity", "InsufficientScope", "InvalidRequest",
        "InvalidToken", "LWAError", "LWAMiddleware", "LWAWSGIMiddleware", "MissingToken",
        "SharedCacheError", "UnsupportedScope", "UpstreamUnavailable", "__version__",
        "get_identity", "revalidate",
    ],
    "lwa_middleware.testing": [
        "BUILTIN_CUSTOMERS", "Customer", "DEFAULT_REDIRECT_URIS", "Fault", "LWAEmulator",
    ],
    "lwa_middleware.testing.pytest_plugin": ["lwa_emulator", "lwa_emulator_server"],
    "lwa_middleware.signin": [
        "ACL_RULES", "MemorySessionStore", "Page", "RedisSessionStore", "Reply", "SessionStore",
        "SignIn",
    ],
    "lwa_middleware.signin.starlette": ["SignedInUser", "signin_routes"],
    "lwa_middleware.signin.flask": ["current_user", "signin_blueprint"],
    "lwa_middleware.signin.django": [
        "LINKS_APP", "LWABackend", "SignedInUserMiddleware", "link_amazon_account",
        "link_django_user", "signin_urls",
    ],
    "lwa_middleware.integrations.starlette": ["require_scopes"],
    "lwa_middleware.integrations.fastapi": [
        "LWABearer", "LWAHTTPException", "current_identity", "install_error_handlers",
        "optional_identity", "require_scopes",
    ],
    "lwa_middleware.integrations.flask": ["LWA", "current_identity", "lwa_required"],
    "lwa_middleware.integrations.django": [
        "LWAAnonymousUser", "LWAConfig", "LWAMiddleware", "LWAUser", "lwa_required",
    ],
    "lwa_middleware.integrations.drf": ["HasLWAScopes", "LWAAuthentication", "exception_handler"],
    "lwa_middleware.integrations.prometheus": ["LWACollector"],
    # The Redis tier: only the least rights its Redis user needs.
    "lwa_middleware.shared_cache": ["ACL_RULES", "CLUSTER_ACL_RULES"],
}

# Non-private modules without an __all__ of their own: a package that only groups
# public modules, and the Django app a user names in INSTALLED_APPS (with what
# Django loads from it by convention).
PLUMBING = {
    "lwa_middleware.__main__",
    "lwa_middleware.integrations",
    "lwa_middleware.signin.django_app",
    "lwa_middleware.signin.django_app.apps",
    "lwa_middleware.signin.django_app.models",
    "lwa_middleware.signin.django_app.migrations",
    "lwa_middleware.signin.django_app.migrations.0001_initial",
    "lwa_middleware.signin.django_app.management",
    "lwa_middleware.signin.django_app.management.commands",
    "lwa_middleware.signin.django_app.management.commands.lwa_link_legacy_users",
}

# Every old path, with one name read through it: (old module, name, where it lives now).
OLD_PATHS = [
    ("lwa_middleware.asgi", "LWAMiddleware", "lwa_middleware"),
    ("lwa_middleware.wsgi", "LWAWSGIMiddleware", "lwa_middleware"),
    ("lwa_middleware.errors", "ConfigurationError", "lwa_middleware"),
    ("lwa_middleware.identity", "Identity", "lwa_middleware"),
    ("lwa_middleware.routes", "revalidate", "lwa_middleware"),
    ("lwa_middleware.breaker", "CircuitBreaker", "lwa_middleware._engine.breaker"),
    ("lwa_middleware.cache", "IdentityCache", "lwa_middleware._engine.cache"),
    ("lwa_middleware.cli", "main", "lwa_middleware._engine.cli"),
    ("lwa_middleware.config", "Settings", "lwa_middleware._engine.config"),
    ("lwa_middleware.flow", "Flow", "lwa_middleware._engine.flow"),
    ("lwa_middleware.gate", "Gate", "lwa_middleware._engine.gate"),
    ("lwa_middleware.resolver", "Resolver", "lwa_middleware._engine.resolver"),
    ("lwa_middleware.singleflight", "ThreadFlights", "lwa_middleware._engine.singleflight"),
    ("lwa_middleware.stats", "Stats", "lwa_middleware._engine.stats"),
    ("lwa_middleware.tokens", "TOKEN_SOURCES", "lwa_middleware._engine.tokens"),
    ("lwa_middleware.upstream", "SyncDriver", "lwa_middleware._engine.upstream"),
    ("lwa_middleware.shared_cache", "SyncSharedCache", "lwa_middleware._engine.shared_cache"),
    ("lwa_middleware.demo", "build_demo_app", "lwa_middleware._engine.demo"),
    ("lwa_middleware.demo.app", "build_demo_app", "lwa_middleware._engine.demo.app"),
    ("lwa_middleware.demo.server", "serve_in_thread", "lwa_middleware._engine.demo.server"),
    ("lwa_middleware.demo.server_side", "build_server_side_demo_app",
     "lwa_middleware._engine.demo.server_side"),
    ("lwa_middleware.signin.core", "SignIn", "lwa_middleware.signin"),
    ("lwa_middleware.signin.sessions", "MemorySessionStore", "lwa_middleware.signin"),
    ("lwa_middleware.signin.cookies", "CookieJar", "lwa_middleware.signin._cookies"),
    ("lwa_middleware.testing.emulator", "LWAEmulator", "lwa_middleware.testing"),
    ("lwa_middleware.testing.faults", "Fault", "lwa_middleware.testing"),
    ("lwa_middleware.prometheus", "LWACollector", "lwa_middleware.integrations.prometheus"),
    # names that left a public __all__ but kept their module
    ("lwa_middleware.testing", "RecordedRequest", "lwa_middleware.testing._emulator"),
    ("lwa_middleware.testing", "ENDPOINTS", "lwa_middleware.testing._emulator"),
    ("lwa_middleware.signin", "AUTHORIZE_URL", "lwa_middleware.signin._core"),
    ("lwa_middleware.signin", "SessionSource", "lwa_middleware.signin._source"),
    ("lwa_middleware.signin", "CrossSiteRequest", "lwa_middleware.signin._source"),
    ("lwa_middleware.integrations.django", "OPTION_KEYS",
     "lwa_middleware.integrations._django_parts"),
]


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, without importing any."""
    out = {}
    for path in (ROOT / "lwa_middleware").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_shim(path: Path) -> bool:
    return "__getattr__ = moved(" in path.read_text(encoding="utf-8") and (
        "__all__" not in path.read_text(encoding="utf-8"))


def test_the_public_modules_are_these() -> None:
    """Every module is private (an ``_`` in its path), an old path's shim, Django
    plumbing, or one of PUBLIC: nothing is public by accident."""
    public = {
        name for name, path in _modules().items()
        if not any(p.startswith("_") for p in name.split(".")[1:])
        and not _is_shim(path) and name not in PLUMBING
    }
    assert public == set(PUBLIC), public ^ set(PUBLIC)


def test_each_public_module_exports_what_is_pinned() -> None:
    for name, expected in PUBLIC.items():
        assert sorted(importlib.import_module(name).__all__) == sorted(expected), name


def test_the_public_api_is_about_sixty_names() -> None:
    names = [n for names in PUBLIC.values() for n in names if n != "__version__"]
    assert len(names) == 60


def test_public_paths_read_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, exported in PUBLIC.items():
            module = importlib.import_module(name)
            for attr in exported:
                getattr(module, attr)


def test_every_public_name_is_in_the_reference() -> None:
    """A ``::: module`` block in docs/reference/ for each public module; where the
    block lists ``members:``, every exported name is among them."""
    reference = "".join(
        p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs" / "reference").glob("*.md")))
    blocks = dict(re.findall(r"^::: ([\w.]+)\n((?:    .*\n|\n(?=    ))*)", reference, re.M))
    for name, exported in PUBLIC.items():
        assert name in blocks, f"no ::: {name} block in docs/reference/"
        listed = re.findall(r"^\s+- (\w+)$", blocks[name], re.M)
        if listed:
            missing = set(exported) - set(listed) - {"__version__"}
            assert not missing, f"::: {name} lists no {sorted(missing)}"


def test_the_old_paths_are_all_listed() -> None:
    shims = {name for name, path in _modules().items() if _is_shim(path)}
    assert shims == {old for old, _, _ in OLD_PATHS if old not in PUBLIC}


@pytest.mark.parametrize(
    ("old", "name", "home"), OLD_PATHS, ids=[f"{o}.{n}" for o, n, _ in OLD_PATHS])
def test_an_old_path_still_imports_with_a_warning(old: str, name: str, home: str) -> None:
    namespace: dict[str, object] = {}
    expected = rf"^{re.escape(old)}\.{name} is deprecated"
    with pytest.warns(DeprecationWarning, match=expected) as seen:
        exec(f"from {old} import {name}", namespace)  # a user's own import line
    assert len(seen) == 1, [str(w.message) for w in seen]  # once, not for hasattr() too
    assert namespace[name] is getattr(importlib.import_module(home), name)
    if home in PUBLIC:
        assert f"import it from {home}" in str(seen[0].message)
    assert seen[0].filename == "<string>"  # points at the user's line, not at the shim


def test_an_unknown_name_on_an_old_path_is_an_attribute_error() -> None:
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from lwa_middleware.config import no_such_name", {})


def test_entry_points_and_django_paths_load_without_a_warning() -> None:
    """What users type or install: the console script, the pytest plugin, the Django
    app and the paths settings name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    targets = [*project["scripts"].values(), *project["entry-points"]["pytest11"].values()]
    targets += [
        "lwa_middleware.signin.django_app",
        "lwa_middleware.signin.django:SignedInUserMiddleware",
        "lwa_middleware.signin.django:LWABackend",
        "lwa_middleware.integrations.django:LWAMiddleware",
        "lwa_middleware.integrations.drf:LWAAuthentication",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target in targets:
            module, _, attr = target.partition(":")
            loaded = importlib.import_module(module)
            if attr:
                getattr(loaded, attr)


def test_the_package_walks_without_a_warning() -> None:
    """Importing every module (as a docs generator or a test collector does) warns
    of nothing: the shims warn only when a name is read through them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for info in pkgutil.walk_packages(lwa_middleware.__path__, "lwa_middleware."):
            if ".django_app" in info.name or info.name.startswith("lwa_middleware._engine.demo"):
                continue  # needs configured Django settings; the demo needs uvicorn
            importlib.import_module(info.name)


def test_a_pickled_identity_names_the_public_module_not_the_engine() -> None:
    """A pickle stored today (a session, a cache of the user's own) must load
    after the engine moves: it names ``lwa_middleware.Identity``."""
    import pickle

    from lwa_middleware import ConfigurationError, Identity

    identity = Identity(
        user_id="amzn1.account.X", email=None, name=None, postal_code=None,
        scopes=frozenset({"profile:user_id"}), client_id="amzn1.application-oa2-client.x",
        expires_at=1.0,
    )
    for value in (identity, ConfigurationError("wiring")):
        data = pickle.dumps(value)
        assert b"_engine" not in data
        assert type(pickle.loads(data)) is type(value)
