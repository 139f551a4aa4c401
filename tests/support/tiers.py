"""The fast tier: which tests need a real server, browser, Redis or wall-clock wait.

``tests/conftest.py`` calls :func:`classify` on every collected test, so a new
test is put in its tier by what it does, not by a list someone must keep:

* its fixture closure: a fixture that starts something (``lwa_emulator``
  through ``lwa_emulator_server``, a module's ``redis_server``, ``browser``)
  marks every test that uses it, however indirectly;
* what the test function, those fixtures, and every helper they call that is
  defined in ``tests/`` (followed transitively: ``support.servers.serve``,
  ``signin_support.Worker``, a module's ``_run_cli``) call: constructing an
  ``LWAEmulator``, ``listen()`` on a socket, a ``subprocess``, Playwright,
  a ``RedisServer``, or a blocking ``time.sleep`` of a second or more.

:data:`FAST` is the ``-m`` expression of the fast tier (``scripts/test --fast``,
``pytest --fast``). What static reading cannot see (a server started through a
library call), :func:`guard` catches at run time: an unmarked test that
listens on a socket or starts a process fails, saying which marker it needs.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: Markers that keep a test out of the fast tier; ``slow`` is set by hand.
TIERS = ("server", "browser", "redis", "slow", "wallclock")
FAST = "not (" + " or ".join(TIERS) + ")"

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / "lwa_middleware"

#: A call whose last name is one of these starts a real thing.
_CALLS = {
    "LWAEmulator": "server",
    "listen": "server",  # socket.listen: whoever calls it serves
    "create_server": "server",
    "start_server": "server",
    "serve_forever": "server",
    "Popen": "server",  # a child process: seconds to start, like a server
    "create_subprocess_exec": "server",
    "create_subprocess_shell": "server",
    "fork": "server",
    "sync_playwright": "browser",
    "async_playwright": "browser",
    "RedisServer": "redis",
    "LocalCluster": "redis",
}
#: A call on one of these modules starts a child process.
_MODULES = {"subprocess": "server"}
#: ``time.sleep(n)`` with a literal ``n`` at least this long waits out the clock.
_LONG_SLEEP = 1.0


# -- the hooks (imported by tests/conftest.py; ``-p support.tiers`` elsewhere) ------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="only the fast tier: no real server, browser, Redis or wall-clock wait",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("fast"):
        given = config.option.markexpr
        config.option.markexpr = f"({given}) and {FAST}" if given else FAST
    install_guard()


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    classify(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    # In every run, CI's too: a test left in the fast tier that starts a
    # server or a process fails, instead of quietly slowing the tier down.
    if not is_fast(item):
        return (yield)
    with guard(item.nodeid):
        return (yield)


# -- the classification ------------------------------------------------------------


def classify(items: Iterable[pytest.Item]) -> None:
    """Add the tier markers each test earns (see the module docstring)."""
    items = list(items)
    # The suite's own code: tests/, the directories of the tests collected
    # (another checkout's, pytester's), and the package's pytest plugin.
    roots = {TESTS, PACKAGE / "testing"} | {Path(str(item.path)).parent for item in items}
    reader = _Reader(tuple(roots))
    for item in items:
        found = reader.labels_of_item(item)
        for name in sorted(found - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, name))


def is_fast(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(name) for name in TIERS)


class _Reader:
    """Parses each file once; remembers what every function was found to do."""

    def __init__(self, roots: tuple[Path, ...]) -> None:
        self._roots = roots
        self._ours: dict[str, bool] = {}
        self._seen: dict[object, frozenset[str]] = {}
        self._files: dict[str, dict[tuple[str, int], ast.AST]] = {}

    def labels_of_item(self, item: pytest.Item) -> set[str]:
        found = set(self.labels_of(getattr(item, "obj", None)))
        info = getattr(item, "_fixtureinfo", None)
        for defs in getattr(info, "name2fixturedefs", {}).values():
            for fixturedef in defs:
                found |= self.labels_of(fixturedef.func)
        return found

    def labels_of(self, target: object) -> frozenset[str]:
        where = _where(target)
        if where is None or not self._is_ours(where[0]):
            return frozenset()
        key = target if isinstance(target, type) else where
        if key not in self._seen:
            self._seen[key] = frozenset()  # a recursion cycle adds nothing
            self._seen[key] = frozenset(self._read(where, _scope(target)))
        return self._seen[key]

    def _is_ours(self, filename: str) -> bool:
        if filename not in self._ours:
            path = Path(filename)
            self._ours[filename] = path.suffix == ".py" and any(
                path.is_relative_to(root) for root in self._roots
            )
        return self._ours[filename]

    def _read(self, where: tuple[str, str, int], scope: dict[str, Any]) -> set[str]:
        node = self._node(*where)
        found: set[str] = set()
        for child in ast.walk(node) if node is not None else ():
            if isinstance(child, ast.Call):
                found |= _call(child)
            elif isinstance(child, ast.Name | ast.Attribute):
                # Called or not (a base class, a thread's target, a value
                # handed to a fixture): a helper of ours counts for what it does.
                found |= self.labels_of(_resolve(_dotted(child), scope))
        return found

    def _node(self, filename: str, name: str, line: int) -> ast.AST | None:
        if filename not in self._files:
            self._files[filename] = index = {}
            tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    # A function's code starts at its first decorator.
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    index[(node.name, first)] = node
                    index.setdefault((node.name, 0), node)
        return self._files[filename].get((name, line))


def _where(target: object) -> tuple[str, str, int] | None:
    """File, name and first line of a function or class; None for anything else.

    Only real types are asked (``type(x)``, never ``x.__class__``): a lazy
    object such as Django's ``settings`` would set itself up when touched.
    """
    kind = type(target)
    if issubclass(kind, type):
        module = sys.modules.get(vars(target).get("__module__", ""))
        where = (getattr(module, "__file__", None) or "", target.__name__, 0)  # type: ignore[attr-defined]
    elif issubclass(kind, types.FunctionType):
        code = inspect.unwrap(target).__code__  # type: ignore[arg-type]
        where = (code.co_filename, code.co_name, code.co_firstlineno)
    else:
        return None
    return where


def _scope(target: object) -> dict[str, Any]:
    if issubclass(type(target), type):
        module = sys.modules.get(vars(target).get("__module__", ""))
        return vars(module) if module is not None else {}
    return inspect.unwrap(target).__globals__  # type: ignore[arg-type, no-any-return]


def _call(node: ast.Call) -> set[str]:
    parts = _dotted(node.func)
    if not parts:
        return set()
    if parts[-1] in _CALLS:
        return {_CALLS[parts[-1]]}
    if len(parts) > 1 and parts[0] in _MODULES:
        return {_MODULES[parts[0]]}
    # Blocking sleeps only: an awaited ``anyio.sleep(3600)`` is a hang the
    # test cancels, not a wait.
    if parts in (["time", "sleep"], ["sleep"]) and _literal(node) >= _LONG_SLEEP:
        return {"wallclock"}
    return set()


def _dotted(node: ast.expr) -> list[str]:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return names[::-1]
    return []


def _literal(node: ast.Call) -> float:
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, int | float):
        return float(arg.value)
    return 0.0


def _resolve(parts: list[str], scope: dict[str, Any]) -> object:
    """What ``a.b.c`` names in a module's globals, through modules only."""
    if not parts:
        return None
    value = scope.get(parts[0], getattr(builtins, parts[0], None))
    for name in parts[1:]:
        if not issubclass(type(value), types.ModuleType):
            break
        value = vars(value).get(name)
    return value


