"""docs/lwa-facts.md cannot rot: every test it names exists.

The table's last column names the tests that check each LWA fact, as
``path::test_name``. This test parses every table row and checks that each
reference names a test function defined in that file; anything else in
the column (a typo, a placeholder left from before a merge) fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "lwa-facts.md"
_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")
_ROW = re.compile(r"^\|\s*([A-Z]\d+)\s*\|")


def _cells() -> list[list[str]]:
    """The cells of every fact row of every table."""
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if _ROW.match(line):
            # Escaped pipes (\|) belong to a cell, not between cells.
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def _rows() -> list[tuple[str, str]]:
    """``(fact id, test column)`` of every fact row of every table."""
    return [(cells[0], cells[-1]) for cells in _cells()]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


ROWS = _rows()


def test_the_table_has_every_fact_once() -> None:
    ids = [fact for fact, _ in ROWS]
    assert len(ids) == len(set(ids)), "a fact id is used twice"
    # The known facts of /work/shared/LWA-FACTS.md: A1-A9, T1-T10, R1-R5,
    # I1-I7, P1-P13, F1, J1-J4.
    for prefix, last in {"A": 9, "T": 10, "R": 5, "I": 7, "P": 13, "F": 1, "J": 4}.items():
        for n in range(1, last + 1):
            assert f"{prefix}{n}" in ids, f"{prefix}{n} is missing"


@pytest.mark.parametrize(("fact", "column"), ROWS, ids=[fact for fact, _ in ROWS])
def test_every_referenced_test_exists(fact: str, column: str) -> None:
    items = [item.strip().strip("`") for item in re.split(r",|<br>", column) if item.strip()]
    assert items, f"{fact} names no test"
    for item in items:
        match = _REFERENCE.fullmatch(item)
        assert match, f"{fact}: {item!r} is not a path::test reference"
        path = ROOT / match.group(1)
        assert path.is_file(), f"{fact}: {match.group(1)} does not exist"
        assert match.group(2) in _test_names(path), f"{fact}: {item} is not a test in that file"


#: The facts Amazon's pages leave vague, contradictory or unsaid (the "docs"
#: column of /work/shared/LWA-FACTS.md): what the code does about each is an
#: assumption, and the table must say so.
VAGUE = ("A4", "A8", "A9", "T6", "T8", "T9", "R2", "R5", "I3", "I4", "I5", "I6", "I7", "P10", "J4")


def test_every_fact_is_definite_or_marked_as_an_assumption() -> None:
    docs = {cells[0]: cells[-2] for cells in _cells()}
    for fact, column in docs.items():
        assert column.startswith("definite") or "assumption" in column, (
            f"{fact}: the docs column must start with 'definite' or name the assumption"
        )
    for fact in VAGUE:
        assert "assumption" in docs[fact], f"{fact}: Amazon's pages are vague here"
