"""The docs site and the README, as a newcomer meets them.

``test_readme.py`` runs every code block of README.md and docs/; this module
tries the Quickstart's "try it" step for real (the emulator command, uvicorn,
then the request, in separate processes as in three terminals), and keeps the
site's shape: a short README whose links resolve, every page in the nav, every
public module in the API reference.  ``mkdocs build --strict`` itself runs in
``.ci/run``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from support.doc_blocks import BLOCKS, README, ROOT, Block
from support.redis_servers import free_port, wait_for

BIN = Path(sys.executable).parent
#: The try-it blocks: (page, the shell block's heading, the app block's heading).
TRY_IT = [
    ("README.md", "Quickstart", "Quickstart"),
    ("docs/tutorial.md", "3. Try it", "2. Write the app"),
]


def _block(path: str, heading: str, lang: str) -> Block:
    (block,) = [b for b in BLOCKS if b.path == path and b.heading == heading and b.lang == lang
                and (lang != "sh" or "uvicorn" in b.code)]
    return block


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWA_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)  # the package of this tree
    return {**env, **extra}


def _read_until(proc: subprocess.Popen[str], last: str) -> list[str]:
    """The emulator's banner, up to its last line (a generous bound: a loaded machine)."""
    lines: list[str] = []

    def more() -> bool:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the emulator exited: {lines}"
        lines.append(line.rstrip("\n"))
        return last in line

    wait_for(more, 60, poll=0)
    return lines


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as the reader stops them
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.parametrize(("page", "try_heading", "app_heading"), TRY_IT)
def test_try_it_as_written(page: str, try_heading: str, app_heading: str, tmp_path: Path) -> None:
    """The three commands of "Try it", each in its own process, on the page's ``app.py``.

    Only the ports differ from the page: 8765 and 8000 may be taken on a shared
    machine, so the emulator gets ``--port 0`` and uvicorn a free port."""
    (tmp_path / "app.py").write_text(_block(page, app_heading, "python").code, encoding="utf-8")
    emulator_line, server_line, curl_line = [
        line for line in _block(page, try_heading, "sh").code.splitlines() if line.strip()]

    emulator_argv = shlex.split(emulator_line, comments=True)
    assert emulator_argv[:2] == ["lwa-middleware", "emulator"], emulator_argv
    emulator = subprocess.Popen(
        [str(BIN / "lwa-middleware"), *emulator_argv[1:], "--port", "0"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, text=True)
    server: subprocess.Popen[str] | None = None
    try:
        banner = _read_until(emulator, "Press Ctrl-C")
        base_url = re.search(r"running at (http://\S+)", banner[0]).group(1)  # type: ignore[union-attr]
        token = next(line.strip() for line in banner if line.strip().startswith("Atza|"))

        assignment, *server_argv = shlex.split(server_line, comments=True)
        name, _, documented_url = assignment.partition("=")
        assert (name, documented_url) == ("LWA_API_BASE_URL", "http://127.0.0.1:8765"), assignment
        assert server_argv == ["uvicorn", "app:app"], server_argv
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "uvicorn"), *server_argv[1:], "--port", str(port)],
            cwd=tmp_path, env=_env(LWA_API_BASE_URL=base_url), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

        curl = shlex.split(curl_line, comments=True)
        assert curl[:2] == ["curl", "-i"], curl
        assert curl[2] == "-H", curl
        header_name, _, header_value = curl[3].partition(": ")
        url = curl[4].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        assert url == f"http://127.0.0.1:{port}/me", curl
        headers = {header_name: header_value.replace("Atza|…", token)}

        with httpx2.Client(timeout=30) as http:
            def up() -> bool:
                try:
                    http.get(url)
                except httpx2.TransportError:
                    return False
                return True

            wait_for(up, 60, poll=0.1)
            answer = http.get(url, headers=headers)
            assert answer.status_code == 200, answer.text
            assert set(answer.json()) == {"user_id", "name"}, answer.text
            assert answer.json()["user_id"].startswith("amzn1.account."), answer.text
            if page == "docs/tutorial.md":  # the page shows an answer: one of this shape
                (shown,) = [b for b in BLOCKS if b.path == page and b.lang == "json"]
                for got in (answer.json(), json.loads(shown.code)):
                    assert re.fullmatch(r"amzn1\.account\.\w+", got["user_id"]), got
                    assert got["name"] == "Test Customer " + got["user_id"][-6:], got
            bare = http.get(url)
            assert bare.status_code == 401, bare.text
            assert bare.json()["error"] == "missing_token", bare.text
            quote = http.get(url.replace("/me", "/shipping/quote"), headers=headers)
            assert quote.status_code == 403, quote.text  # minted without postal_code
    finally:
        if server is not None:
            _stop(server)
        _stop(emulator)


def test_readme_is_short() -> None:
    """Issue 22: the README was one 91 KB page; the docs site holds the rest."""
    size = len(README.read_bytes())
    assert size <= 12 * 1024, f"README.md is {size} bytes"


