"""The ``lwa-middleware`` command line.

::

    lwa-middleware demo                      # clickable demo on http://127.0.0.1:8000/
    lwa-middleware emulator --mint profile   # a local LWA to point your own app at
    lwa-middleware inspect - --client-id amzn1.application-oa2-client.0123 < token.txt

``demo`` and ``emulator`` run the bundled LWA emulator
(:mod:`lwa_middleware.testing`) and need nothing from Amazon. ``inspect``
checks a token exactly as the middleware would (tokeninfo, ``aud`` check,
profile), through the middleware's own :class:`~.resolver.Resolver`, and prints JSON.

Exit codes (all commands): ``0`` success (for ``inspect``: a valid token),
``1`` the token was rejected, ``2`` a usage or configuration error, ``3`` LWA
could not be reached or answered nonsense.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import signal
import sys
import threading
import time
import webbrowser
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._checks import _is_loopback
from ._cli_io import UsageError, read_token, say
from ._cli_parser import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Parser,
    redact,
)
from ._cli_parser import build_parser as _build_parser
from ._observe import lwa_answer
from .config import Settings
from .errors import AuthError, ConfigurationError, UpstreamUnavailable
from .routes import Access, Policy
from .tokens import extract_token

if TYPE_CHECKING:
    from ..testing import LWAEmulator

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

#: Scopes of the token the demo prints for curl.
DEMO_TOKEN_SCOPES = ("profile", "postal_code")

#: What inspect asks of a token: a required route's lookup, profile included.
_INSPECTED = Policy(Access.REQUIRED)

def _check_loopback(host: str) -> None:
    if not _is_loopback(host):
        raise UsageError(
            f"--host {host!r}: the emulator hands out fake tokens, so it only listens on "
            "loopback (127.0.0.1, ::1 or localhost)"
        )


def _origin(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so ``finally`` blocks stop the emulator.

    SIGINT is set too: a shell starts a background job (``lwa-middleware
    emulator &``) with SIGINT ignored, and Python then installs no handler
    of its own, so ``kill -INT`` (or Ctrl-C after ``fg``) did nothing.

    Signal handlers can only be set from the main thread; elsewhere (tests
    calling :func:`main` from a worker) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(s for s in raw.replace(",", " ").split() if s)
    if not scopes:
        raise UsageError("--mint needs at least one scope, e.g. --mint 'profile postal_code'")
    return scopes


# -- demo ------------------------------------------------------------------------


def _open_browser_when_ready(server: Any, url: str) -> None:
    def wait_then_open() -> None:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.started:
            webbrowser.open(url)

    threading.Thread(target=wait_then_open, name="lwa-demo-browser", daemon=True).start()


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_loopback(args.host)
    # The demo extra brings both; --server-side signs in (lwa_middleware.signin).
    needs = ("uvicorn", "cryptography") if args.mode == "server" else ("uvicorn",)
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        say(
            f"lwa-middleware demo: the demo needs {' and '.join(missing)}; install it with:",
            "  pip install 'lwa-middleware[demo]'",
            stream=sys.stderr,
        )
        return EXIT_USAGE
    from ..testing import BUILTIN_CUSTOMERS, LWAEmulator
    from .demo.app import build_demo_app
    from .demo.server import bind_socket, make_server, url_for

    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {_origin(args.host, args.port)} ({exc.strerror or exc}); "
            "use --port 0 for any free port"
        ) from None
    url = url_for(sock) + "/"
    server_side = args.mode == "server"
    # The page's callback is the one return URL its sign-in may come back to.
    emulator = LWAEmulator(
        host="127.0.0.1",
        port=0,
        redirect_uris=[url + "callback"],
        access_token_lifetime=args.token_lifetime if server_side else 3600,
    )
    try:
        with _sigterm_as_interrupt():
            emulator.start()
            if server_side:
                from .demo.server_side import build_server_side_demo_app

                app: Any = build_server_side_demo_app(emulator, url)
            else:
                app = build_demo_app(emulator)
            server = make_server(app, log_level="info")
            if server_side:
                say(
                    f"lwa-middleware demo (server-side sign-in) running at {url}",
                    f"  LWA emulator:  {emulator.base_url}  (client id {emulator.client_id})",
                    "",
                    "Open the URL and click 'Login with Amazon': the server signs you in and",
                    "keeps the tokens; the browser only gets a session cookie. Access tokens",
                    f"live {args.token_lifetime:g} s here, so reload /profile to watch them"
                    " refresh.",
                    "",
                    "Press Ctrl-C to stop.",
                )
            else:
                # This prints a token on purpose: it is a fake one, minted by the
                # local emulator for this demo, and is worthless anywhere else.
                customer = BUILTIN_CUSTOMERS[0]
                token = emulator.issue_token(scopes=DEMO_TOKEN_SCOPES, customer=customer)
                scopes = " ".join(DEMO_TOKEN_SCOPES)
                say(
                    f"lwa-middleware demo running at {url}",
                    f"  LWA emulator:  {emulator.base_url}  (client id {emulator.client_id})",
                    "",
                    "Open the URL and click 'Login with Amazon', or call the API directly with a",
                    f"fake token for {customer.name} (scopes: {scopes}):",
                    f'  curl -H "Authorization: Bearer {token}" {url}api/me',
                    "",
                    "Press Ctrl-C to stop.",
                )
            if not args.no_browser:
                _open_browser_when_ready(server, url)
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        sock.close()
    say("Demo stopped.")
    return EXIT_OK


# -- emulator --------------------------------------------------------------------


def _cmd_emulator(args: argparse.Namespace) -> int:
    _check_loopback(args.host)
    mint = _scopes(args.mint) if args.mint is not None else None
    from ..testing import LWAEmulator

    try:
        emulator = LWAEmulator(
            client_id=args.client_id,
            host=args.host,
            port=args.port,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        emulator.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {_origin(args.host, args.port)} ({exc.strerror or exc}); "
            "use --port 0 for any free port"
        ) from None
    stop = threading.Event()
    try:
        with _sigterm_as_interrupt():
            if args.quiet:
                _say_for_scripts(emulator, mint)
            else:
                _say_for_people(emulator, mint)
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    if not args.quiet:
        say("LWA emulator stopped.")
    return EXIT_OK


def _say_for_scripts(emulator: LWAEmulator, mint: tuple[str, ...] | None) -> None:
    # One value a line, nothing else, so a script can read the URL (and the
    # token) from the first lines of stdout without parsing prose.
    say(emulator.base_url)
    if mint is not None:
        # A fake token from this local emulator, printed on purpose.
        say(emulator.issue_token(scopes=mint))


def _say_for_people(emulator: LWAEmulator, mint: tuple[str, ...] | None) -> None:
    base = emulator.base_url
    say(
        f"LWA emulator running at {base}",
        f"  client id     {emulator.client_id}",
        f"  tokeninfo     {emulator.tokeninfo_url}",
        f"  profile       {emulator.profile_url}",
        f"  client secret {emulator.client_secret}",
        f"  sign-in page  {emulator.authorize_url}  (response_type=code, PKCE S256 or plain)",
        f"  token         {emulator.token_url}",
        "  return URLs   " + ("\n                ".join(emulator.redirect_uris) or "(none)"),
        "",
        "Mint a token:",
        f'  curl -X POST {base}/_emulator/tokens -d \'{{"scopes":["profile"]}}\'',
        "",
        "Point your app at it:",
        f"  export LWA_API_BASE_URL={base} LWA_CLIENT_ID={emulator.client_id}",
    )
    if mint is not None:
        # A fake token from this local emulator, printed on purpose.
        token = emulator.issue_token(scopes=mint)
        say("", f"Token (scopes: {' '.join(mint)}; valid for 1 hour):", f"  {token}")
    say("", "Press Ctrl-C to stop.")


# -- inspect ---------------------------------------------------------------------


def _print_json(data: dict[str, Any]) -> None:
    say(json.dumps(data, indent=2, sort_keys=False))


def _refused(error: AuthError, settings: Settings) -> dict[str, Any]:
    data: dict[str, Any] = {
        "valid": False,
        "error": error.error,
        "reason": error.description,
        "api_base_url": settings.api_base_url,
    }
    if isinstance(error, UpstreamUnavailable) and error.retry_after is not None:
        data["retry_after"] = error.retry_after
    data.update(lwa_answer(error.lwa_endpoint, error.lwa_status, error.lwa_request_id))
    return data


def _cmd_inspect(args: argparse.Namespace) -> int:
    token = read_token(args.token, sys.stdin)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a number of seconds > 0")
    for client_id in args.client_id or ():
        # Checked here so that a token pasted in the wrong place is neither
        # sent anywhere nor quoted back by the configuration's warnings.
        if "|" in client_id or len(client_id) > 200:
            raise UsageError("--client-id looks like an access token, not a client id")
    request_ids: list[str | None] = []

    def on_event(event: str, data: Mapping[str, Any]) -> None:
        if event == "resolved":
            request_ids.append(data.get("request_id"))

    try:
        settings = Settings.from_options(
            client_id=args.client_id,
            api_base_url=args.api_base_url,
            region=args.region,
            timeout=args.timeout,
            connect_timeout=min(args.timeout, 2.0),
            max_concurrent_lookups=2,
            on_event=on_event,
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None

    try:
        # The middleware's own sanity check: what cannot be an LWA token never
        # reaches LWA.
        extract_token([(b"x-amz-access-token", token.encode("utf-8", "surrogateescape"))])
    except AuthError as error:
        _print_json(_refused(error, settings))
        return EXIT_REJECTED

    # The middleware's own entry point (tokeninfo, aud check, profile), so
    # inspect cannot drift from it; only the profile's request id comes from
    # its "resolved" event. LWA itself answers: no shared cache is read or
    # written ($LWA_REDIS_URL is the app's, not this command's).
    from .resolver import Resolver

    resolver = Resolver(dataclasses.replace(settings, redis_url=None, redis_client=None))
    try:
        identity = resolver.resolve_sync(token, _INSPECTED).identity
    except UpstreamUnavailable as error:
        _print_json(_refused(error, settings))
        return EXIT_UNAVAILABLE
    except AuthError as error:
        _print_json(_refused(error, settings))
        return EXIT_REJECTED
    finally:
        resolver.close()
    _print_json(
        {
            "valid": True,
            "client_id": identity.client_id,
            "expires_in": max(0, int(identity.expires_at - time.time())),
            "identity": identity.to_dict(),
            "api_base_url": settings.api_base_url,
            **lwa_answer("profile", 200, request_ids[-1] if request_ids else None),
        }
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lwa-middleware`` (exposed for documentation tools)."""
    return _build_parser({"demo": _cmd_demo, "emulator": _cmd_emulator, "inspect": _cmd_inspect})


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting.

    :param argv: the arguments, without the program name (``sys.argv[1:]``
        when ``None``).
    """
    words = sys.argv[1:] if argv is None else list(argv)
    Parser.argv = words
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        message = redact(str(exc), words)
        say(f"lwa-middleware {args.command}: error: {message}", stream=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
