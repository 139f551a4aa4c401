"""Deprecated import path: ``lwa_middleware.cli`` is private now.

Import public names from ``lwa_middleware`` (docs/reference).
This module keeps old imports working, each with a DeprecationWarning, until
the release named in CHANGELOG.md ("Deprecated").
"""

from lwa_middleware._deprecated import moved

__getattr__ = moved(__name__, "lwa_middleware._engine.cli")

if __name__ == "__main__":  # ``python -m lwa_middleware.cli``: the command, as before the move
    import warnings

    from lwa_middleware._deprecated import REMOVED_IN
    from lwa_middleware._engine.cli import main

    warnings.warn(
        "python -m lwa_middleware.cli is deprecated: run lwa-middleware or "
        f"python -m lwa_middleware (the old path goes in {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=1,
    )
    raise SystemExit(main())
