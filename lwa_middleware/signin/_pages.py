"""The pages the sign-in steps answer with (cancelled, failed, expired, refused,
unavailable): styled by default, replaceable by the app.

``SignIn(pages=...)`` takes either

* a mapping of kind to a :class:`string.Template` text (``$title``,
  ``$message``, ``$login_url``, ``$home_url``, ``$status``, ``$kind``, every
  value already HTML-escaped); kinds it leaves out keep the default page; or
* a callable ``pages(page: Page) -> str | bytes`` (render your Jinja or
  Django template there; translate by ``page.kind``).

A page that fails to render (the callable raises, or returns something other
than text) is logged and replaced by the default page: a broken template
must not turn a sign-in answer into a 500.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Template
from typing import Final, Literal, get_args

from .._engine._observe import fields
from .._engine.errors import ConfigurationError
from ._parts import Reply

__all__ = ["PAGE_KINDS", "Page", "PageKind", "Pages", "check_pages", "render_page"]

logger = logging.getLogger("lwa_middleware.signin")

PageKind = Literal["cancelled", "failed", "expired", "refused", "unavailable"]
PAGE_KINDS: Final[frozenset[str]] = frozenset(get_args(PageKind))


@dataclass(frozen=True, slots=True)
class Page:
    """What a sign-in page says; plain text (escape it in your template)."""

    kind: PageKind
    status: int
    title: str
    message: str
    #: The sign-in page (``login_path``), for a "Sign in again" link.
    login_url: str
    #: Where a signed-in user lands (``after_login``), for a "Home" link.
    home_url: str


Pages = Mapping[str, str] | Callable[[Page], str | bytes]

# The demo's look (lwa_middleware/_engine/demo/static/style.css), inlined: the page
# must not depend on the app serving a stylesheet.
_DEFAULT: Final = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#0f1111;background:#f1f3f3}
.top{background:#232f3e;height:3.25rem}
main{max-width:34rem;margin:2.5rem auto;padding:0 1.25rem}
.card{background:#fff;border:1px solid #d5d9d9;border-radius:10px;
box-shadow:0 1px 3px rgba(15,17,17,.06);padding:1.75rem 1.4rem;text-align:center}
.card.$kind{border-top:4px solid $edge}
h1{font-size:1.35rem;font-weight:600;margin:0 0 .5rem;overflow-wrap:anywhere}
p{margin:0 0 1.25rem;color:#565959;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.6rem;justify-content:center}
a.button{display:inline-block;padding:.5rem 1.2rem;border-radius:999px;text-decoration:none;
color:#0f1111;font-weight:500;border:1px solid #d5d9d9;background:#fff}
a.button.primary{background:#ffd814;border-color:#fcd200}
</style>
</head>
<body>
<header class="top"></header>
<main>
<section class="card $kind" id="lwa-$kind">
<h1>$title</h1>
<p>$message</p>
<div class="actions"><a class="button primary" href="$login_url">Sign in again</a>
<a class="button" href="$home_url">Home</a></div>
</section>
</main>
</body>
</html>
""")

_EDGES: Final = {"unavailable": "#007185", "cancelled": "#565959"}


def _fields(page: Page) -> dict[str, str]:
    return {
        "kind": page.kind,
        "status": str(page.status),
        "title": html.escape(page.title),
        "message": html.escape(page.message),
        "login_url": html.escape(page.login_url),
        "home_url": html.escape(page.home_url),
        "edge": _EDGES.get(page.kind, "#c7511f"),
    }


def check_pages(pages: Pages | None) -> Pages | None:
    """``pages`` if usable; :class:`ConfigurationError` at construction if not."""
    if pages is None or (callable(pages) and not isinstance(pages, Mapping)):
        return pages
    if not isinstance(pages, Mapping):
        raise ConfigurationError(
            "pages must map page kinds to template texts, or be a callable pages(page) -> str"
        )
    unknown = set(pages) - PAGE_KINDS
    if unknown:
        raise ConfigurationError(
            f"pages: unknown kind(s) {sorted(map(str, unknown))!r}; the kinds are "
            f"{', '.join(sorted(PAGE_KINDS))}"
        )
    sample = _fields(Page("failed", 400, "t", "m", "/login", "/"))
    for kind, text in pages.items():
        try:
            Template(text).substitute(sample)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"pages[{kind!r}] is not a usable template ({exc!r}): use $title, $message, "
                "$login_url, $home_url, $status and $kind"
            ) from None
    return pages


def _body(pages: Pages | None, page: Page) -> bytes:
    if pages is None:
        return _DEFAULT.substitute(_fields(page)).encode()
    if isinstance(pages, Mapping):
        text = pages.get(page.kind)
        template = _DEFAULT if text is None else Template(text)
        return template.substitute(_fields(page)).encode()
    try:
        made = pages(page)
    except Exception:
        logger.exception(
            "sign-in: the pages callable failed on a %r page; default page sent",
            page.kind,
            extra=fields("signin_page_failed"),
        )
        return _DEFAULT.substitute(_fields(page)).encode()
    if isinstance(made, str):
        return made.encode()
    if isinstance(made, bytes):
        return made
    logger.error(
        "sign-in: the pages callable returned %s, not str or bytes; default page sent",
        type(made).__name__,
        extra=fields("signin_page_failed"),
    )
    return _DEFAULT.substitute(_fields(page)).encode()


def render_page(pages: Pages | None, page: Page, *extra: tuple[str, str]) -> Reply:
    """The :class:`Reply` of ``page``: HTML, never cached, no referrer."""
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
        *extra,
    )
    return Reply(page.status, headers, _body(pages, page))
