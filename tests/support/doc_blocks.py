"""The code blocks of README.md and of the docs site's pages (``docs/**/*.md``).

Parsed once here for the tests that run them (``test_readme.py``) and the ones that
try the Quickstart as a reader would (``test_docs.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BLOCKS", "PAGES", "README", "ROOT", "Block", "parse_readme"]

README = Path(__file__).resolve().parents[2] / "README.md"
ROOT = README.parent
#: Every page whose blocks are tested: the README, then the docs site's pages.
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUNNABLE = re.compile(r"^<!--\s*not-runnable:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: str  # the page, relative to the repository: README.md, docs/tutorial.md
    line: int  # line of the opening fence
    lang: str
    code: str
    heading: str
    ordinal: int  # index among the blocks of this language under this heading
    not_runnable: str | None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        page = re.sub(r"[^a-z0-9]+", "-", self.path.lower().removesuffix(".md")).strip("-")
        return f"{page}-L{self.line}-{slug}"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.path, self.heading, self.ordinal)


def parse_readme(text: str, path: str = "README.md") -> list[Block]:
    blocks: list[Block] = []
    heading = ""
    counts: dict[tuple[str, str], int] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip().replace("`", "")
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{path}:{start + 1}: unclosed code fence"
        i += 1
        lang = fence.group(1)
        prev = next((p for p in reversed(lines[:start]) if p.strip()), "")
        marker = _NOT_RUNNABLE.match(prev)
        n = counts.get((heading, lang), 0)
        counts[(heading, lang)] = n + 1
        blocks.append(
            Block(path, start + 1, lang, "\n".join(body) + "\n", heading, n,
                  marker.group(1) if marker else None)
        )
    return blocks


BLOCKS = [block for page in PAGES
          for block in parse_readme(page.read_text(encoding="utf-8"),
                                    page.relative_to(ROOT).as_posix())]