def test_readme_links_resolve() -> None:
    """GitHub renders the README's relative links: each names a file that exists,
    and a #fragment a heading of that page."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert links
    for target, fragment in links:
        if target.startswith(("http://", "https://")):
            continue
        path = ROOT / target
        assert path.is_file(), f"README.md links to {target}, which does not exist"
        if fragment:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()).strip().replace(" ", "-")
                     for h in headings}
            assert fragment in slugs, f"README.md links to {target}#{fragment}: no such heading"


def _nav_pages() -> set[str]:
    return set(re.findall(r":\s+([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(
        encoding="utf-8"), re.MULTILINE))


def test_every_page_is_in_the_nav() -> None:
    """A page left out of the nav is built but unreachable (mkdocs only says so at INFO)."""
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages == _nav_pages(), (pages ^ _nav_pages())


def test_the_reference_covers_the_public_api() -> None:
    """Every public module (one with ``__all__``, not private, not glue a user never
    imports) has a ``::: module`` block in docs/reference/."""
    reference = "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE))
    package = ROOT / "lwa_middleware"
    public = {"lwa_middleware", "lwa_middleware.testing", "lwa_middleware.signin",
              "lwa_middleware.testing.pytest_plugin"}
    for sub in ("integrations", "signin"):
        for path in (package / sub).glob("*.py"):
            if not path.name.startswith("_") and "__all__" in path.read_text(encoding="utf-8"):
                public.add(f"lwa_middleware.{sub}.{path.stem}")
    missing = public - documented
    assert not missing, f"no ::: block in docs/reference/ for {sorted(missing)}"


def _layout() -> str:
    """The module tree of docs/architecture.md (the block that starts ``lwa_middleware/``)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    (tree,) = re.findall(r"```\nlwa_middleware/\n(.*?)```", text, re.DOTALL)
    return tree


def test_the_architecture_page_draws_the_real_layout() -> None:
    """Issue 19: the drawing named deleted modules and left out signin/. Every
    top-level module and package is in it, and everything it names exists."""
    package = ROOT / "lwa_middleware"
    tree = _layout()
    # Files anywhere in an entry; packages as entries (first column).
    named = set(re.findall(r"\b\w+\.py\b", tree)) | set(re.findall(r"^  (\w+/)", tree, re.M))
    real = {p.name for p in package.glob("*.py")} | {
        p.name + "/" for p in package.iterdir() if (p / "__init__.py").is_file()
    }
    assert not real - named, f"docs/architecture.md leaves out {sorted(real - named)}"
    ghosts = {n for n in named - real if not list(package.rglob(n.rstrip("/")))}
    assert not ghosts, f"docs/architecture.md names {sorted(ghosts)}, which do not exist"


def test_the_package_docstring_names_real_modules() -> None:
    """``lwa_middleware.__doc__`` named ``.core`` and ``.transport`` long after they went."""
    import lwa_middleware

    names = re.findall(r":mod:`(?:lwa_middleware)?\.?([\w.]+)`", lwa_middleware.__doc__ or "")
    assert names
    for name in names:
        module = name if name.startswith("lwa_middleware") else f"lwa_middleware.{name}"
        path = ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_the_readme_architecture_names_only_real_paths() -> None:
    """Issue 19: the README draws the layout; every module or package it
    names exists where it says (a move or a rename that forgets it fails)."""
    text = README.read_text(encoding="utf-8")
    drawing = text.split("## Architecture", 1)[1].split("```")[1]
    package = ROOT / "lwa_middleware"
    named = set(re.findall(r"\b([a-z_]+(?:\.py|/))", drawing)) - {"lwa_middleware/"}
    assert {"_engine/", "signin/", "resolver.py"} <= named
    engine_side = drawing.split("_engine/", 1)[1]
    for name in sorted(named):
        where = package / "_engine" if name in engine_side and name != "_engine/" else package
        assert (where / name.rstrip("/")).exists(), f"README's Architecture names {name}"


