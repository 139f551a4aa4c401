"""How an option is declared once, and everything derived from the declaration.

An :class:`Option` holds an option's name, type (as the docs show it),
default, environment variable, one-line doc and check. The middlewares'
table is :data:`lwa_middleware.config.OPTIONS`, SignIn's is
:data:`lwa_middleware.signin._options.SIGNIN_OPTIONS`. From them come the
environment fallbacks (:func:`from_environment`), the Flask keys
(``app.config["LWA_" + NAME]``), the Django settings (``settings.LWA[NAME]``),
the tables of ``docs/options.md`` (:func:`markdown_table`) and the errors,
which name the option and where its value came from (:class:`OptionError`).
The typed keywords and :class:`~lwa_middleware.config.Settings` fields stay
written out, for type checkers; ``tests/test_options.py`` fails if any of them
drifts from the table.

Stdlib and :mod:`.errors` only: configuration builds on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from .errors import ConfigurationError

__all__ = ["Option", "OptionError", "from_environment", "markdown_table", "origin_of"]

#: The check of an option: raises :class:`ConfigurationError` on a bad value.
Check = Callable[[Any], None]

#: The default of an option that has none to show (required, or computed from others).
COMPUTED: Final[Any] = type("Computed", (), {"__repr__": lambda self: "COMPUTED"})()


@dataclass(frozen=True)
class Option:
    """One option, declared once."""

    name: str
    #: The type as the docs table shows it (Markdown).
    type: str
    #: The value when the option is not given (:data:`COMPUTED`: none of its own).
    default: Any
    #: One line of Markdown: what it does.
    doc: str
    #: Validates a given value; ``None`` when checked with the options it depends on.
    check: Check | None = None
    #: The environment variable read when the option is not given.
    env: str | None = None
    #: Turns the environment variable's text into a value.
    parse: Callable[[str], Any] = str
    #: Options that, when given, keep :attr:`env` from being read.
    env_unless: tuple[str, ...] = ()
    #: The docs' default column, when the default's repr would not say it.
    shown: str | None = None

    @property
    def flask_key(self) -> str:
        return "LWA_" + self.name.upper()

    @property
    def django_key(self) -> str:
        return self.name.upper()

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is COMPUTED:
            return "required"
        plain = f"`{_literal(self.default)}`"
        if self.env is None:
            return plain
        return f"`${self.env}`" + ("" if self.default is None else f" or {plain}")


def _literal(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}".replace("builtins.", "")
    return repr(value)


class OptionError(ConfigurationError):
    """A bad option: :attr:`option` names it, :attr:`source` where it came from."""

    def __init__(self, option: str, message: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.option = option
        self.source = source
        self.bare = message


@contextmanager
def checking(name: str, sources: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn a :class:`ConfigurationError` raised inside into an :class:`OptionError`
    for option ``name``, labelled with where its value came from (if not the caller)."""
    try:
        yield
    except OptionError:
        raise
    except ConfigurationError as exc:
        source = (sources or {}).get(name)
        raise OptionError(name, str(exc), source) from None


def origin_of(error: OptionError, given: Mapping[str, str]) -> OptionError:
    """``error`` labelled with ``given[option]`` (a Flask key, a Django setting)
    when that is where the option came from and nothing labelled it yet."""
    source = given.get(error.option)
    if error.source is not None or source is None:
        return error
    return OptionError(error.option, error.bare, source)


def from_environment(
    options: Sequence[Option], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``given`` with the environment filling what is not given (``None`` is
    not given when the option has an environment variable or no default of its
    own), and which options the environment gave."""
    import os

    values = dict(given)
    sources: dict[str, str] = {}
    for option in options:
        if values.get(option.name) is not None or option.env is None:
            continue
        if any(given.get(other) is not None for other in option.env_unless):
            continue
        raw = os.environ.get(option.env, "")
        if raw == "":
            continue
        sources[option.name] = option.env
        with checking(option.name, sources):
            values[option.name] = option.parse(raw)
    return values, sources


def number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{raw!r} is not a number") from None


def whole(raw: str) -> int:
    return int(number(raw))


def boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{raw!r} is not one of 1/true/yes/on or 0/false/no/off")


def comma_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


# -- the checks most options share ---------------------------------------------


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def seconds(name: str) -> Check:
    """A finite number of seconds > 0."""

    def check(value: Any) -> None:
        if _number(name, value) <= 0:
            raise ConfigurationError(f"{name} must be > 0")

    return check


def seconds_or_zero(name: str) -> Check:
    """A finite number of seconds >= 0 (0 turns the feature off)."""

    def check(value: Any) -> None:
        if _number(name, value) < 0:
            raise ConfigurationError(f"{name} must be >= 0")

    return check


def count(name: str) -> Check:
    """An integer >= 1."""

    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")

    return check


def flag(name: str) -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name} must be True or False")

    return check


def function(name: str, like: str = "", optional: bool = False) -> Check:
    def check(value: Any) -> None:
        if not callable(value) and not (optional and value is None):
            raise ConfigurationError(f"{name} must be callable{', like ' + like if like else ''}")

    return check


def markdown_table(options: Sequence[Option]) -> str:
    """The docs' table of ``options``: option, type, default, what it does."""
    rows = ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
    for option in options:
        kind = option.type.replace("|", "\\|")
        rows.append(f"| `{option.name}` | {kind} | {option.default_text()} | {option.doc} |")
    return "\n".join(rows) + "\n"


def with_tables(page: str, tables: Mapping[str, Sequence[Option]]) -> str:
    """``page`` with each ``<!-- options: NAME -->`` … ``<!-- /options -->``
    block replaced by :func:`markdown_table` of ``tables[NAME]``."""
    out: list[str] = []
    rest = page
    for name, options in tables.items():
        start = f"<!-- options: {name} -->\n"
        before, found, after = rest.partition(start)
        if not found:
            raise ValueError(f"no {start.strip()} marker")
        _, end, rest = after.partition("<!-- /options -->")
        if not end:
            raise ValueError(f"no <!-- /options --> after {start.strip()}")
        out += [before, start, markdown_table(options), "<!-- /options -->"]
    return "".join(out) + rest
