"""``python -m lwa_middleware``: the same as the ``lwa-middleware`` command."""

from __future__ import annotations

from ._engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
