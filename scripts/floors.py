"""Print pip constraints pinning each runtime dependency to its declared floor.

    python scripts/floors.py redis signin > floors.txt
    pip install -c floors.txt -e '.[redis,signin]'

The base dependencies and those of the extras named on the command line,
each ``name>=X`` of pyproject.toml as ``name==X``: .ci/run's lowest-versions
leg installs exactly what pyproject.toml promises to work with. A runtime
dependency without a ``>=`` floor is an error: it promises nothing testable.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*[^;]*?>=\s*([^,;\s]+)")


def floors(pyproject: Path, extras: list[str]) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for spec in specs:
        match = _FLOOR.match(spec)
        if match is None:
            raise SystemExit(f"floors.py: {spec!r} declares no >= floor")
        name, floor = match[1].lower(), match[2]
        if pins.get(name, floor) != floor:
            raise SystemExit(f"floors.py: {name} has two floors, {pins[name]} and {floor}")
        pins[name] = floor
    return pins


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    for name, floor in sorted(floors(root / "pyproject.toml", sys.argv[1:]).items()):
        print(f"{name}=={floor}")


if __name__ == "__main__":
    main()
