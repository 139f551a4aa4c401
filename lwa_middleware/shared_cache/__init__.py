"""The shared Redis cache: the least rights its Redis user needs.

The rest of this module moved to a private engine: its other names still import,
each with a DeprecationWarning, until the release named in CHANGELOG.md.
"""

from lwa_middleware._deprecated import moved
from lwa_middleware._engine.shared_cache import ACL_RULES, CLUSTER_ACL_RULES

__all__ = ["ACL_RULES", "CLUSTER_ACL_RULES"]

__getattr__ = moved(__name__, "lwa_middleware._engine.shared_cache")
