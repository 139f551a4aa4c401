"""The ``lwa-middleware`` command line.

::

    lwa-middleware demo                      # clickable demo on http://127.0.0.1:8000/
    lwa-middleware emulator --mint profile   # a local LWA to point your own app at
    lwa-middleware inspect - --client-id amzn1.application-oa2-client.0123 < token.txt

``demo`` and ``emulator`` run the bundled LWA emulator
(:mod:`lwa_middleware.testing`) and need nothing from Amazon. ``inspect``
checks a token exactly as the middleware would (tokeninfo, ``aud`` check,
profile), with the library's own resolution flow, and prints JSON.

Exit codes (all commands): ``0`` success (for ``inspect``: a valid token),
``1`` the token was rejected, ``2`` a usage or configuration error, ``3`` LWA
could not be reached or answered nonsense.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import json
import math
import os
import signal
import sys
import threading
import time
import webbrowser
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from ._conformance_cli import register as _register_conformance
from ._observe import lwa_answer
from .config import REGIONS, Settings
from .errors import AuthError, ConfigurationError, UpstreamUnavailable
from .flow import Lookup, resolution_flow
from .tokens import extract_token, looks_like_lwa_token

if TYPE_CHECKING:
    from .testing import LWAEmulator

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

#: The emulator's client id when none is given; any string works with the emulator.
DEFAULT_CLIENT_ID = "amzn1.application-oa2-client.emulator"
#: Scopes of the token the demo prints for curl.
DEMO_TOKEN_SCOPES = ("profile", "postal_code")

# More than any LWA token (2048 bytes) plus whitespace, less than a runaway pipe.
_STDIN_LIMIT = 64 * 1024


class _UsageError(Exception):
    """A mistake in the command line; the message never quotes a token."""


def _redact(message: str, argv: Sequence[str]) -> str:
    """``message`` without any command-line word that could be a token.

    argparse quotes offending arguments ("unrecognized arguments: …"), and a
    token typed in the wrong place is the likeliest offender. Long words and
    words with ``|`` (``Atza|…``) are hidden; option names are short.
    """
    for word in sorted(set(argv), key=len, reverse=True):
        if (len(word) >= 40 or "|" in word) and word in message:
            message = message.replace(word, "<redacted>")
    return message


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors never echo a token from the command line."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_redact(message, _Parser.argv)}\n")


def _say(*lines: str, stream: TextIO | None = None) -> None:
    # Flush at once: a script or test reading our stdout through a pipe must
    # see the URL before the server blocks.
    out = stream or sys.stdout
    try:
        for line in lines:
            print(line, file=out)
        out.flush()
    except BrokenPipeError:
        # The reader left (``inspect … | head``): what it did not read is not
        # an error. Point the descriptor at /dev/null so no later write, nor
        # the interpreter's flush at exit, raises again; the exit code stays
        # the command's own.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, out.fileno())
        finally:
            os.close(devnull)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_loopback(host: str) -> None:
    if not _is_loopback(host):
        raise _UsageError(
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


def _lifetime(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(value) or value < 2:
        raise argparse.ArgumentTypeError("the token lifetime must be at least 2 seconds")
    return value


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(s for s in raw.replace(",", " ").split() if s)
    if not scopes:
        raise _UsageError("--mint needs at least one scope, e.g. --mint 'profile postal_code'")
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
        _say(
            f"lwa-middleware demo: the demo needs {' and '.join(missing)}; install it with:",
            "  pip install 'lwa-middleware[demo]'",
            stream=sys.stderr,
        )
        return EXIT_USAGE
    from .demo.app import build_demo_app
    from .demo.server import bind_socket, make_server, url_for
    from .testing import BUILTIN_CUSTOMERS, LWAEmulator

    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        raise _UsageError(
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
                _say(
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
                _say(
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
    _say("Demo stopped.")
    return EXIT_OK


# -- emulator --------------------------------------------------------------------


def _cmd_emulator(args: argparse.Namespace) -> int:
    _check_loopback(args.host)
    mint = _scopes(args.mint) if args.mint is not None else None
    from .testing import LWAEmulator

    try:
        emulator = LWAEmulator(
            client_id=args.client_id,
            host=args.host,
            port=args.port,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    try:
        emulator.start()
    except OSError as exc:
        raise _UsageError(
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
        _say("LWA emulator stopped.")
    return EXIT_OK


def _say_for_scripts(emulator: LWAEmulator, mint: tuple[str, ...] | None) -> None:
    # One value a line, nothing else, so a script can read the URL (and the
    # token) from the first lines of stdout without parsing prose.
    _say(emulator.base_url)
    if mint is not None:
        # A fake token from this local emulator, printed on purpose.
        _say(emulator.issue_token(scopes=mint))


def _say_for_people(emulator: LWAEmulator, mint: tuple[str, ...] | None) -> None:
    base = emulator.base_url
    _say(
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
        _say("", f"Token (scopes: {' '.join(mint)}; valid for 1 hour):", f"  {token}")
    _say("", "Press Ctrl-C to stop.")


# -- inspect ---------------------------------------------------------------------


def _read_token(raw: str, stdin: TextIO) -> str:
    if raw == "-":
        if stdin.isatty():
            _say("Paste the token, then press Ctrl-D:", stream=sys.stderr)
        raw = stdin.read(_STDIN_LIMIT + 1)
        if len(raw) > _STDIN_LIMIT:
            raise _UsageError("stdin holds far more than one token")
    token = raw.strip()
    # A whole header pasted by habit still names the token.
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        token = rest.strip()
    if not token:
        raise _UsageError("no token given (pass it as TOKEN, or '-' and send it on stdin)")
    return token


def _print_json(data: dict[str, Any]) -> None:
    _say(json.dumps(data, indent=2, sort_keys=False))


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
    token = _read_token(args.token, sys.stdin)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise _UsageError("--timeout must be a number of seconds > 0")
    for client_id in args.client_id or ():
        # Checked here so that a token pasted in the wrong place is neither
        # sent anywhere nor quoted back by the configuration's warnings.
        if "|" in client_id or len(client_id) > 200:
            raise _UsageError("--client-id looks like an access token, not a client id")
    try:
        settings = Settings.from_options(
            client_id=args.client_id,
            api_base_url=args.api_base_url,
            region=args.region,
            timeout=args.timeout,
            connect_timeout=min(args.timeout, 2.0),
            max_concurrent_lookups=2,
        )
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None

    try:
        # The middleware's own sanity check: what cannot be an LWA token never
        # reaches LWA.
        extract_token([(b"x-amz-access-token", token.encode("utf-8", "surrogateescape"))])
    except AuthError as error:
        _print_json(_refused(error, settings))
        return EXIT_REJECTED

    from .upstream import SyncDriver

    driver = SyncDriver(settings)
    try:
        shaped = looks_like_lwa_token(token)
        flow = resolution_flow(
            token,
            tokeninfo_url=settings.tokeninfo_url,
            profile_url=settings.profile_url,
            client_ids=settings.client_ids,
            want_profile=True,
            parallel=shaped,
        )
        resolved = driver.run(Lookup(flow, lwa_shaped=shaped))
    except UpstreamUnavailable as error:
        _print_json(_refused(error, settings))
        return EXIT_UNAVAILABLE
    except AuthError as error:
        _print_json(_refused(error, settings))
        return EXIT_REJECTED
    finally:
        driver.close()
    identity = resolved.identity
    _print_json(
        {
            "valid": True,
            "client_id": identity.client_id,
            "expires_in": max(0, int(resolved.expires_mono - time.monotonic())),
            "identity": identity.to_dict(),
            "api_base_url": settings.api_base_url,
            **lwa_answer("profile", 200, resolved.request_id),
        }
    )
    return EXIT_OK


# -- parser ----------------------------------------------------------------------

_DESCRIPTION = """\
Tools around lwa-middleware, which protects ASGI and WSGI apps with Login with
Amazon (LWA) access tokens.

  demo      a clickable demo app behind the middleware, with a local LWA emulator
  emulator  a local LWA emulator alone, to point your own app or tests at
  inspect   check an access token the way the middleware does, print JSON
  conformance  compare the real LWA's answers with the emulator's model

