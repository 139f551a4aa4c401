"""Old import paths kept for one deprecation period (docs/policy.md, issue 19).

Each old public module (``lwa_middleware.errors``, ``lwa_middleware.demo``, ...)
is now a few lines that set ``__getattr__ = moved(__name__, "<new module>")``
(PEP 562): a name read from it is looked up in the module that now holds it,
with a :class:`DeprecationWarning` that names the public home of the name, if it
has one. Nothing is imported until a name is read, so the library's own imports
never warn.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable

# Deprecated in 0.2.0 (CHANGELOG.md): removed no earlier than this release.
REMOVED_IN = "0.4.0"

# Where a user finds public names, in the order they are looked up.
PUBLIC_HOMES = (
    "lwa_middleware",
    "lwa_middleware.testing",
    "lwa_middleware.signin",
    "lwa_middleware.integrations.prometheus",
)


def moved(old: str, *new: str) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``old``, forwarding to the first of ``new`` that has
    the name, with a warning. A public module uses it for the names it no longer
    exports (Python calls it only for a name the module lacks)."""

    def __getattr__(name: str) -> object:
        if name.startswith("__"):  # copy, pickle, inspect probe dunders: not a user's read
            raise AttributeError(name)
        value = next((v for v in (_resolve(m, name) for m in new) if v is not _MISSING), _MISSING)
        if value is _MISSING:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        # `from package import name` asks hasattr() first, then reads: warn on the read
        if sys._getframe(1).f_code.co_name == "_handle_fromlist":
            return value
        warnings.warn(
            f"{old}.{name} is deprecated: {_advice(name, value)} "
            f"(the old path goes in {REMOVED_IN})",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__


_MISSING = object()


def _resolve(module: str, name: str) -> object:
    holder = importlib.import_module(module)
    value = getattr(holder, name, _MISSING)
    if value is _MISSING:  # a submodule of a moved package (lwa_middleware.demo.app)
        try:
            value = importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            return _MISSING
    return value


def _advice(name: str, value: object) -> str:
    for home in PUBLIC_HOMES:
        try:
            public = importlib.import_module(home)
        except ImportError:  # its extra is not installed: it cannot be the answer
            continue
        if name in getattr(public, "__all__", ()) and getattr(public, name) is value:
            return f"import it from {home}"
    return "it is private now, with no public replacement; tell us what you use it for"
