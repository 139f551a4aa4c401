"""Every code block in README.md and in the docs site (``docs/**/*.md``) runs as written.

Each fenced block gets its own test, named after its file, line and section.

``python`` blocks run in a fresh ``sys.executable`` subprocess, in a temporary
working directory, with ``-W error::ResourceWarning``, no ``LWA_*`` variables
inherited, and a ``sitecustomize`` that refuses any connection off loopback
(and says so on stderr, which fails the test even when the snippet would
swallow the error).  How a block runs depends on what it is:

* a block with a probe in :data:`PROBES` defines an app: the probe imports it
  as a module (as ``uvicorn module:app`` or gunicorn would), points it at an
  :class:`~lwa_middleware.testing.LWAEmulator` through ``LWA_API_BASE_URL`` (the
  variable the middleware reads when ``api_base_url`` is not given) and
  exercises it in-process (Starlette's ``TestClient``, Werkzeug's ``Client``,
  Django's test ``Client``);
* a block defining ``test_*`` functions is a pytest file: it runs as
  ``python -m pytest -W error::ResourceWarning snippet.py``, as a user would;
* a block made of files (its lines include ``# settings.py``, ``# views.py``
  markers) is written as those files;
* anything else runs as ``python snippet.py``.

``sh``/``console`` blocks are command lines: each command is either run (cheap,
offline ones) or, for installs, servers and the whole suite, checked for what
it refers to (the entry point answers ``--help``, the script exists, the tox
env is defined).  A command no rule knows fails the test, so a new one cannot
slip in unverified.  ``json`` blocks must parse; untagged blocks (the
directory tree) are prose.

A block that cannot run standalone is marked ``<!-- not-runnable: why -->`` on
the line above it; the test skips it, showing why.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.doc_blocks import BLOCKS, README, ROOT, Block

TIMEOUT = 120  # seconds per subprocess: generous, for a loaded 2-core machine
_FILE_MARKER = re.compile(r"^# ([\w/]+\.py)\b.*$")

PY_BLOCKS = [b for b in BLOCKS if b.lang == "python"]
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in ("sh", "bash", "console", "shell")]
OTHER_BLOCKS = [b for b in BLOCKS if b not in PY_BLOCKS and b not in SHELL_BLOCKS]


# -- the subprocess -------------------------------------------------------------

_GUARD = '''
"""Loaded at start-up (PYTHONPATH): no connection leaves loopback."""
import ipaddress, socket, sys

def _loopback(host):
    if host in (None, "", b"", "localhost", b"localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False

def _refuse(host):
    sys.stderr.write(f"README-TEST: network access off loopback refused: {host!r}\\n")
    sys.stderr.flush()
    raise OSError(f"README test: no network off loopback ({host!r})")

_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _refuse(host)
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo

for _name in ("connect", "connect_ex"):
    def _wrap(orig):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                _refuse(address[0])
            return orig(self, address)
        return connect
    setattr(socket.socket, _name, _wrap(getattr(socket.socket, _name)))
'''


def _env(tmp: Path) -> dict[str, str]:
    guard = tmp / "_guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LWA_", "PYTHON", "DJANGO_", "PYTEST_"))}
    # The package of the tree under test, ahead of whatever the environment
    # installed (an editable install of another checkout, say).
    env["PYTHONPATH"] = os.pathsep.join([str(guard), str(README.parent)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # A block that builds a WSGI middleware on the real Amazon would open its
    # warm connections there at construction: the documented way to keep a
    # test or tool off the network.
    env["LWA_WARM_CONNECTIONS"] = "0"
    return env


def run(args: list[str], tmp: Path, *, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=tmp, env=env or _env(tmp), input=stdin, capture_output=True,
        text=True, timeout=TIMEOUT,
    )
    return proc


def assert_clean(proc: subprocess.CompletedProcess[str], what: str) -> None:
    out = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{what} exited {proc.returncode}\n{out}"
    for bad in ("README-TEST:", "ResourceWarning", "Exception ignored", "Traceback"):
        assert bad not in proc.stderr + proc.stdout, f"{what}: {bad!r} in output\n{out}"


def python(*args: str) -> list[str]:
    return [sys.executable, "-W", "error::ResourceWarning", *args]


# -- probes: how a block that defines an app is exercised -------------------------
# Each runs after ``import snippet`` in the subprocess, with ``lwa`` an emulator
# whose client id is the snippet's, ``token(scopes)`` minting one for Ada
# Lovelace, and ``bearer(t)`` the header dict.

_PRELUDE = '''
import gc, json, os, re, sys
sys.path.insert(0, os.getcwd())
from pathlib import Path
from lwa_middleware.testing import LWAEmulator

_src = "".join(p.read_text() for p in sorted(Path().glob("*.py")) if p.name != "probe.py")
_ids = re.findall(r"amzn1\\.application-oa2-client\\.\\w+", _src)
CLIENT_ID = _ids[0] if _ids else "amzn1.application-oa2-client.emulator"

def bearer(t):
    return {"Authorization": f"Bearer {t}"}

with LWAEmulator(client_id=CLIENT_ID) as lwa:
    os.environ["LWA_API_BASE_URL"] = lwa.base_url
    # SignIn refuses Amazon's authorize page with a loopback API (issue 22).
    os.environ["LWA_AUTHORIZE_URL"] = lwa.base_url + "/ap/oa"
    def token(scopes=("profile", "postal_code")):
        return lwa.issue_token(scopes=list(scopes), name="Ada Lovelace",
                               postal_code="SW1A 1AA")
'''

_EPILOGUE = '''
gc.collect()
print("PROBE-OK")
'''

# Starlette app with /me (required) and /shipping (postal_code).
_ASGI_ME_SHIPPING = '''
from starlette.testclient import TestClient
with TestClient(snippet.app) as c:
    r = c.get("/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="lwa"', r
    assert r.json()["error"] == "missing_token", r.text
    t = token()
    r = c.get("/me", headers=bearer(t))
    assert r.status_code == 200 and r.json()["name"] == "Ada Lovelace", r.text
    r = c.get("/shipping", headers=bearer(t))
    assert r.status_code == 200 and r.json() == {"postal_code": "SW1A 1AA"}, r.text
    r = c.get("/shipping", headers=bearer(token(["profile"])))
    assert r.status_code == 403 and 'scope="postal_code"' in r.headers["www-authenticate"], r
    assert r.json()["error"] == "insufficient_scope", r.text
'''

# The first route: the README's Quickstart and the tutorial's app (one app, shown twice).
_FIRST_ROUTE = '''
from starlette.testclient import TestClient
with TestClient(snippet.app) as c:
    r = c.get("/me")
    assert r.status_code == 401 and r.json()["error"] == "missing_token", r.text
    assert r.headers["www-authenticate"] == 'Bearer realm="lwa"', r.headers
    assert c.get("/health").status_code == 404          # public: straight to the app
    r = c.get("/me", headers=bearer(token(["profile"])))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"user_id", "name"}, r.text
    assert r.json()["name"] == "Ada Lovelace" and r.json()["user_id"].startswith("amzn1.account.")
    r = c.get("/me", headers=bearer("Atza|not-a-token-the-emulator-issued"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
    r = c.get("/shipping/quote", headers=bearer(token(["profile"])))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope", r.text
'''

PROBES: dict[tuple[str, str, int], str] = {
    ("README.md", "Quickstart", 0): _FIRST_ROUTE,
    ("docs/tutorial.md", "2. Write the app", 0): _FIRST_ROUTE,
    ("docs/quickstart.md", "Quickstart", 0): '''
from starlette.testclient import TestClient
with TestClient(snippet.app) as c:
    assert c.get("/me").status_code == 401
    assert c.get("/health").status_code == 404          # public: straight to the app
    r = c.get("/me", headers=bearer(token()))
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ada Lovelace" and r.json()["user_id"].startswith("amzn1.account.")
    r = c.get("/shipping/quote", headers=bearer(token(["profile"])))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope", r.text
''',
    ("docs/quickstart.md", "Quickstart", 1): '''
import dataclasses, typing
import lwa_middleware
assert dataclasses.is_dataclass(snippet.Identity)
real = typing.get_type_hints(lwa_middleware.Identity)
doc = typing.get_type_hints(snippet.Identity)
assert list(doc) == list(real), (list(doc), list(real))
assert doc == real, (doc, real)
assert snippet.Identity.__dataclass_params__.frozen
''',
    ("docs/how-to/frameworks.md", "Starlette", 0): _ASGI_ME_SHIPPING,
    ("docs/how-to/frameworks.md", "FastAPI", 0): _ASGI_ME_SHIPPING + '''
    spec = c.get("/openapi.json").json()
    assert "LWA" in spec["components"]["securitySchemes"], spec
''',
    ("docs/how-to/frameworks.md", "Flask", 0): '''
app = snippet.app
c = app.test_client()
r = c.get("/me")
assert r.status_code == 401 and r.json["error"] == "missing_token", r.data
t = token()
r = c.get("/me", headers=bearer(t))
assert r.status_code == 200 and r.json["name"] == "Ada Lovelace", r.data
r = c.get("/shipping", headers=bearer(t))
assert r.status_code == 200 and r.json == {"postal_code": "SW1A 1AA"}, r.data
r = c.get("/shipping", headers=bearer(token(["profile"])))
assert r.status_code == 403 and r.json["error"] == "insufficient_scope", r.data
snippet.lwa.middleware(app).close()
''',
    ("docs/how-to/frameworks.md", "Flask", 1): '''
app = snippet.app
c = app.test_client()
r = c.get("/", headers={"Origin": "https://app.example"})
assert r.status_code == 401, r.data
assert r.headers["Access-Control-Allow-Origin"] == "https://app.example", r.headers
assert "WWW-Authenticate" in r.headers["Access-Control-Expose-Headers"], r.headers
snippet.lwa.middleware(app).close()
''',
    ("docs/how-to/frameworks.md", "Falcon, Litestar, Quart", 0): '''
from werkzeug.test import Client
c = Client(snippet.application)
assert c.get("/me").status_code == 401
r = c.get("/me", headers=bearer(token()))
assert r.status_code == 200 and r.json["user_id"].startswith("amzn1.account."), r.data
snippet.application.close()
''',
    ("docs/how-to/frameworks.md", "Plain WSGI", 0): '''
from werkzeug.test import Client
c = Client(snippet.application)
assert c.get("/health").text == "anonymous"
assert c.get("/").text == "anonymous"
assert c.get("/me").status_code == 401
t = token()
r = c.get("/shipping", headers=bearer(t))
assert r.status_code == 200 and r.text.startswith("amzn1.account."), r.text
r = c.get("/shipping", headers=bearer(token(["profile"])))
assert r.status_code == 403, r.text
snippet.application.close()
''',
    # With lifespan, as uvicorn and `with TestClient(...)` run it (issue 22).
    ("docs/how-to/frameworks.md", "Plain ASGI", 0): '''
from starlette.testclient import TestClient
with TestClient(snippet.application) as c:
    assert c.get("/health").text == "anonymous"
    assert c.get("/").text == "anonymous"
    assert c.get("/me").status_code == 401
    r = c.get("/shipping", headers=bearer(token()))
    assert r.status_code == 200 and r.text.startswith("amzn1.account."), r.text
    assert c.get("/shipping", headers=bearer(token(["profile"]))).status_code == 403
''',
    ("docs/how-to/frameworks.md", "CORS: put it outside", 0): '''
from starlette.testclient import TestClient
with TestClient(snippet.app) as c:
    r = c.get("/", headers={"Origin": "https://app.example"})
    assert r.status_code == 401, r.text
    assert r.headers["access-control-allow-origin"] == "https://app.example", r.headers
    assert "WWW-Authenticate" in r.headers["access-control-expose-headers"], r.headers
    r = c.options("/", headers={"Origin": "https://app.example",
                                "Access-Control-Request-Method": "GET"})
    assert r.status_code == 200, r.text                 # answered by CORS, no token
''',
    ("docs/how-to/redis.md", "Shared Redis cache", 0): '''
from starlette.testclient import TestClient
with TestClient(snippet.app) as c:
    assert c.get("/").status_code == 401                # no token: Redis never asked
''',
}

# Extra environment for a block, as a user would have set it.
ENV: dict[tuple[str, str, int], dict[str, str]] = {
    ("docs/how-to/redis.md", "Shared Redis cache", 0): {
        "LWA_KEY": "a-secret-of-your-own-0123456789"},
}

# Blocks written as several files (``# settings.py`` ... ``# views.py``): the
# rest of the project, which the README leaves to you, and the probe.
_DJANGO_PROJECT = {
    "project_settings.py": '''
from settings import *  # noqa: F403  (the README's settings.py)
SECRET_KEY = "readme-test"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "urls"
DATABASES = {}
INSTALLED_APPS = {installed_apps}
{extra}
''',
    "urls.py": '''
from django.urls import path
import views
urlpatterns = [path("shipping", views.shipping)]
''',
}
_DJANGO_PROBE = '''
    os.environ["DJANGO_SETTINGS_MODULE"] = "project_settings"
    import django
    django.setup()
    from django.test import Client
    c = Client()
    r = c.get("/shipping")
    assert r.status_code == 401 and r.json()["error"] == "missing_token", r.content
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="lwa"', r.headers
    r = c.get("/shipping", headers=bearer(token()))
    assert r.status_code == 200 and r.json() == {"postal_code": "SW1A 1AA"}, r.content
    r = c.get("/shipping", headers=bearer(token(["profile"])))
    assert r.status_code == 403 and 'scope="postal_code"' in r.headers["WWW-Authenticate"]
    # The process would exit here; test_django_pool_is_closed_by_itself checks
    # that the pool closes itself even without this.
    if not os.environ.get("README_TEST_LEAVE_OPEN"):
        from lwa_middleware.integrations.django import LWAMiddleware
        for m in [o for o in gc.get_objects() if type(o) is LWAMiddleware]:
            m.close()
'''
_DJANGO_SIGNIN_PROBE = '''
    os.environ["DJANGO_SETTINGS_MODULE"] = "project_settings"
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.test import Client
    c = Client()
    r = c.get("/login")
    assert r.status_code in (302, 303), r.content
    where = r.headers["Location"]
    assert "code_challenge=" in where and "code_challenge_method=S256" in where, where
    assert "response_type=code" in where and "state=" in where, where
    r = c.get("/")
    assert r.status_code == 200, r.content  # "/" is optional: anonymous
'''
FILE_PROJECTS: dict[tuple[str, str, int], tuple[dict[str, str], str]] = {
    ("docs/how-to/sign-in.md", "Django", 0): (
        {
            "project_settings.py": '''
from settings import *  # noqa: F403  (the README's settings.py)
SECRET_KEY = "readme-test"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "project_urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                  "django.contrib.sessions", "lwa_middleware.integrations.django.LWAConfig",
                  "lwa_middleware.signin.django_app"]
''',
            "project_urls.py": '''
from django.http import JsonResponse
from django.urls import path
from urls import urlpatterns as signin  # the README's urls.py
urlpatterns = [*signin, path("", lambda request: JsonResponse({"home": True}))]
''',
        },
        _DJANGO_SIGNIN_PROBE,
    ),
    ("docs/how-to/frameworks.md", "Django", 0): (
        {k: v.replace("{installed_apps}", '["lwa_middleware.integrations.django.LWAConfig"]')
         .replace("{extra}", "") for k, v in _DJANGO_PROJECT.items()},
        _DJANGO_PROBE,
    ),
    ("docs/how-to/frameworks.md", "Django REST framework", 0): (
        {k: v.replace("{installed_apps}", '["django.contrib.contenttypes", '
                      '"django.contrib.auth", "rest_framework"]')
         .replace("{extra}", textwrap.dedent('''
            # "with the Django middleware above installed"
            MIDDLEWARE = ["lwa_middleware.integrations.django.LWAMiddleware"]
            LWA = {"CLIENT_ID": "amzn1.application-oa2-client.0123", "DEFAULT": "optional"}
         ''')) for k, v in _DJANGO_PROJECT.items()},
        _DJANGO_PROBE,
    ),
}


# A test block that imports another block of its page as a module: {file name: that block}.
COMPANIONS: dict[tuple[str, str, int], dict[str, tuple[str, str, int]]] = {
    ("docs/tutorial.md", "4. Make it a test", 0): {
        "app.py": ("docs/tutorial.md", "2. Write the app", 0),
    },
}


def _split_files(code: str) -> dict[str, str] | None:
    """``# settings.py`` ... ``# views.py`` blocks: {file name: its lines}."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in code.splitlines():
        marker = _FILE_MARKER.match(line)
        if marker:
            current = files.setdefault(marker.group(1), [])
        elif current is not None:
            current.append(line)
        elif line.strip():
            return None  # code before the first marker: not a file block
    return {name: "\n".join(body) + "\n" for name, body in files.items()} or None


