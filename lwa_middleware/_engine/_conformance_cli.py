"""``lwa-middleware conformance``: ask the real LWA what the emulator answers.

The questions and the expected answers are :data:`._conformance.MODEL`;
this module only reads the command line, sends each probe with the
library's own HTTP stack (httpx2, its deadlines, its TLS verification and
its response size cap) and prints the table.

Secrets stay out of everything: the token travels in a header (never a URL,
not even to Amazon), the client secret in the POST body, and the printed
lines are scrubbed of both on top of showing only types and the model's own
constants.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from ._conformance import (
    BOGUS_CODE,
    INVALID_TOKEN,
    MODEL,
    SOURCES,
    Answer,
    Probe,
    Row,
    check,
    render,
    summary,
    verdict,
)
from .config import REGIONS, Settings
from .errors import AuthError, ConfigurationError
from .tokens import extract_token

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx2

__all__ = ["register"]

TOKEN_ENV: Final = "LWA_ACCESS_TOKEN"
SECRET_ENV: Final = "LWA_CLIENT_SECRET"
#: Sent with the bogus code: LWA wants a redirect_uri with a code, and a
#: made-up code is refused whatever the redirect_uri is.
DEFAULT_REDIRECT_URI: Final = "https://localhost/lwa-middleware-conformance"
# Settings needs a client id; with none given, aud is simply not compared.
_NO_CLIENT_ID: Final = "amzn1.application-oa2-client.conformance-none-given"

_HELP = f"""\
Ask LWA (by default the real one, https://api.amazon.com) the questions the
bundled emulator answers, and compare the answers with the emulator's model
of Amazon: status, JSON fields and their types, and the headers
x-amzn-RequestId, Content-Type and Content-Language. Prints a table of
matches and differences.

Probes: tokeninfo and profile with your token; both with a made-up token;
profile without a token; and, with --client-id and --client-secret, the
token endpoint with a made-up code and without a code. Your token goes in a
header, never in a URL.

Each expectation is either 'definite' (stated by Amazon's pages) or
'assumed' (the pages are vague; the emulator follows captured answers). Any
difference fails the command: the emulator's model and the real LWA
disagree there. With --definite-only, a difference on an assumption is
still reported but does not fail it.

The token comes from --token, or --token - (stdin), or ${TOKEN_ENV}; the
client secret from --client-secret or ${SECRET_ENV}. Use stdin or the
environment to keep them out of shell history and the process list:

  lwa-middleware conformance --token - --client-id amzn1.application-oa2-client.0123 < token.txt

Nothing printed shows a token, code, secret, user id or e-mail address.
Regions: {", ".join(f"{k} ({v.removeprefix('https://')})" for k, v in REGIONS.items())}.

exit codes: 0 every check matches (assumptions aside with --definite-only),
1 a difference, 2 usage or configuration error, 3 LWA could not be reached."""


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the ``conformance`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "conformance",
        help="compare the real LWA's answers with the emulator's model",
        description=_HELP,
        formatter_class=formatter,
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"a live access token, or - to read it from stdin (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help="your client id: tokeninfo's aud must match (default: $LWA_CLIENT_ID)",
    )
    parser.add_argument(
        "--client-secret",
        metavar="SECRET",
        help=f"your client secret, to probe the token endpoint (default: ${SECRET_ENV})",
    )
    parser.add_argument(
        "--redirect-uri",
        metavar="URL",
        default=DEFAULT_REDIRECT_URI,
        help="redirect_uri sent with the made-up code (default: %(default)s)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--region", choices=sorted(REGIONS), help="LWA region (default: na, api.amazon.com)"
    )
    where.add_argument(
        "--api-base-url", metavar="URL", help="LWA origin instead of a region (e.g. an emulator)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="give up on each answer after S seconds (default: %(default)s)",
    )
    severity = parser.add_mutually_exclusive_group()
    severity.add_argument(
        "--definite-only",
        action="store_true",
        help="only differences on definite facts fail; assumed ones are just reported",
    )
    severity.add_argument(
        "--strict", action="store_true", help="every difference fails (the default)"
    )
    parser.set_defaults(handler=run_command)


# -- the command line ------------------------------------------------------------


def _given_token(args: argparse.Namespace) -> str:
    from ._cli_io import UsageError, read_token

    raw = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    if not raw.strip():
        raise UsageError(
            f"no token given: pass --token TOKEN, --token - (stdin) or set {TOKEN_ENV}"
        )
    token = read_token(raw, sys.stdin)
    try:
        # The middleware's own sanity check: what cannot be a token (spaces,
        # control characters, over 2048 bytes) is not sent anywhere.
        extract_token([(b"x-amz-access-token", token.encode("utf-8", "surrogateescape"))])
    except AuthError:
        raise UsageError("the token given cannot be an LWA access token; not sent") from None
    return token


def _client(args: argparse.Namespace) -> tuple[list[str], str | None]:
    from ._cli_io import UsageError

    raw = args.client_id if args.client_id is not None else os.environ.get("LWA_CLIENT_ID", "")
    client_ids = [part.strip() for part in raw.split(",") if part.strip()]
    for client_id in client_ids:
        # As inspect: a token pasted in the wrong place is neither sent nor echoed.
        if "|" in client_id or len(client_id) > 200:
            raise UsageError("--client-id looks like an access token, not a client id")
    secret = args.client_secret if args.client_secret is not None else os.environ.get(SECRET_ENV)
    secret = secret or None
    if secret is not None and len(client_ids) != 1:
        raise UsageError(
            "--client-secret needs exactly one --client-id (or LWA_CLIENT_ID) to probe the "
            "token endpoint with"
        )
    return client_ids, secret


def _settings(args: argparse.Namespace, client_ids: Sequence[str]) -> Settings:
    from ._cli_io import UsageError

    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a number of seconds > 0")
    try:
        # The middleware's own validation: regions, and plain http only on loopback.
        return Settings.from_options(
            client_id=list(client_ids) or _NO_CLIENT_ID,
            api_base_url=args.api_base_url,
            region=args.region,
            timeout=args.timeout,
            connect_timeout=min(args.timeout, 2.0),
            max_concurrent_lookups=1,
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def run_command(args: argparse.Namespace) -> int:
    """The ``conformance`` handler: probe, compare, print, exit code."""
    from ._cli_io import say

    token = _given_token(args)
    client_ids, secret = _client(args)
    settings = _settings(args, client_ids)
    probes = [p for p in MODEL if secret is not None or not p.needs_client]
    client_id = client_ids[0] if client_ids else ""
    sender = _Sender(settings, token, client_id, secret, args.redirect_uri)
    try:
        rows = [row for probe in probes for row in check(probe, sender.ask(probe), client_ids)]
    finally:
        sender.close()
    lines = [f"LWA conformance of {settings.api_base_url}", "", *render(rows), "", summary(rows)]
    lines += _notes(rows, client_ids, secret)
    hidden = [s for s in (token, secret) if s]
    say(*(_scrub(line, hidden) for line in lines))
    return verdict(rows, strict=not args.definite_only)


def _notes(rows: Sequence[Row], client_ids: Sequence[str], secret: str | None) -> list[str]:
    notes = [""]
    statuses = {r.probe: r.actual for r in rows if r.check == "status"}
    if "400" in (statuses.get("tokeninfo"), statuses.get("profile")):
        notes.append(
            "LWA refused the token given (access tokens live 60 minutes): the rows of the"
            " probes that use it say nothing about LWA's format; try again with a fresh one."
        )
    elif statuses.get("profile") == "401":
        # S1: 401 insufficient_scope, a token granted none of the profile scopes.
        notes.append(
            "The profile probe needs a token granted profile, profile:user_id or postal_code."
        )
    if secret is None:
        notes.append("Token endpoint not probed: give --client-id and --client-secret for it.")
    if not client_ids:
        notes.append("aud not compared: give --client-id for it.")
    used = " ".join({r.source for r in rows})
    notes.append(
        "definite: stated by Amazon's pages; assumed: the pages are vague (--definite-only)."
    )
    notes += [f"  {key}: {SOURCES[key]}" for key in SOURCES if key in used]
    return notes


def _scrub(line: str, hidden: Sequence[str]) -> str:
    # Defence in depth: nothing above prints these, and this makes sure.
    for secret in hidden:
        line = line.replace(secret, "<redacted>")
    return line


# -- asking LWA --------------------------------------------------------------------


class _Sender:
    """Sends probes over one httpx2 client configured as the middleware's."""

    def __init__(
        self,
        settings: Settings,
        token: str,
        client_id: str,
        secret: str | None,
        redirect_uri: str,
    ) -> None:
        self._settings = settings
        self._tokens = {"given": token, "invalid": INVALID_TOKEN}
        self._client_id = client_id
        self._secret = secret
        self._redirect_uri = redirect_uri
        # Imported here, as inspect does: the other commands need no HTTP client.
        import httpx2

        from .upstream import _client_options, ssl_context

        options = _client_options(settings, ssl_context(settings))
        self._http: httpx2.Client = httpx2.Client(**options)  # type: ignore[arg-type]

    def close(self) -> None:
        self._http.close()

    def _request(self, probe: Probe) -> tuple[dict[str, str], dict[str, str] | None]:
        headers = {"accept": "application/json"}
        token = self._tokens.get(probe.token)
        if token is not None and probe.carrier == "x-amz-access-token":
            headers["x-amz-access-token"] = token
        elif token is not None and probe.carrier == "bearer":
            headers["authorization"] = "Bearer " + token
        if probe.form is None or self._secret is None:
            return headers, None
        form = {
            "grant_type": "authorization_code",
            "redirect_uri": self._redirect_uri,
            "client_id": self._client_id,
            "client_secret": self._secret,
        }
        if probe.form == "bogus-code":
            form["code"] = BOGUS_CODE
        return headers, form

    def ask(self, probe: Probe) -> Answer:
        import httpx2

        from ._http import Body, TooLarge, failure

        settings = self._settings
        headers, form = self._request(probe)
        deadline = time.monotonic() + settings.timeout
        url = settings.api_base_url + probe.path
        try:
            with self._http.stream(
                probe.method, url, headers=headers, data=form, timeout=settings.timeout
            ) as response:
                body = Body(response, settings.max_response_bytes, deadline)
                for chunk in response.iter_bytes():
                    body.feed(chunk)
                status, answered = response.status_code, dict(response.headers.items())
        except TooLarge:
            return Answer(None, failure="response too large")
        except (httpx2.HTTPError, OSError, TimeoutError) as exc:
            return Answer(None, failure=failure(exc).reason)
        try:
            decoded: object = json.loads(b"".join(body.chunks))
        except ValueError:
            decoded = None
        return Answer(status, answered, decoded)