def test_every_package_path_the_docs_name_exists() -> None:
    """A path such as ``lwa_middleware/_engine/_conformance.py`` named in the
    README, SECURITY.md or a docs page is where it says: the move to
    ``_engine/`` (issue 19) left three pointing at nothing."""
    missing = []
    for page in (README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").rglob("*.md"))):
        text = page.read_text(encoding="utf-8")
        for name in sorted(set(re.findall(r"lwa_middleware/[\w./-]*[\w/]", text))):
            if not (ROOT / name).exists():
                missing.append(f"{page.relative_to(ROOT)}: {name}")
    assert missing == []


def _installed_by(specs: list[str]) -> set[str]:
    """The distributions ``pip install <specs>`` of this project brings by name: each
    spec's own, and those its extras list (lower case, no version)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    names: set[str] = set()
    for spec in specs:
        name, _, wanted = spec.partition("[")
        names.add(name.lower())
        for extra in filter(None, wanted.rstrip("]").split(",")):
            names |= {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower()
                      for dep in extras[extra]}
    return names


def test_the_tutorial_installs_every_command_it_runs() -> None:
    """A newcomer following the tutorial in a fresh virtualenv (issue 22, "Done when")
    had no pytest in it: step 4's ``pytest`` was another Python's, which cannot import
    the app's packages (``No module named 'starlette'``). Each command the tutorial
    runs that a Python package provides comes from its install line."""
    page = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = [b for b in BLOCKS if b.path == "docs/tutorial.md" and b.lang == "sh"]
    (install,) = [b for b in blocks if "pip install" in b.code]
    words = shlex.split(install.code.split("pip install", 1)[1], comments=True)
    provided = _installed_by([w for w in words if not w.startswith("-")])
    commands = set(re.findall(r"run `([\w-]+)`", page))
    for block in blocks:
        for line in block.code.splitlines():
            argv = [w for w in shlex.split(line, comments=True) if "=" not in w]  # VAR=value
            commands |= set(argv[:1])
    commands -= {"python3", "curl"}  # the system's
    assert {"lwa-middleware", "uvicorn", "pytest"} <= commands, commands
    assert commands <= provided, f"the tutorial runs {sorted(commands - provided)} " \
        f"but its install line ({install.where}) does not install them"


# -- every lwa_middleware.* path the docs name is current ------------------------------------

#: A dotted path; not a file name (``lwa_middleware.md``) nor a Django check id (``.E001``).
_DOTTED = re.compile(r"\blwa_middleware(?:\.(?!md\b|[EW]\d{3}\b)\w+)+")


def _logger_names() -> set[str]:
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "lwa_middleware").rglob("*.py"))
    return set(re.findall(r"getLogger\(\"([\w.]+)\"\)", source))


def _stale(dotted: str) -> str | None:
    """Why ``dotted`` is not a current path (``None``: it is): no such module or
    name, or a deprecated module (the redesign's shims), or a read that warns."""
    import importlib
    import warnings

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        if (module.__doc__ or "").startswith("Deprecated import path"):
            return f"{module.__name__} is a deprecated import path"
        value: object = module
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                for name in parts[cut:]:
                    value = getattr(value, name)
            except (AttributeError, DeprecationWarning) as problem:
                return f"{type(problem).__name__}: {problem}"
        return None
    return "no such module"


def _public_docstrings() -> dict[str, str]:
    """What the API reference renders: each ``::: module``'s docstrings (module,
    public names, their public members); and the docstrings of examples/*.py."""
    import ast
    import importlib
    import inspect

    reference = "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md"))
    texts: dict[str, str] = {}
    for dotted in re.findall(r"^::: ([\w.]+)$", reference, re.MULTILINE):
        module = importlib.import_module(dotted)
        texts[dotted] = module.__doc__ or ""
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            texts[f"{dotted}.{name}"] = inspect.getdoc(value) or ""
            for member, attr in vars(value).items() if inspect.isclass(value) else ():
                if not member.startswith("_") or member == "__init__":
                    texts[f"{dotted}.{name}.{member}"] = inspect.getdoc(attr) or ""
    for path in sorted((ROOT / "examples").rglob("*.py")):
        texts[path.relative_to(ROOT).as_posix()] = ast.get_docstring(
            ast.parse(path.read_text(encoding="utf-8"))) or ""
    return texts


def test_the_docs_name_only_current_module_paths() -> None:
    """The redesign (issue 19) moved the engine to ``_engine/`` and left shims that
    warn; a page or a rendered docstring naming a shim (``lwa_middleware.config``,
    ``from lwa_middleware.prometheus import …``) sends a newcomer to a path that
    goes away. Logger names are not paths (``lwa_middleware.config`` is one)."""
    pages = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
             for p in [README, ROOT / "SECURITY.md", *(ROOT / "docs").rglob("*.md")]}
    loggers = _logger_names()
    stale = {
        f"{where}: {dotted} ({why})"
        for where, text in {**pages, **_public_docstrings()}.items()
        for dotted in set(_DOTTED.findall(text)) - loggers
        if (why := _stale(dotted)) is not None
    }
    assert not stale, "\n".join(sorted(stale))


def _literal_blocks(doc: str) -> list[str]:
    """The reST literal blocks (``::`` then an indented block) of a docstring."""
    import textwrap

    lines = doc.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.rstrip().endswith("::"):
            body = []
            for following in lines[i + 1:]:
                if following.strip() and not following.startswith((" ", "\t")):
                    break
                body.append(following)
            if code := textwrap.dedent("\n".join(body)).strip():
                blocks.append(code)
    return blocks


def test_the_references_examples_parse_and_import_real_names() -> None:
    """The API reference renders the docstrings' examples, which no test runs (the
    pages' blocks are run by test_readme.py): each at least parses as Python, and
    every name it imports from this package is there."""
    import ast
    import importlib

    examples = [(where, code) for where, doc in _public_docstrings().items()
                for code in _literal_blocks(doc)]
    assert len(examples) >= 20, len(examples)
    for where, code in examples:
        tree = ast.parse(code, filename=where)  # a SyntaxError names the docstring
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "lwa_middleware"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), (where, node.module, alias.name)