# -- the run-time guard ----------------------------------------------------------


class NotFast(AssertionError):
    """A test in the fast tier started a server or a process."""


_current: list[str] = []


@contextmanager
def guard(nodeid: str) -> Iterator[None]:
    """While a fast-tier test runs, listening or spawning fails it."""
    _current.append(nodeid)
    try:
        yield
    finally:
        _current.pop()


def _refuse(what: str) -> None:
    if _current:
        raise NotFast(
            f"{_current[-1]} {what} but is in the fast tier: mark it "
            "@pytest.mark.server (or redis/browser), or take the fixture that starts it"
        )


def _guarded(original: Callable[..., Any], what: str) -> Callable[..., Any]:
    def check(*args: Any, **kwargs: Any) -> Any:
        _refuse(what)
        return original(*args, **kwargs)

    check.__wrapped__ = original  # type: ignore[attr-defined]
    return check


def install_guard() -> None:
    """Once per process: fast-tier tests may not listen or spawn."""
    if not hasattr(socket.socket.listen, "__wrapped__"):
        socket.socket.listen = _guarded(socket.socket.listen, "listens on a socket")  # type: ignore[method-assign]
        subprocess.Popen.__init__ = _guarded(  # type: ignore[method-assign]
            subprocess.Popen.__init__, "starts a process"
        )