def _is_test_file(name: str) -> bool:
    return Path(name).name.startswith("test_") or name == "conftest.py"


def _run_pytest(block: Block, tmp: Path, env: dict[str, str]) -> None:
    """``pytest`` in ``tmp``, as the block's reader would run it: every test passes."""
    proc = run(python("-m", "pytest", "-W", "error::ResourceWarning", "-p",
                      "no:cacheprovider", "-q"), tmp, env=env)
    assert_clean(proc, f"{block.where} under pytest")
    assert re.search(r"\b\d+ passed\b", proc.stdout), proc.stdout
    assert not re.search(r"\b(failed|errors?|skipped|xfailed)\b", proc.stdout), proc.stdout


def _indent(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body), "    ")


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[b.id for b in PY_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    if block.not_runnable:
        pytest.skip(f"{block.path} marks it not-runnable: {block.not_runnable}")
    env = _env(tmp_path)
    env.update(ENV.get(block.key, {}))
    files = _split_files(block.code)
    if files is not None and any(_is_test_file(name) for name in files):
        # A whole small project with its own tests: run them, as its user would.
        for name, body in files.items():
            (tmp_path / name).write_text(body, encoding="utf-8")
        _run_pytest(block, tmp_path, env)
        return
    if files is not None:
        assert block.key in FILE_PROJECTS, (
            f"{block.where} is a multi-file block ({', '.join(files)}): "
            "add the rest of its project to FILE_PROJECTS")
        project, probe = FILE_PROJECTS[block.key]
        for name, body in {**files, **project}.items():
            (tmp_path / name).write_text(body, encoding="utf-8")
        (tmp_path / "probe.py").write_text(_PRELUDE + probe + _EPILOGUE, encoding="utf-8")
        proc = run(python("probe.py"), tmp_path, env=env)
        assert_clean(proc, f"{block.where} ({', '.join(files)})")
        assert "PROBE-OK" in proc.stdout
        return
    if re.search(r"^def test_", block.code, re.MULTILINE):
        (tmp_path / "test_snippet.py").write_text(block.code, encoding="utf-8")
        for name, key in COMPANIONS.get(block.key, {}).items():
            (companion,) = [b for b in PY_BLOCKS if b.key == key]
            (tmp_path / name).write_text(companion.code, encoding="utf-8")
        _run_pytest(block, tmp_path, env)
        return
    (tmp_path / "snippet.py").write_text(block.code, encoding="utf-8")
    probe = PROBES.get(block.key)
    if probe is None:
        proc = run(python("snippet.py"), tmp_path, env=env)
        assert_clean(proc, f"{block.where}")
        return
    (tmp_path / "probe.py").write_text(
        _PRELUDE + _indent("import snippet\n" + probe) + _EPILOGUE, encoding="utf-8")
    proc = run(python("probe.py"), tmp_path, env=env)
    assert_clean(proc, f"{block.where} imported and exercised")
    assert "PROBE-OK" in proc.stdout


def test_every_probe_has_its_block() -> None:
    """A probe whose block moved to another heading would silently stop running."""
    keys = {b.key for b in PY_BLOCKS}
    for table in (PROBES, ENV, FILE_PROJECTS, COMPANIONS):
        stale = set(table) - keys
        assert not stale, f"no python block for {sorted(stale)}"


def test_not_runnable_is_rare() -> None:
    marked = [b.id for b in BLOCKS if b.not_runnable]
    assert len(marked) <= 2, f"too many blocks marked not-runnable: {marked}"


def test_django_pool_is_closed_by_itself(tmp_path: Path) -> None:
    """Django has no shutdown hook and its middleware instance is not
    reachable: a process that served a token and exits without close() must
    still close its pooled LWA connections (the drivers' finalizers)."""
    (block,) = [b for b in PY_BLOCKS if b.key == ("docs/how-to/frameworks.md", "Django", 0)]
    project, probe = FILE_PROJECTS[block.key]
    for name, body in {**(_split_files(block.code) or {}), **project}.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    (tmp_path / "probe.py").write_text(_PRELUDE + probe + _EPILOGUE, encoding="utf-8")
    env = _env(tmp_path)
    env["README_TEST_LEAVE_OPEN"] = "1"
    proc = run(python("probe.py"), tmp_path, env=env)
    assert "PROBE-OK" in proc.stdout, proc.stderr  # the app itself works
    assert_clean(proc, "the Django block, left to exit without close()")


# -- shell blocks -----------------------------------------------------------------

BIN = Path(sys.executable).parent
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each command of a shell block."""
    found: list[tuple[str, list[str]]] = []
    if block.lang == "console":
        for line in block.code.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
        return found
    for line in block.code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        command: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                found.append((shlex.join(command), []))
                command = []
            else:
                command.append(word)
    return found


def _extras() -> set[str]:
    section = PYPROJECT.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+) = \[", section, re.MULTILINE))


def _check_pip_install(argv: list[str]) -> str:
    specs = [a for a in argv[argv.index("install") + 1:] if not a.startswith("-")]
    for spec in specs:
        name, _, extras = spec.partition("[")
        if name == "pytest":  # the tutorial's test step runs it
            continue
        assert name in (".", "lwa-middleware"), f"installs {spec!r}, not this project"
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra in _extras(), f"no [{extra}] extra in pyproject.toml"
    assert 'name = "lwa-middleware"' in PYPROJECT
    return "not run (installs packages); the project and its extras exist"


def _lwa_middleware() -> Path:
    exe = BIN / "lwa-middleware"
    assert exe.exists(), f"no lwa-middleware entry point next to {sys.executable}"
    return exe


def _check_long_running(argv: list[str], tmp: Path) -> str:
    sub = argv[1]
    proc = run([str(_lwa_middleware()), sub, "--help"], tmp)
    assert_clean(proc, f"lwa-middleware {sub} --help")
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in proc.stdout, f"lwa-middleware {sub} has no {flag}:\n{proc.stdout}"
    return f"not run (a server until Ctrl-C); `lwa-middleware {sub} --help` lists its flags"


def _keys(value: object) -> object:
    """The shape of a JSON value: its keys, recursively."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    return type(value).__name__


def _inspect(argv: list[str], tmp: Path, emulator: object, *, aud: str | None = None,
             scopes: tuple[str, ...] = ("profile", "postal_code"),
             ) -> subprocess.CompletedProcess[str]:
    """Run an ``inspect`` command line, ``< token.txt`` holding an emulator token."""
    assert argv[-2:] == ["<", "token.txt"], argv
    client_id = argv[argv.index("--client-id") + 1]
    token = emulator.issue_token(scopes=list(scopes), aud=aud or client_id)  # type: ignore[attr-defined]
    env = _env(tmp)
    env["LWA_API_BASE_URL"] = emulator.base_url  # type: ignore[attr-defined]
    return run([str(_lwa_middleware()), *argv[1:-2]], tmp, stdin=token + "\n", env=env)


def _check_transcript(expected: list[str], proc: subprocess.CompletedProcess[str]) -> None:
    shown = json.loads("\n".join(expected))
    got = json.loads(proc.stdout)
    assert _keys(got) == _keys(shown), (got, shown)
    for key in ("valid", "client_id", "error", "reason"):
        assert got.get(key) == shown.get(key), (key, got, shown)
    if "identity" in shown:
        assert got["identity"]["scopes"] == shown["identity"]["scopes"]
        assert got["identity"]["client_id"] == shown["identity"]["client_id"]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_shell_block(block: Block, tmp_path: Path, lwa_emulator: object) -> None:
    """Run what is cheap and offline; check what every other command refers to."""
    if block.not_runnable:
        pytest.skip(f"{block.path} marks it not-runnable: {block.not_runnable}")
    commands = _commands(block)
    assert commands, f"{block.where}: no command found"
    last_rc: int | None = None
    for command, expected in commands:
        argv = shlex.split(command, comments=True)
        while argv and re.fullmatch(r"LWA_[A-Z_]+=\S+", argv[0]):
            argv = argv[1:]  # VAR=value before a command: only the LWA_* variables we document
        exe = Path(argv[0]).name
        if argv[:3] == ["python3", "-m", "venv"]:
            proc = run([sys.executable, "-m", "venv", "--help"], tmp_path)
            assert_clean(proc, "python -m venv --help")
        elif exe == "pip" and "install" in argv:
            _check_pip_install(argv)
        elif exe == "lwa-middleware" and argv[1] in ("demo", "emulator"):
            _check_long_running(argv, tmp_path)
        elif exe == "lwa-middleware" and argv[1] == "inspect":
            proc = _inspect(argv, tmp_path, lwa_emulator)
            last_rc = proc.returncode
            assert "README-TEST:" not in proc.stderr, proc.stderr
            cut = next((i for i, e in enumerate(expected) if e.startswith("$ ")), len(expected))
            _check_transcript(expected[:cut], proc)
        elif argv == ["echo", "$?"]:
            assert last_rc is not None, "echo $? before any command that was run"
            assert [str(last_rc)] == [e for e in expected if e.strip()], (last_rc, expected)
        elif argv[0] == "scripts/test":
            script = ROOT / "scripts" / "test"
            assert os.access(script, os.X_OK), "scripts/test is not executable"
            assert subprocess.run(["bash", "-n", str(script)], timeout=TIMEOUT).returncode == 0
        elif argv[0] == "tox":
            tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
            for env in argv[argv.index("-e") + 1].split(","):
                assert f"[testenv:{env}]" in tox, f"tox.ini has no {env} env"
        elif exe == "uvicorn":
            # Run for real, with the emulator, by test_docs.py::test_try_it_as_written.
            assert (BIN / "uvicorn").exists(), "uvicorn is not installed with the demo extra"
            assert re.fullmatch(r"\w+:\w+", argv[1]), argv
        elif exe == "curl":
            url = argv[-1]
            assert re.match(r"http://(127\.0\.0\.1|localhost):\d+/", url), url
        elif argv[0] == "python" and argv[1].endswith(".py"):
            script = ROOT / argv[1]
            assert script.exists(), script
            proc = run([sys.executable, str(script), "--help"], tmp_path)
            assert_clean(proc, f"{argv[1]} --help")
        else:
            pytest.fail(f"{block.where}: no rule for command {command!r}: "
                        "run it here if it is cheap and offline, else check what it needs")


def test_rejected_token_example(tmp_path: Path, lwa_emulator: object) -> None:
    """The "A rejected token" JSON is what `inspect` prints, and it exits 1."""
    (block,) = [b for b in OTHER_BLOCKS if b.lang == "json" and b.path == "docs/cli.md"
                and b.heading == "inspect: is this token any good?"]
    (console,) = [b for b in SHELL_BLOCKS if b.path == block.path and b.heading == block.heading]
    command = next(c for c, _ in _commands(console) if "inspect" in c)
    proc = _inspect(shlex.split(command), tmp_path, lwa_emulator,
                    aud="amzn1.application-oa2-client.another")
    assert proc.returncode == 1, proc
    _check_transcript(block.code.splitlines(), proc)


@pytest.mark.parametrize("block", OTHER_BLOCKS, ids=[b.id for b in OTHER_BLOCKS])
def test_other_block(block: Block, tmp_path: Path) -> None:
    """JSON must parse; JavaScript must parse (``node --check``: it runs in a
    browser, against Amazon's SDK); an untagged block is prose (the tree)."""
    if block.lang == "json":
        json.loads(block.code)
    elif block.lang == "javascript":
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        script = tmp_path / "block.js"
        script.write_text(block.code, encoding="utf-8")
        proc = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    else:
        assert block.lang == "", f"{block.where}: no rule for ```{block.lang} blocks"


def test_first_lines_are_the_demo_and_the_tests() -> None:
    """The README opens with two commands: the demo, and the whole suite."""
    first = BLOCKS[0]
    assert first.path == "README.md", first
    assert first.line < 10, first
    assert first.lang == "sh", first
    commands = [c for c, _ in _commands(first)]
    assert commands[-2].endswith("lwa-middleware demo"), commands
    assert commands[-1] == "scripts/test", commands


#: What each part of the package may rely on beyond the base install: the
#: extras a user of that part installs (first matching prefix wins).
_TIERS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("integrations/fastapi.py", ("fastapi",)),
    ("integrations/flask.py", ("flask",)),
    ("integrations/django.py", ("django",)),
    ("integrations/_django_parts.py", ("django",)),
    ("integrations/drf.py", ("drf",)),
    ("signin/django", ("signin", "django")),  # django.py and the django_app/ links app
    ("signin/flask.py", ("signin", "flask")),
    ("signin/", ("signin",)),
    ("_engine/shared_cache/", ("redis",)),
    ("shared_cache/", ("redis",)),  # the public ACLs, read from the engine's package
    # The sealer of sign-in and of the shared cache: both extras bring cryptography.
    ("_engine/_seal.py", ("signin",)),
    ("_engine/demo/", ("demo",)),
    ("testing/pytest_plugin.py", None),  # pytest loads it: pytest is there
    ("", ()),  # the middlewares, the emulator, the CLI: the base install
)


