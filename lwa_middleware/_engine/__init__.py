"""The engine of lwa-middleware: private, no import path here is stable.

The public API is :mod:`lwa_middleware`, :mod:`lwa_middleware.integrations`,
:mod:`lwa_middleware.signin`, :mod:`lwa_middleware.testing` and the ACLs of
:mod:`lwa_middleware.shared_cache` (docs/reference).
"""
