"""A hostile ``next=`` (non-ASCII, control characters, very long, not UTF-8)
never makes the callback fail after the code exchange.

The sign-in always ends cleanly: a 303 to a path on this site (the asked-for
one, percent-encoded to ASCII as a browser would, or the default when it is
unsafe), with the session cookie, and exactly one new session in the store;
never a 500 that spent the code and stored a session no cookie points at.
Driven through the real flow: ``/login``, the emulator's consent form,
``/callback``.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, quote_from_bytes

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from support.private import safe_next

from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    starlette_app,
)


@pytest.fixture
def client(lwa_emulator: LWAEmulator) -> Iterator[TestClient]:
    signin = make_signin(lwa_emulator)
    app = starlette_app(lwa_emulator, signin)
    # raise_server_exceptions=False: a failure must show as the 500 a browser gets.
    with TestClient(
        app, base_url=ORIGIN, follow_redirects=False, raise_server_exceptions=False
    ) as client:
        client.lwa = lwa_emulator  # type: ignore[attr-defined]
        client.signin = signin  # type: ignore[attr-defined]
        yield client


def _sign_in(client: TestClient, raw_next: str) -> httpx2.Response:
    """The whole flow with ``?next=`` exactly ``raw_next`` (already URL-encoded)."""
    client.cookies.clear()
    login = client.get(f"/login?next={raw_next}")
    assert login.status_code == 302, login.text
    back = authorize(client.lwa, login.headers["location"])  # type: ignore[attr-defined]
    return client.get(path_of(back))


def _ends_cleanly(client: TestClient, raw_next: str) -> str:
    """Sign in with ``raw_next``; check the invariants; the Location."""
    store = client.signin.store  # type: ignore[attr-defined]
    before = len(store)
    answer = _sign_in(client, raw_next)
    assert answer.status_code == 303, answer.text
    raw_location = answer.headers.raw[[k.lower() for k, _ in answer.headers.raw].index(b"location")]
    location = raw_location[1].decode("ascii")  # a Location header is ASCII
    assert location.isprintable()
    assert safe_next(location, "") == location  # a path on this site, nothing else
    cookie = session_cookie(answer)
    assert cookie
    assert len(store) == before + 1  # the login record gone, one session, and its cookie
    me = client.get("/me")
    assert me.status_code == 200
    assert me.json()["user_id"]
    return location


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("/café", "/caf%C3%A9"),
        ("/☃?q=ü#ä", "/%E2%98%83?q=%C3%BC#%C3%A4"),
        ("/\u200b/evil.example", "/%E2%80%8B/evil.example"),  # zero-width space: just a path
        ("/\u202eevil", "/%E2%80%AEevil"),
        ("/" + "x" * 2047, "/" + "x" * 2047),
        ("/" + "x" * 2048, "/"),
        ("/" + "é" * 400, "/"),  # 800 characters; 4801 once encoded
        ("/a\u0085b", "/"),  # C1 control (NEL)
        ("/a\u2028b", "/"),  # Unicode whitespace
        ("/a\u3000b", "/"),
        ("\uff0f\uff0fevil.example", "/"),  # fullwidth solidus: not a path
    ],
)
def test_hostile_next_ends_the_sign_in_cleanly(
    client: TestClient, next_path: str, location: str
) -> None:
    assert _ends_cleanly(client, quote(next_path, safe="")) == location


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        # Not UTF-8 (a UTF-16 surrogate, stray bytes, a cut sequence): the
        # framework decodes it with U+FFFD, which is then encoded like any other.
        ("%2F%ED%A0%80", "/" + "%EF%BF%BD" * 3),
        ("%2F%FF%FEx", "/%EF%BF%BD%EF%BF%BDx"),
        ("%2F%C3", "/%EF%BF%BD"),
        ("%2F%00", "/"),
        ("%2F%0D%0ASet-Cookie:%20x=y", "/"),  # header injection
    ],
)
def test_next_that_is_not_text_ends_the_sign_in_cleanly(
    client: TestClient, raw: str, location: str
) -> None:
    assert _ends_cleanly(client, raw) == location


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.one_of(
        st.text(max_size=60).map(lambda s: quote("/" + s, safe="")),
        st.binary(max_size=60).map(lambda b: quote_from_bytes(b"/" + b, safe="")),
        st.text(st.characters(codec="utf-8"), min_size=2040, max_size=2100).map(
            lambda s: quote("/" + s, safe="")
        ),
    )
)
def test_any_next_ends_the_sign_in_cleanly(client: TestClient, raw: str) -> None:
    _ends_cleanly(client, raw)
