"""Wiring mistakes ``SignIn`` refuses at construction, with what to change.

Each used to fail silently: the browser sent to the real Amazon from a test
against the emulator, or ``/login`` answering 401 so nobody could sign in.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .._engine.config import _is_loopback
from .._engine.errors import ConfigurationError
from .._engine.routes import Access, RouteTable

__all__ = ["refuse_guarded_endpoints", "refuse_mixed_hosts"]


def refuse_mixed_hosts(authorize_url: str, api_base_url: str) -> None:
    """``authorize_url`` off loopback while ``api_base_url`` is on it: a test
    against the emulator that would send the browser to the real Amazon."""
    api_host = urlsplit(api_base_url).hostname or ""
    authorize_host = urlsplit(authorize_url).hostname or ""
    if _is_loopback(api_host) and not _is_loopback(authorize_host):
        raise ConfigurationError(
            f"authorize_url {authorize_url!r} is not on loopback while api_base_url "
            f"{api_base_url!r} is (an emulator): the browser would go to the real sign-in "
            f"page. Pass authorize_url={api_base_url + '/ap/oa'!r} (the emulator's authorize "
            "page; or LWA_AUTHORIZE_URL in the environment), or allow_mixed_hosts=True if "
            "you mean it"
        )


def refuse_guarded_endpoints(paths: Iterable[str], routes: RouteTable) -> None:
    """Each sign-in endpoint must be public in the middleware's route table:
    ``/login`` answering 401 would keep everyone out."""
    guarded = [path for path in paths if routes.lookup(path).access is not Access.PUBLIC]
    if guarded:
        raise ConfigurationError(
            f"the sign-in endpoints {', '.join(guarded)} are not public in the middleware's "
            "routes, so nobody could sign in: add them with "
            "routes={**signin.route_policies(), ...} (LWA_ROUTES / settings.LWA['ROUTES'])"
        )