Exit codes: 0 ok, 1 token rejected, 2 usage or configuration error,
3 LWA unavailable."""

_DEMO_HELP = """\
Serve the demo web app, protected by LWAMiddleware, and a local LWA emulator
it trusts. Open the printed URL, click "Login with Amazon", pick a test
customer and the scopes to share, and watch the protected API answer (or
refuse, when a scope is missing) and the middleware's cache at work.

A ready curl line with a fake token minted by the emulator is printed too.

--server-side (--mode server) shows the other flow: the server signs in with
SignIn (code grant, PKCE and the client secret), keeps the tokens in an
encrypted session, and renders the pages; the browser holds only an HttpOnly
session cookie. Tokens live --token-lifetime seconds (120), so reloading the
profile page shows them refreshed on the server, without signing in again.

Nothing talks to Amazon. Stop with Ctrl-C."""

_EMULATOR_HELP = f"""\
Run the LWA emulator alone: tokeninfo, profile, a sign-in page (/ap/oa), the
token endpoint (/auth/o2/token) and a token-minting endpoint for tests, on
loopback. Point an app at it with api_base_url (or LWA_API_BASE_URL) and the
same client id. Sign-in follows LWA's rules: only the --redirect-uri URLs are
redirected to, codes are single-use, PKCE and the client secret are checked.
Stop with Ctrl-C.

example:
  lwa-middleware emulator --port 8765 --mint 'profile postal_code'
  curl -X POST http://127.0.0.1:8765/_emulator/tokens -d '{{"scopes":["profile"]}}'

