"""Code-shape limits of the package (issue 19): every function small enough to
follow, no block nested deep, and the Redis tier's layers pointing down.

- Cyclomatic complexity at most 15 a function, by radon (installed with the
  ``lint`` group; .ci/run runs this file after installing it).
- No function nests its blocks more than 4 deep (``elif`` and ``except`` are
  not a level of their own; a nested function is measured apart).
- No import cycle, at module level or inside functions, within
  ``shared_cache`` or between it and the resolver (imports under
  ``if TYPE_CHECKING:`` are for the type checker only, and not counted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import lwa_middleware

PACKAGE = Path(lwa_middleware.__file__).parent
MAX_COMPLEXITY = 15
MAX_NESTING = 4

_BLOCKS = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.TryStar,
    ast.Match,
)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _sources(root: Path = PACKAGE) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*.py")):
        yield str(path.relative_to(root.parent)), path.read_text(encoding="utf-8")


def nesting(node: ast.AST, level: int = 0) -> int:
    """How many blocks deep the deepest statement under ``node`` sits."""
    worst = level
    for field, value in ast.iter_fields(node):
        children = value if isinstance(value, list) else [value]
        for child in children:
            if not isinstance(child, ast.AST) or isinstance(child, _SCOPES):
                continue
            elif_ = isinstance(node, ast.If) and field == "orelse" and len(value) == 1
            deeper = isinstance(child, _BLOCKS) and not (elif_ and isinstance(child, ast.If))
            worst = max(worst, nesting(child, level + 1 if deeper else level))
    return worst


def too_deep(root: Path = PACKAGE) -> list[str]:
    found = []
    for name, text in _sources(root):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                depth = nesting(node)
                if depth > MAX_NESTING:
                    found.append(f"{name}:{node.lineno} {node.name}: {depth} deep")
    return found


def too_complex(root: Path = PACKAGE) -> list[str]:
    complexity = pytest.importorskip("radon.complexity")
    found = set()
    for name, text in _sources(root):
        blocks = list(complexity.cc_visit(text))
        while blocks:
            block = blocks.pop()
            # A class's methods and inner classes, a function's closures.
            blocks += getattr(block, "methods", []) + getattr(block, "inner_classes", [])
            blocks += getattr(block, "closures", [])
            # Functions only: a class's own figure is its methods' sum.
            if hasattr(block, "is_method") and block.complexity > MAX_COMPLEXITY:
                found.add(f"{name}:{block.lineno} {block.name}: {block.complexity}")
    return sorted(found)


def test_no_function_is_too_complex() -> None:
    assert too_complex() == []


def test_no_function_nests_too_deep() -> None:
    assert too_deep() == []


def test_nesting_counts_blocks_not_elifs() -> None:
    flat = """
def f(x):
    if x:
        pass
    elif x:
        pass
    elif x:
        def g():
            if x:
                if x:
                    pass
"""
    deep = """
def f(x):
    for y in x:
        with y:
            try:
                pass
            except E:
                if y:
                    return
"""
    assert nesting(ast.parse(flat).body[0]) == 1
    assert nesting(ast.parse(deep).body[0]) == 4


def _imports(module: str, tree: ast.Module, is_package: bool) -> Iterator[str]:
    """The package modules ``module`` imports, anywhere but under TYPE_CHECKING."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # A module's own packages are imported before it: no edge back to them.
        ancestors = {module.rsplit(".", n)[0] for n in range(module.count(".") + 1)}
        graph[module] = {m for m in _imports(module, tree, is_package) if m in names} - ancestors
    return graph


def cycles_through(graph: dict[str, set[str]], prefixes: tuple[str, ...]) -> list[list[str]]:
    """One import cycle for each module starting with one of ``prefixes`` that is on one."""
    found = []
    for start in sorted(m for m in graph if m.startswith(prefixes)):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen = set()
        while stack:
            module, path = stack.pop()
            for target in sorted(graph[module]):
                if target == start:
                    found.append([*path, start])
                    stack = []
                    break
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return found


def test_the_package_imports_no_cycle() -> None:
    """Layers point down (issue 19): no module of the package is on an import
    cycle, counting imports inside functions."""
    graph = import_graph()
    assert "lwa_middleware._engine.shared_cache" in graph["lwa_middleware._engine.resolver"]
    assert cycles_through(graph, ("lwa_middleware",)) == []


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles_through(graph, ("a",)) == [["a", "b", "c", "a"]]
    assert cycles_through(graph, ("d",)) == []


def test_no_module_is_over_600_lines() -> None:
    """A module a maintainer can hold in mind (the project's style guide)."""
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {}
