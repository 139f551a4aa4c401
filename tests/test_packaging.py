"""What ``pip install lwa-middleware`` gives a user (issue 19, items 6 and 7).

The base install is lean: no redis, no cryptography. Each optional tier used
without its extra raises an error naming the extra. The fast tests run the
package in a subprocess where an import hook makes ``import redis`` /
``import cryptography`` fail exactly as if the distribution were not
installed; the slow one builds the wheel and sdist, installs the wheel in a
fresh virtualenv and checks what came with it, for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from email.parser import HeaderParser
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest
from support.private import EXTRAS, MissingExtra, needs_extra

from lwa_middleware import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: What the middlewares need (CONTRACT.md: scope["auth"] is Starlette's; aiohttp
#: calls LWA on asyncio and from WSGI threads, httpx2 on trio: issue 23; yarl, its URLs).
BASE = {"aiohttp", "anyio", "httpx2", "sniffio", "starlette", "yarl"}
#: The heavy optional packages the base install must not bring.
NOT_BASE = {"redis", "cryptography", "cffi", "pycparser"}

# Makes "import X" fail for the blocked top-level names as a missing
# distribution does (ModuleNotFoundError, .name set), before any finder runs.
_UNINSTALL = """
import importlib.abc, sys
class _Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Uninstalled())
"""

# Prints what the code in TRY raised, as JSON, for the test to judge.
_REPORT = """
import json
try:
    TRY
except BaseException as exc:
    from lwa_middleware import ConfigurationError
    print(json.dumps({"type": type(exc).__name__, "message": str(exc),
                      "name": getattr(exc, "name", None),
                      "configuration_error": isinstance(exc, ConfigurationError),
                      "import_error": isinstance(exc, ImportError)}))
else:
    print(json.dumps({"type": None}))
"""

_APP = "async def app(scope, receive, send): pass"
# The WSGI middleware refuses an ASGI app at construction (a wiring mistake):
# each middleware gets an app of its own kind.
_WSGI_APP = "def app(environ, start_response): return []"

# Served through the base install: a token checked against the emulator.
_SERVE = """
import sys
from starlette.testclient import TestClient
from lwa_middleware import LWAMiddleware
from lwa_middleware.testing import LWAEmulator

async def app(scope, receive, send):
    user = scope["lwa.identity"].user_id.encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": user})

with LWAEmulator() as lwa:
    token = lwa.issue_token(scopes=["profile"], user_id="amzn1.account.BASE")
    guarded = LWAMiddleware(app, client_id=lwa.client_id, api_base_url=lwa.base_url)
    answer = TestClient(guarded).get("/", headers={"Authorization": f"Bearer {token}"})
heavy = sorted(m for m in ("redis", "cryptography") if m in sys.modules)
print(answer.status_code, answer.text, heavy)
"""

_REDIS_URL = f"""
{_APP}
from lwa_middleware import LWAMiddleware
LWAMiddleware(app, client_id="c", redis_url="redis://127.0.0.1:9/0")
"""

_SIGNIN = """
from lwa_middleware.signin import SignIn
SignIn(client_id="amzn1.application-oa2-client.x", client_secret="s",
       redirect_uri="http://127.0.0.1:8000/callback", session_secret="k" * 32,
       api_base_url="http://127.0.0.1:9", authorize_url="http://127.0.0.1:9/ap/oa")
