"""Native integrations with web frameworks, each in its own module.

Importing :mod:`lwa_middleware` or this package imports no framework: import
the module of yours, and only it imports the framework.

=====================================================  ============================================
module                                                 gives
=====================================================  ============================================
:mod:`lwa_middleware.integrations.starlette`           ``require_scopes`` endpoint decorator
:mod:`lwa_middleware.integrations.fastapi`             ``current_identity``, ``optional_identity``,
                                                       ``require_scopes`` dependencies, OpenAPI
                                                       security scheme, ``install_error_handlers``
:mod:`lwa_middleware.integrations.flask`               the ``LWA`` extension, ``lwa_required``
:mod:`lwa_middleware.integrations.django`              ``LWAMiddleware`` for ``MIDDLEWARE``,
                                                       ``lwa_required``, ``LWAUser``, a system
                                                       check (``LWAConfig``)
:mod:`lwa_middleware.integrations.drf`                 ``LWAAuthentication``, ``HasLWAScopes``
                                                       for Django REST framework
=====================================================  ============================================

All of them read the identity the middleware attached and never call LWA
themselves; their errors are the middleware's, byte for byte (status, JSON
body, ``WWW-Authenticate``).
"""