From a script: `lwa-middleware emulator --port 0 --quiet` prints only the base
URL, on the first line, once it listens.

The default client id is {DEFAULT_CLIENT_ID}."""

_INSPECT_HELP = f"""\
Check an LWA access token the way the middleware does: ask LWA's tokeninfo
endpoint whose it is and for which client (aud), then fetch the profile the
token grants. Prints JSON on stdout:

  {{"valid": true, "client_id": ..., "expires_in": <seconds left>, "identity": {{...}}}}
  {{"valid": false, "error": "invalid_token", "reason": "..."}}

The token is never printed. Pass TOKEN as '-' to read it from stdin, which
keeps it out of your shell history and the process list:

  lwa-middleware inspect - --client-id amzn1.application-oa2-client.0123 < token.txt
  pbpaste | lwa-middleware inspect - --client-id amzn1.application-oa2-client.0123

Regions: {", ".join(f"{k} ({v.removeprefix('https://')})" for k, v in REGIONS.items())}.
--client-id, --region and --api-base-url fall back to LWA_CLIENT_ID, LWA_REGION
and LWA_API_BASE_URL.

exit codes: 0 valid, 1 rejected (invalid, expired, revoked, another client's),
2 usage or configuration error, 3 LWA unavailable (retry later)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lwa-middleware`` (exposed for documentation tools)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="lwa-middleware", description=_DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"lwa-middleware {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo", help="run the clickable demo", description=_DEMO_HELP, formatter_class=formatter
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="loopback address to serve on (default: %(default)s)"
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default: %(default)s)"
    )
    demo.add_argument(
        "--no-browser", action="store_true", help="do not open a web browser on the page"
    )
    demo.add_argument(
        "--mode",
        choices=("browser", "server"),
        default="browser",
        help="browser: the page signs in (PKCE) and sends the token as Bearer; server: the"
        " server signs in (SignIn), pages rendered there, only a session cookie in the"
        " browser (default: %(default)s)",
    )
    demo.add_argument(
        "--server-side",
        dest="mode",
        action="store_const",
        const="server",
        help="the same as --mode server",
    )
    demo.add_argument(
        "--token-lifetime",
        type=_lifetime,
        default=120.0,
        metavar="SECONDS",
        help="--mode server: how long the emulator's access tokens live, to show refreshes"
        " (default: %(default)g)",
    )
    demo.set_defaults(handler=_cmd_demo)

    emulator = commands.add_parser(
        "emulator",
        help="run a local LWA emulator",
        description=_EMULATOR_HELP,
        formatter_class=formatter,
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: %(default)s)"
    )
    emulator.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    emulator.add_argument(
        "--client-id",
        default=DEFAULT_CLIENT_ID,
        metavar="ID",
        help="the client id (aud) of the tokens it issues (default: %(default)s)",
    )
    emulator.add_argument(
        "--client-secret",
        metavar="SECRET",
        help="the client secret the token endpoint checks (default: a random one, printed)",
    )
    emulator.add_argument(
        "--redirect-uri",
        action="append",
        metavar="URL",
        help="an allowed return URL for sign-in, matched exactly; repeat for more (default:"
        " the demo's callback, http://127.0.0.1:8000/callback and http://localhost:8000/callback)",
    )
    emulator.add_argument(
        "--mint",
        metavar="SCOPES",
        help="mint a token at start with these scopes and print it, e.g. 'profile postal_code'",
    )
    emulator.add_argument(
        "--quiet",
        action="store_true",
        help="for scripts: print only the base URL once listening (and the --mint token on the"
        " next line)",
    )
    emulator.set_defaults(handler=_cmd_emulator)

    inspect = commands.add_parser(
        "inspect",
        help="check an access token, print JSON",
        description=_INSPECT_HELP,
        formatter_class=formatter,
    )
    inspect.add_argument(
        "token",
        metavar="TOKEN",
        help="the access token, or - to read it from stdin (keeps it out of shell history)",
    )
    inspect.add_argument(
        "--client-id",
        metavar="ID",
        action="append",
        help="your LWA client id; the token's aud must match (repeat for several)",
    )
    where = inspect.add_mutually_exclusive_group()
    where.add_argument(
        "--region", choices=sorted(REGIONS), help="LWA region (default: na, api.amazon.com)"
    )
    where.add_argument(
        "--api-base-url",
        metavar="URL",
        help="LWA API origin instead of a region, e.g. an emulator's http://127.0.0.1:8765",
    )
    inspect.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="give up on LWA after S seconds (default: %(default)s)",
    )
    inspect.set_defaults(handler=_cmd_inspect)
    _register_conformance(commands, formatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting.

    :param argv: the arguments, without the program name (``sys.argv[1:]``
        when ``None``).
    """
    words = sys.argv[1:] if argv is None else list(argv)
    _Parser.argv = words
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
    except _UsageError as exc:
        message = _redact(str(exc), words)
        _say(f"lwa-middleware {args.command}: error: {message}", stream=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