"""


def _python(code: str, python: str = sys.executable, blocked: tuple[str, ...] = ()) -> str:
    """Run ``code`` in a fresh interpreter (this checkout first on its path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    if python != sys.executable:
        env.pop("PYTHONPATH")  # a venv of its own: its installed lwa-middleware
    prelude = f"BLOCKED = {set(blocked)!r}\n" + (_UNINSTALL if blocked else "")
    proc = subprocess.run(
        [python, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT / "tests",
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _raised(code: str, python: str = sys.executable, blocked: tuple[str, ...] = ()) -> dict:
    body = textwrap.indent(textwrap.dedent(code), "    ").strip()
    out = _python(_REPORT.replace("TRY", body), python, blocked)
    return json.loads(out.strip().splitlines()[-1])


def _names_extra(raised: dict, extra: str, *modules: str) -> None:
    """``raised`` is MissingExtra naming ``extra``, for one of ``modules`` missing."""
    assert raised["type"] == "MissingExtra", raised
    assert f"pip install 'lwa-middleware[{extra}]'" in raised["message"], raised
    assert raised["name"] in modules, raised
    assert raised["configuration_error"], raised
    assert raised["import_error"], raised


# -- the base install works alone ----------------------------------------------


def test_the_base_install_serves_without_redis_or_cryptography() -> None:
    out = _python(_SERVE, blocked=("redis", "cryptography"))
    assert out.split() == ["200", "amzn1.account.BASE", "[]"]


# -- each tier without its extra names the extra -----------------------------------


@pytest.mark.parametrize("missing", ["redis", "cryptography"])
@pytest.mark.parametrize("middleware", ["LWAMiddleware", "LWAWSGIMiddleware"])
def test_redis_url_without_the_redis_extra_names_it(middleware: str, missing: str) -> None:
    raised = _raised(
        f"""
        {_APP if middleware == "LWAMiddleware" else _WSGI_APP}
        from lwa_middleware import {middleware}
        {middleware}(app, client_id="c", redis_url="redis://127.0.0.1:9/0")
        """,
        blocked=(missing,),
    )
    _names_extra(raised, "redis", missing)


def test_redis_client_without_cryptography_names_the_redis_extra() -> None:
    # redis-py is there (the factory builds its clients); the sealing is not.
    raised = _raised(
        f"""
        {_APP}
        import redis
        from lwa_middleware import LWAMiddleware
        def factory(asyncio=False):
            return redis.Redis(host="127.0.0.1", port=9)
        LWAMiddleware(app, client_id="c", redis_client=factory)
        """,
        blocked=("cryptography",),
    )
    _names_extra(raised, "redis", "cryptography")


def test_signin_without_cryptography_names_the_signin_extra() -> None:
    _names_extra(_raised(_SIGNIN, blocked=("cryptography",)), "signin", "cryptography")


def test_redis_session_store_without_redis_names_the_redis_extra() -> None:
    raised = _raised(
        """
        from lwa_middleware.signin import RedisSessionStore
        RedisSessionStore("redis://127.0.0.1:9/0")
        """,
        blocked=("redis",),
    )
    _names_extra(raised, "redis", "redis")


def test_the_tiers_work_when_their_extras_are_there() -> None:
    """The same calls, nothing blocked: no error (the hook is what fails them)."""
    assert _raised(_SIGNIN)["type"] is None
    assert _raised(_REDIS_URL)["type"] is None


def test_an_unrelated_missing_module_is_not_blamed_on_an_extra() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, needs_extra("redis", "the shared cache"):
        import lwa_middleware_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(caught.value, MissingExtra)
    assert not isinstance(caught.value, ConfigurationError)


# -- pyproject.toml ------------------------------------------------------------


def _name(spec: str) -> str:
    return spec.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()


def test_base_dependencies_are_the_middlewares_needs_only() -> None:
    assert {_name(s) for s in PYPROJECT["project"]["dependencies"]} == BASE


def test_each_tier_module_comes_with_its_extra() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert set(modules) <= {_name(s) for s in extras[extra]}, extra
    # The demo's --server-side signs in.
    assert {_name(s) for s in extras["signin"]} <= {_name(s) for s in extras["demo"]}


def test_development_tools_are_groups_not_published_extras() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not {"test", "lint", "dev"} & set(extras)
    assert {"test", "lint", "dev"} <= set(PYPROJECT["dependency-groups"])


# -- the built distributions, and a fresh virtualenv -------------------------------


def _venv(path: Path) -> Path:
    """A new virtualenv with nothing in it, not even pip: this pip installs into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    # Packages come from the index pip is configured with (CI: the PyPI mirror).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "-q", "--python", str(python), *args],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr


def _key(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) of this checkout, built by hatchling as pip would."""
    tmp = tmp_path_factory.mktemp("build")
    python = _venv(tmp / "venv")
    _pip(python, "install", *PYPROJECT["build-system"]["requires"])
    subprocess.run(
        [str(python), "-m", "hatchling", "build", "-d", str(tmp / "dist")],
        check=True, cwd=ROOT, capture_output=True, timeout=300,
    )
    return next((tmp / "dist").glob("*.whl")), next((tmp / "dist").glob("*.tar.gz"))


@pytest.mark.slow
def test_license_urls_and_classifiers_are_in_the_distributions(built: tuple[Path, Path]) -> None:
    wheel, sdist = built
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    with zipfile.ZipFile(wheel) as zf:
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        assert zf.read(info.replace("METADATA", "licenses/LICENSE")).decode() == license_text
        metadata = HeaderParser().parsestr(zf.read(info).decode())
    with tarfile.open(sdist) as tf:
        root = tf.getnames()[0].split("/")[0]
        member = tf.extractfile(f"{root}/LICENSE")
        assert member is not None
        assert member.read().decode() == license_text
        assert f"{root}/CHANGELOG.md" in tf.getnames()
    assert metadata["License-Expression"] == "MIT"
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert urls["Changelog"].endswith("/CHANGELOG.md")
    pythons = {c for c in metadata.get_all("Classifier") if c.startswith("Programming Language")}
    assert {f"Programming Language :: Python :: 3.{m}" for m in (11, 12, 13, 14)} <= pythons


@pytest.mark.slow
def test_a_fresh_base_install_is_lean_and_names_the_extras(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    python = _venv(tmp_path / "venv")
    _pip(python, "install", str(built[0]))
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    dists = {
        _key(d.metadata["Name"]): d
        for d in (PathDistribution(p) for p in site.glob("*.dist-info"))
    }
    installed = set(dists)
    own = dists["lwa-middleware"]
    direct = {_name(r) for r in own.requires or [] if "extra ==" not in r}
    assert direct == BASE
    # Nothing came that the base dependencies do not require.
    wanted, todo = {"lwa-middleware"}, list(direct)
    while todo:
        name = _key(todo.pop())
        if name in wanted or name not in dists:
            continue  # not installed: a marker excluded it
        wanted.add(name)
        todo += [_name(r) for r in dists[name].requires or [] if "extra ==" not in r]
    assert installed == wanted
    assert not installed & NOT_BASE, installed
    # The real thing: a request served, then each tier names its extra.
    out = _python(_SERVE, str(python))
    assert out.split() == ["200", "amzn1.account.BASE", "[]"]
    _names_extra(_raised(_REDIS_URL, str(python)), "redis", "redis", "cryptography")
    _names_extra(_raised(_SIGNIN, str(python)), "signin", "cryptography")


def test_demo_server_side_without_cryptography_says_to_install_the_demo_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.private import main

    # None in sys.modules makes "import cryptography" fail, as if not installed.
    monkeypatch.setitem(sys.modules, "cryptography", None)
    assert main(["demo", "--server-side", "--port", "0", "--no-browser"]) == 2
    out, err = capsys.readouterr()
    assert "needs cryptography" in err
    assert "pip install 'lwa-middleware[demo]'" in err
    assert out == ""
