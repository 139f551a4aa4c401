"""A griffe extension for the docs site (mkdocs.yml): this package's docstrings are written
in reStructuredText (``:class:`x``` roles, ``Example::`` literal blocks, ``:param:`` fields),
while mkdocstrings renders Markdown. The fields are parsed by griffe's Sphinx style; this
turns the roles into code spans and the literal blocks into fenced code, so the reference
reads as prose instead of showing the markup.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const|ref|term):`([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(1)
    titled = re.fullmatch(r"(.+?)\s*<(.+)>", target)
    if titled:
        return f"`{titled.group(1)}`"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _literal_blocks(text: str) -> str:
    """``Intro::`` + an indented block → ``Intro:`` + a fenced Python block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.endswith("::") and (stripped == "::" or not stripped.startswith(":")):
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip()
                                      or len(lines[j]) - len(lines[j].lstrip()) > indent):
                block.append(lines[j])
                j += 1
            if block:
                head = line.rstrip()[:-2].rstrip()
                if head.strip():
                    out.append(head + ":")
                while block and not block[-1].strip():
                    block.pop()
                body = textwrap.dedent("\n".join(block))
                pad = " " * indent
                out += ["", pad + "```python",
                        *[pad + b if b else b for b in body.split("\n")], pad + "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def convert(text: str) -> str:
    return _literal_blocks(_ROLE.sub(_role, text))


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
