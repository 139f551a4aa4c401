"""One leak checker: no token (or a fragment of one) anywhere it could escape
to (logs, exceptions, reprs, frame locals, what reached the app), and no
memory kept by what should be forgotten.

:class:`Secrets` collects the tokens a test sent; every ``assert_*`` looks for
each token whole, its last 40 characters (the part a log line that cuts
tokens short would keep) and its percent-encoded form.
"""

from __future__ import annotations

import gc
import logging
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from support.private import cache_entries, cache_rejections

__all__ = ["Secrets", "frames_holding", "grown_by"]


class Secrets:
    """Every token a test sent, and the fragments that must never show up."""

    def __init__(self, *tokens: str) -> None:
        self.tokens: list[str] = list(tokens)

    def add(self, token: str) -> str:
        self.tokens.append(token)
        return token

    def fragments(self) -> list[str]:
        out = []
        for token in self.tokens:
            out += [token, token[-40:], quote(token, safe="")]
        return out

    def assert_absent(self, text: str, where: str) -> None:
        for fragment in self.fragments():
            assert fragment not in text, f"a token leaked into {where}"

    def assert_error_clean(self, error: BaseException) -> None:
        """Message, repr, args, traceback, cause chain and rendered response."""
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            self.assert_absent(str(error), "an exception message")
            self.assert_absent(repr(error), "an exception repr")
            self.assert_absent(repr(error.args), "exception args")
            self.assert_absent("".join(traceback.format_exception(error)), "a traceback")
            response = getattr(error, "response", None)
            if callable(response):
                self.assert_absent(repr(response("lwa")), "an error response")
            error = error.__cause__ or error.__context__  # type: ignore[assignment]

    def assert_logs_clean(
        self, records: Sequence[logging.LogRecord], *, quiet: bool = False, text: str = ""
    ) -> None:
        """No token in any message, argument, exception or formatted line.

        ``quiet``: also no record at ERROR or above and no traceback at all.
        ``text``: the captured log text (``caplog.text``), checked as well.
        """
        handler = logging.Handler()
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        for record in records:
            if quiet:
                assert record.levelno < logging.ERROR, record.getMessage()
                assert record.exc_info is None, record.getMessage()
            where = f"log record of {record.name}"
            self.assert_absent(handler.format(record), where)
            self.assert_absent(repr(record.msg) + repr(record.args), where)
            if record.exc_info and record.exc_info[1] is not None:
                self.assert_error_clean(record.exc_info[1])
            self.assert_absent(record.exc_text or "", where)
        self.assert_absent(text, "the captured log text")

    def assert_internals_clean(self, mw: Any) -> None:
        """The middleware's reprs, and its cache's keys, entries and rejections."""
        resolver = mw.resolver
        for name, obj in (
            ("middleware", mw),
            ("resolver", resolver),
            ("settings", mw.settings),
            ("stats", mw.stats),
        ):
            self.assert_absent(repr(obj), f"the {name}'s repr")
        cache = resolver.cache
        entries = cache_entries(cache)
        self.assert_absent(repr(entries), "the cache's repr")
        assert len(entries) > 0, "the test should have cached something"
        for key, entry in list(entries.items()):
            self.assert_absent(repr(key), "a cache key")
            self.assert_absent(repr(entry), "a cache entry")
            self.assert_absent(repr(entry.identity), "an identity")
            for token in self.tokens:
                assert token.encode() not in key
        rejections = cache_rejections(cache)
        if rejections is not None:
            assert len(rejections) > 0, "the test should have remembered a rejection"
            self.assert_absent(repr(rejections), "the negative cache")
            for key, error in list(rejections.items()):
                self.assert_absent(repr(key), "a negative cache key")
                self.assert_error_clean(error)


def frames_holding(tb: Any, token: str, package: str = "lwa_middleware") -> list[str]:
    """``function:local`` names of ``package`` frames in ``tb`` whose locals
    mention ``token``: what error reporters (Sentry, ``TracebackException(
    capture_locals=True)``) would record."""
    needles = (token, token.encode(), quote(token, safe=""), quote(token, safe="").encode())
    found = []
    for frame, _ in traceback.walk_tb(tb):
        if package not in frame.f_code.co_filename:
            continue
        for name, value in frame.f_locals.items():
            text = repr(value)
            if any(repr(needle)[1:-1] in text or str(needle) in text for needle in needles):
                found.append(f"{frame.f_code.co_name}:{name}")
    return found


def grown_by(run: Callable[[], object]) -> int:
    """Bytes still allocated (traced by ``tracemalloc``) after ``run()`` and a GC."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def traceback_depth(error: BaseException) -> int:
    depth, tb = 0, error.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


def assert_no_token_in(text: str, tokens: Iterable[str], where: str) -> None:
    Secrets(*tokens).assert_absent(text, where)
