"""Write the option tables of docs/options.md from their one declaration.

    python scripts/options_table.py           # rewrite docs/options.md
    python scripts/options_table.py --check   # exit 1 if it is out of date

The tables are :data:`lwa_middleware._engine.config.OPTIONS` (the middlewares) and
:data:`lwa_middleware.signin._options.SIGNIN_OPTIONS`; tests/test_options.py
fails while the page differs from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lwa_middleware._engine._options import with_tables
from lwa_middleware._engine.config import OPTIONS
from lwa_middleware.signin._options import SIGNIN_OPTIONS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "options.md"
TABLES = {"middleware": OPTIONS, "signin": SIGNIN_OPTIONS}


def main(argv: list[str]) -> int:
    text = PAGE.read_text(encoding="utf-8")
    fresh = with_tables(text, TABLES)
    if "--check" in argv:
        return 0 if fresh == text else 1
    PAGE.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
