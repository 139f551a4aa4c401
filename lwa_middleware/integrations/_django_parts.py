"""What the Django middleware and the DRF class share: ``settings.LWA``, the
engine that judges a Django request (blocking or on an event loop), and the
engine the DRF class builds for itself when the middleware is not installed."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse

from .._engine._options import OptionError, origin_of
from .._engine.config import OPTIONS, Settings
from .._engine.errors import DEFAULT_REALM, AuthError, ConfigurationError
from .._engine.gate import Gate
from .._engine.identity import IDENTITY_KEY, Identity
from .._engine.resolver import Resolver
from .._engine.wsgi import ajudge_environ, judge_environ

__all__ = [
    "BACKEND_PATH",
    "OPTION_KEYS",
    "SESSION_USER",
    "Engine",
    "bearer_users",
    "error_response",
    "lwa_config",
    "settings_from_django",
    "shared_engine",
]

#: ``settings.LWA`` key → middleware option.
OPTION_KEYS: dict[str, str] = {option.django_key: option.name for option in OPTIONS}
_EXTRA_KEYS = frozenset({"SET_USER", "BEARER_USERS"})

#: The sign-in backend; listed in ``AUTHENTICATION_BACKENDS``, it turns
#: ``BEARER_USERS`` on by default.
BACKEND_PATH = "lwa_middleware.signin.django.LWABackend"

#: The request attribute where ``SignedInUserMiddleware`` leaves
#: ``(user_id, user or None)`` for a request its session authenticated, so DRF
#: gives the same user as plain views (and never re-links a session).
SESSION_USER = "_lwa_session_user"


def lwa_config() -> Mapping[str, Any]:
    config = getattr(django_settings, "LWA", None)
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            f"settings.LWA must be a dict of options, not {type(config).__name__}"
        )
    return config


def settings_from_django(config: Mapping[str, Any] | None = None) -> tuple[Settings, bool]:
    """Validated middleware :class:`Settings` and ``SET_USER`` from ``settings.LWA``.

    :param config: the ``LWA`` dict; defaults to ``django.conf.settings.LWA``.
    :raises ImproperlyConfigured: unknown keys, bad values, no client id.
    """
    if config is None:
        config = lwa_config()
    elif not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            f"settings.LWA must be a dict of options, not {type(config).__name__}"
        )
    _check_keys(config)
    options = {OPTION_KEYS[key]: value for key, value in config.items() if key in OPTION_KEYS}
    set_user = config.get("SET_USER", False)
    if not isinstance(set_user, bool):
        raise ImproperlyConfigured("settings.LWA['SET_USER'] must be True or False")
    if config.get("BEARER_USERS") not in (None, True, False):
        raise ImproperlyConfigured("settings.LWA['BEARER_USERS'] must be True, False or None")
    try:
        return Settings.from_options(**options), set_user
    except OptionError as exc:
        # Named by its key when settings.LWA gave it (the environment names itself).
        keys = {OPTION_KEYS[key]: f"settings.LWA[{key!r}]" for key in config if key in OPTION_KEYS}
        named = origin_of(exc, keys)
        where = "" if named.source in keys.values() else "settings.LWA: "
        raise ImproperlyConfigured(f"{where}{named}") from exc
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"settings.LWA: {exc}") from exc


def _check_keys(config: Mapping[str, Any]) -> None:
    """Refuse a key of ``settings.LWA`` that names no option, saying which do."""
    unknown = sorted(
        str(key) for key in config if key not in OPTION_KEYS and key not in _EXTRA_KEYS
    )
    if unknown:
        raise ImproperlyConfigured(
            f"settings.LWA: unknown key(s) {', '.join(unknown)}; known keys are "
            f"{', '.join(sorted([*OPTION_KEYS, *_EXTRA_KEYS]))}"
        )


def bearer_users() -> bool:
    """Whether a token's identity becomes a Django user through
    ``authenticate(request, lwa_identity=identity)`` (``settings.LWA["BEARER_USERS"]``).

    Unset (``None``), it is on exactly when the sign-in backend is in
    ``AUTHENTICATION_BACKENDS``: listing it says LWA customers are Django users.
    """
    choice = lwa_config().get("BEARER_USERS")
    if choice is None:
        return BACKEND_PATH in (getattr(django_settings, "AUTHENTICATION_BACKENDS", None) or [])
    if not isinstance(choice, bool):
        raise ImproperlyConfigured("settings.LWA['BEARER_USERS'] must be True, False or None")
    return choice


def error_response(error: AuthError, realm: str = DEFAULT_REALM) -> HttpResponse:
    """The middleware's answer to ``error`` as a Django :class:`HttpResponse`."""
    response = HttpResponse(error.response(realm)[2], status=error.status)
    for name, value in error.text_headers(realm):
        response[name] = value
    return response


def _where(request: HttpRequest) -> tuple[str, str]:
    """The path Django routes on (``path_info``) and the prefix above it."""
    path_info = request.path_info or "/"
    full = request.path
    return path_info, full[: len(full) - len(path_info)] if full.endswith(path_info) else ""


class Engine:
    """``settings.LWA`` built once: its settings, resolver (caches, LWA
    clients) and gate, and the judgement of a Django request by them.

    ``request.META`` is the WSGI environ (or, under ASGI, one built like it),
    so the gate judges it as for any WSGI app, on the path Django routes on.
    """

    def __init__(self) -> None:
        self.settings, self.set_user = settings_from_django()
        self.resolver = Resolver(self.settings)
        self.gate = Gate(self.settings, self.resolver)
        self.realm = self.settings.realm

    def __repr__(self) -> str:
        return f"Engine({self.resolver!r})"

    def judge(self, request: HttpRequest) -> AuthError | None:
        """Judge ``request`` (blocking): ``None`` once its identity is attached."""
        path_info, script_name = _where(request)
        error = judge_environ(self.gate, self.resolver, request.META, path_info, script_name)
        if error is None:
            self._attach(request)
        return error

    async def ajudge(self, request: HttpRequest) -> AuthError | None:
        """:meth:`judge` on an event loop, awaiting the async engine."""
        path_info, script_name = _where(request)
        error = await ajudge_environ(self.gate, self.resolver, request.META, path_info, script_name)
        if error is None:
            self._attach(request)
        return error

    def _attach(self, request: HttpRequest) -> None:
        # Always there, so views on public routes can read it; META keeps the
        # environ's meaning (absent: no token was read).
        identity: Identity | None = request.META.get(IDENTITY_KEY)
        request.lwa_identity = identity
        if self.settings.strip_credentials:
            # request.GET and request.headers are cached from META on first use.
            for cached in ("GET", "headers"):
                request.__dict__.pop(cached, None)

    def close(self) -> None:
        self.resolver.close()


_shared: Engine | None = None
_shared_lock = threading.Lock()


def shared_engine() -> Engine:
    """The engine of requests no middleware judged (the DRF class alone),
    built from ``settings.LWA`` on first use and rebuilt when it changes."""
    global _shared
    engine = _shared
    if engine is None:
        with _shared_lock:
            if _shared is None:
                _shared = Engine()
            engine = _shared
    return engine


def _settings_changed(*, setting: str, **_: Any) -> None:
    global _shared
    if setting != "LWA":
        return
    with _shared_lock:
        engine, _shared = _shared, None
    if engine is not None:
        engine.close()


setting_changed.connect(_settings_changed)
