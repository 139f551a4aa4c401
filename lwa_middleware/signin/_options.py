"""Every option of :class:`~lwa_middleware.signin.SignIn`, declared once (see
:mod:`lwa_middleware._options`): its keywords, its checks, the environment
variable it reads and the docs table (``docs/options.md``) come from here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from .._engine._checks import check_region
from .._engine._options import (
    COMPUTED,
    Option,
    checking,
    count,
    flag,
    from_environment,
    function,
    seconds,
    seconds_or_zero,
)
from .._engine.clock import check_clock
from .._engine.errors import ConfigurationError
from ._cookies import safe_next
from ._sessions import MAX_PENDING_LOGINS

__all__ = ["AUTHORIZE_URL", "SIGNIN_OPTIONS", "authorize_url_of", "check_signin_options"]

#: LWA's authorize page; the same for every region.
AUTHORIZE_URL: Final = "https://www.amazon.com/ap/oa"


def _path(name: str) -> Any:
    def check(value: Any) -> None:
        if safe_next(value, "") != value:
            raise ConfigurationError(f"{name} must be a path such as '/login'")

    return check


_S = "`float` seconds"

SIGNIN_OPTIONS: tuple[Option, ...] = (
    Option("client_id", "`str`", COMPUTED, "your LWA client id (one). Required."),
    Option(
        "client_secret", "`str`", COMPUTED,
        "its secret; sent only to the token endpoint, in the body. Required.",
    ),
    Option(
        "redirect_uri", "`str`", COMPUTED,
        "the callback URL registered with LWA; its origin is the app's origin (cookies, CSRF "
        "checks, `next` paths). Required.",
    ),
    Option(
        "session_secret", "`str | bytes`", COMPUTED,
        "32+ bytes; the key of the encryption at rest. Required.",
    ),
    Option(
        "api_base_url", "`str`", None,
        "LWA API origin, as for the middleware (default `https://api.amazon.com`)",
        env="LWA_API_BASE_URL", env_unless=("region",),
    ),
    Option(
        "region", '`"na" | "eu" | "fe"`', None, "instead of `api_base_url`, as for the middleware",
        check_region, env="LWA_REGION", env_unless=("api_base_url",),
    ),
    Option(
        "authorize_url", "`str`", None,
        "LWA's authorize page (`{emulator.base_url}/ap/oa` in tests)",
        env="LWA_AUTHORIZE_URL", shown=f"`$LWA_AUTHORIZE_URL` or `{AUTHORIZE_URL}`",
    ),
    Option(
        "scopes", "collection of `str`", ("profile",),
        "what to ask for: `profile`, `profile:user_id`, `postal_code`",
    ),
    Option("redis_url", "`str`", None, "keep sessions in Redis (shared by workers), not memory"),
    Option("store", "`SessionStore`", None, "or any session store"),
    Option(
        "link", "`Callable[[Identity], Any]`", None,
        "called once per sign-in; its JSON-serialisable result is kept with the session "
        "(e.g. your user's id)",
        function("link", optional=True),
    ),
    Option("login_path", "`str` path", "/login", "the sign-in endpoint", _path("login_path")),
    Option("logout_path", "`str` path", "/logout", "the sign-out endpoint (POST)",
           _path("logout_path")),
    Option("after_login", "`str` path", "/", "where a sign-in without `next` lands"),
    Option("after_logout", "`str` path", "/", "where a sign-out lands"),
    Option(
        "cookie_name", "`str`", "lwa_session",
        "the session cookie (`__Host-` prefixed over https)",
    ),
    Option(
        "session_ttl", _S, 14 * 86400.0, "how long a session lasts at most",
        seconds("session_ttl"), shown="`1209600` (14 days)",
    ),
    Option(
        "refresh_margin", _S, 60.0, "refresh the access token when fewer seconds are left",
        seconds_or_zero("refresh_margin"),
    ),
    Option(
        "timeout", _S, 5.0,
        "deadline of each call to LWA's token endpoint (the new token's lookup keeps the "
        "middleware's `timeout`); the refresh lease lasts twice this",
        seconds("timeout"),
    ),
    Option(
        "retry_after", "`int` seconds", 5, "`Retry-After` of a 503 page when LWA did not say",
        count("retry_after"),
    ),
    Option(
        "max_sessions", "`int`", 10_000, "sessions the in-memory store keeps",
        count("max_sessions"),
    ),
    Option(
        "max_pending_logins", "`int`", MAX_PENDING_LOGINS,
        "sign-ins in progress (`/login` not yet back at the callback) the store this builds "
        "keeps at most; beyond, a `/login` is a 503 page, and no session is ever evicted for one",
        count("max_pending_logins"),
    ),
    Option(
        "clock", "clock", time,
        "what reads time: the middleware's kind of clock (`monotonic()` and `time()`, like the "
        "`time` module), the same object in tests. Read here: `time()`, epoch seconds, since "
        "sessions outlive the process (in Redis): the clock of session ends, access token "
        "expiry and refresh. Not of the HTTP deadlines (`timeout`), the refresh wait or the "
        "in-memory store's expiry, which run in real time. A bare callable (read as "
        "`time.time`) is deprecated",
        check_clock("clock"), shown="`time`",
    ),
    Option(
        "http", "`httpx2.Client`", None,
        "your client for the token endpoint's POSTs (none: the middleware's own pool, "
        "which `http_client=` customises); `timeout` and the middleware's `max_response_bytes` "
        "bound them, and no cookie of its jar goes with them (the jar is left as it is)",
    ),
    Option(
        "pages", "mapping or callable", None,
        "the cancelled/failed/expired/refused/unavailable pages: kind → template text, or "
        "`pages(page) -> str`",
        shown="styled defaults",
    ),
    Option(
        "allow_mixed_hosts", "`bool`", False,
        "accept `authorize_url` at Amazon while `api_base_url` is on loopback (an emulator); "
        "refused by default, since tests would send the browser to the real Amazon",
        flag("allow_mixed_hosts"),
    ),
)  # fmt: skip


def check_signin_options(given: Mapping[str, Any]) -> None:
    """Run each declared check on the keywords given to ``SignIn`` (``None``
    passes where it is the default)."""
    for option in SIGNIN_OPTIONS:
        value = given.get(option.name)
        if option.check is None or (value is None and option.default is None):
            continue
        with checking(option.name):
            option.check(value)


def authorize_url_of(given: str | None) -> str:
    """``authorize_url``, else ``$LWA_AUTHORIZE_URL``, else :data:`AUTHORIZE_URL`."""
    option = [o for o in SIGNIN_OPTIONS if o.name == "authorize_url"]
    values, _ = from_environment(option, {"authorize_url": given})
    return values["authorize_url"] or AUTHORIZE_URL
