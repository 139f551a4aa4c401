"""Layout at a phone's width (390 px, an iPhone 12-15) in headless Chromium:
the server-side demo's header (issue 22, smaller items) and the sign-in
pages (item 4). Measured in the page: nothing wider than the viewport, and
nothing in the header wrapping onto a second line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.browser import launch_chromium
from support.private import bind_socket, build_server_side_demo_app, serve_in_thread, url_for

from lwa_middleware.testing import BUILTIN_CUSTOMERS, LWAEmulator

pytestmark = pytest.mark.browser

WIDTH = 390

#: Every header child's box, and the page's widths.
_MEASURE = """() => {
  const bar = document.querySelector('.bar');
  const boxes = [...bar.children].filter(e => e.offsetParent !== null).map(e => {
    const r = e.getBoundingClientRect();
    const line = parseFloat(getComputedStyle(e).lineHeight) || 24;
    return {name: e.className || e.tagName, top: r.top, bottom: r.bottom, right: r.right,
            height: r.height, line: line};
  });
  const top = document.querySelector('.top').getBoundingClientRect();
  const first = document.querySelector('main > *').getBoundingClientRect();
  return {boxes, header: top.bottom, first: first.top,
          scroll: document.documentElement.scrollWidth};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture
def demo(browser: Any) -> Iterator[tuple[Any, str, LWAEmulator]]:
    with LWAEmulator() as lwa:
        sock = bind_socket("127.0.0.1", 0)
        url = url_for(sock)
        with serve_in_thread(build_server_side_demo_app(lwa, url), sock=sock):
            context = browser.new_context(viewport={"width": WIDTH, "height": 844})
            page = context.new_page()
            page.set_default_timeout(15_000)
            try:
                yield page, url, lwa
            finally:
                context.close()


def _assert_header_fits(measured: dict[str, Any]) -> None:
    assert measured["scroll"] <= WIDTH, measured
    for box in measured["boxes"]:
        assert box["right"] <= WIDTH, box
        assert box["bottom"] <= measured["header"] + 0.5, box  # inside the navy bar
        assert box["height"] < 1.8 * box["line"] + 12, box  # one line (plus padding)


@pytest.mark.parametrize("customer", range(len(BUILTIN_CUSTOMERS)))
def test_server_side_demo_header_fits_390px(
    demo: tuple[Any, str, LWAEmulator], customer: int
) -> None:
    page, url, lwa = demo
    page.goto(url + "/")
    _assert_header_fits(page.evaluate(_MEASURE))
    page.click("#login")
    page.wait_for_url(lwa.authorize_url + "?**")
    page.check(f'input[name="customer"][value="{customer}"]')
    page.click("#lwa-signin")
    page.wait_for_url(url + "/profile")
    measured = page.evaluate(_MEASURE)
    _assert_header_fits(measured)  # the name pill and Log out: was three lines, spilling
    assert measured["first"] >= measured["header"] + 8  # the card does not touch the bar


@pytest.mark.parametrize(
    "path", ["/callback?state=s&code=c", "/callback?state=s&error=access_denied"]
)
def test_sign_in_pages_fit_390px(demo: tuple[Any, str, LWAEmulator], path: str) -> None:
    page, url, _ = demo
    page.goto(url + path)  # no pending sign-in: the styled "expired" page
    measured = page.evaluate(
        """() => {
          const card = document.querySelector('.card').getBoundingClientRect();
          const buttons = [...document.querySelectorAll('a.button')].map(
            a => a.getBoundingClientRect());
          return {scroll: document.documentElement.scrollWidth, left: card.left,
                  right: card.right, buttons: buttons.map(b => [b.top, b.right, b.height])};
        }"""
    )
    assert measured["scroll"] <= WIDTH, measured
    assert 0 < measured["left"] < measured["right"] <= WIDTH, measured
    assert len(measured["buttons"]) == 2
    for _, right, height in measured["buttons"]:
        assert right <= WIDTH
        assert height < 50  # one line each
