"""Deprecated import path: ``lwa_middleware.upstream`` is private now.

Import public names from ``lwa_middleware`` (docs/reference).
This module keeps old imports working, each with a DeprecationWarning, until
the release named in CHANGELOG.md ("Deprecated").
"""

from lwa_middleware._deprecated import moved

__getattr__ = moved(__name__, "lwa_middleware._engine.upstream")
