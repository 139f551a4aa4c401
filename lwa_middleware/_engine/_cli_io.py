"""What the lwa-middleware commands share (the main commands in :mod:`.cli`
and ``conformance`` in :mod:`._conformance_cli`): printing, usage errors and
reading a token. Both import it, so neither imports the other.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

# More than any LWA token (2048 bytes) plus whitespace, less than a runaway pipe.
STDIN_LIMIT = 64 * 1024


class UsageError(Exception):
    """A mistake in the command line; the message never quotes a token."""


def say(*lines: str, stream: TextIO | None = None) -> None:
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


def read_token(raw: str, stdin: TextIO) -> str:
    if raw == "-":
        if stdin.isatty():
            say("Paste the token, then press Ctrl-D:", stream=sys.stderr)
        raw = stdin.read(STDIN_LIMIT + 1)
        if len(raw) > STDIN_LIMIT:
            raise UsageError("stdin holds far more than one token")
    token = raw.strip()
    # A whole header pasted by habit still names the token.
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        token = rest.strip()
    if not token:
        raise UsageError("no token given (pass it as TOKEN, or '-' and send it on stdin)")
    return token
