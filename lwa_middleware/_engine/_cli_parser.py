"""The ``lwa-middleware`` command line's parser: its options, help texts and
exit codes (apart from :mod:`.cli`, the commands themselves, so that each
module stays short). Its errors never echo a token typed on the command line."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from ._conformance_cli import register as register_conformance
from ._version import __version__
from .config import REGIONS

__all__ = [
    "DEFAULT_CLIENT_ID",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Parser",
    "build_parser",
    "redact",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

#: The emulator's client id when none is given; any string works with the emulator.
DEFAULT_CLIENT_ID = "amzn1.application-oa2-client.emulator"

#: A command: parsed arguments in, exit code out.
Handler = Callable[[argparse.Namespace], int]


def redact(message: str, argv: Sequence[str]) -> str:
    """``message`` without any command-line word that could be a token.

    argparse quotes offending arguments ("unrecognized arguments: …"), and a
    token typed in the wrong place is the likeliest offender. Long words and
    words with ``|`` (``Atza|…``) are hidden; option names are short.
    """
    for word in sorted(set(argv), key=len, reverse=True):
        if (len(word) >= 40 or "|" in word) and word in message:
            message = message.replace(word, "<redacted>")
    return message


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors never echo a token from the command line."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message, Parser.argv)}\n")


def _lifetime(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(value) or value < 2:
        raise argparse.ArgumentTypeError("the token lifetime must be at least 2 seconds")
    return value


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


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """The argument parser of ``lwa-middleware``; ``handlers`` maps ``demo``,
    ``emulator`` and ``inspect`` to their commands (``conformance`` brings its own)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="lwa-middleware", description=_DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"lwa-middleware {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

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
    demo.set_defaults(handler=handlers["demo"])

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
    emulator.set_defaults(handler=handlers["emulator"])

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
    inspect.set_defaults(handler=handlers["inspect"])
    register_conformance(commands, formatter)
    return parser