def _tier(rel: str) -> tuple[str, ...] | None:
    return next(extras for prefix, extras in _TIERS if rel.startswith(prefix))


def _import_time_imports(tree: ast.AST, package: str) -> tuple[set[str], set[str]]:
    """(third-party top-level names, lwa_middleware modules) a module of
    ``package`` imports when it is imported: not those guarded by ``try`` or
    ``TYPE_CHECKING``, nor those inside functions (imported lazily when a
    feature is used)."""
    outside: set[str] = set()
    inside: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Try | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = inside if alias.name.startswith("lwa_middleware") else outside
                target.add(alias.name if target is inside else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and not node.module.startswith("lwa_middleware"):
                outside.add(node.module.split(".")[0])
            else:
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                name = ".".join(p for p in (base, node.module or "") if p)
                inside.add(name)
                inside |= {f"{name}.{alias.name}" for alias in node.names}
        more_outside, more_inside = _import_time_imports(node, package)
        outside |= more_outside
        inside |= more_inside
    return outside, inside


def test_each_part_needs_only_what_its_extra_installs() -> None:
    """A lean install (issue 19): ``pip install lwa-middleware`` brings what the
    middlewares import, and each optional part (the shared cache, sign-in, the
    demo, a framework's glue) imports, at import time and through the package
    modules it imports, only what its extra adds. ``pip install -e '.[demo]' &&
    lwa-middleware demo`` on a fresh machine is one case of it. Extras are read
    from pyproject.toml, their requirements from the installed distributions."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires

    from packaging.requirements import Requirement

    project = tomllib.loads(PYPROJECT)["project"]

    def closure(extras: tuple[str, ...]) -> set[str]:
        todo = [Requirement(s) for s in project["dependencies"]]
        todo += [Requirement(s) for e in extras for s in project["optional-dependencies"][e]]
        seen: set[str] = set()
        while todo:
            req = todo.pop()
            key = req.name.lower().replace("_", "-")
            if key in seen:
                continue
            seen.add(key)
            envs = [{"extra": e} for e in ("", *req.extras)]
            try:
                specs = requires(req.name) or []
            except PackageNotFoundError:
                continue  # not installed here: its own requirements are unknown
            for spec in map(Requirement, specs):
                if spec.marker is None or any(spec.marker.evaluate(e) for e in envs):
                    todo.append(spec)
        return seen

    package = ROOT / "lwa_middleware"
    graph: dict[str, tuple[set[str], set[str], str]] = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        module = ("lwa_middleware/" + rel).removesuffix(".py").replace("/", ".")
        module = module.removesuffix(".__init__")
        pkg = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
        outside, inside = _import_time_imports(ast.parse(path.read_text("utf-8")), pkg)
        graph[module] = (outside - set(sys.stdlib_module_names), inside, rel)

    def reach(module: str) -> set[str]:
        """Every package module importing ``module`` imports (packages' __init__ too)."""
        seen: set[str] = set()
        todo = [module]
        while todo:
            name = todo.pop()
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in graph and prefix not in seen:
                    seen.add(prefix)
                    todo += graph[prefix][1]
        return seen

    owners = packages_distributions()
    for module, (_, _, rel) in sorted(graph.items()):
        extras = _tier(rel)
        if extras is None:
            continue
        allowed = closure(extras)
        install = f"lwa-middleware[{','.join(extras)}]" if extras else "lwa-middleware"
        for other in sorted(reach(module)):
            for name in sorted(graph[other][0]):
                dists = {d.lower().replace("_", "-") for d in owners.get(name, [name])}
                assert dists & allowed, (
                    f"lwa_middleware/{rel} imports {module!r} -> {other!r} -> {name!r}, which "
                    f"{install} does not install: declare it in "
                    "pyproject.toml, or import it lazily behind needs_extra()"
                )
