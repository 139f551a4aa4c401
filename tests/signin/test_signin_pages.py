"""Sign-in pages users can ship (issue 22, item 4): styled defaults, the app's
own templates or callable, Back after signing in, and ``login_redirect``.

Against the emulator; the cancelled page comes from its authorize page's
"deny" (LWA answers ``error=access_denied`` then: "Authorization Code Grant",
Authorization Response errors, LWA-FACTS.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from starlette.testclient import TestClient

from lwa_middleware import ConfigurationError, LWAWSGIMiddleware, get_identity
from lwa_middleware.integrations.flask import LWA
from lwa_middleware.signin import Page, SignIn
from lwa_middleware.signin.flask import signin_blueprint
from lwa_middleware.testing import LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    authorize,
    make_signin,
    path_of,
    sign_in,
    starlette_app,
)

KINDS = ("cancelled", "failed", "expired", "refused")


def _client(lwa: LWAEmulator, signin: SignIn, **options: Any) -> TestClient:
    return TestClient(
        starlette_app(lwa, signin, **options), base_url=ORIGIN, follow_redirects=False
    )


def _answer(client: TestClient, lwa: LWAEmulator, kind: str, login_path: str = "/login") -> Any:
    """The callback's page of ``kind``, reached as a browser would."""
    if kind == "expired":  # no pending sign-in (its cookie is gone)
        return client.get("/callback?state=s&code=c")
    login = client.get(login_path)
    state = dict(parse_qsl(urlsplit(login.headers["location"]).query))["state"]
    if kind == "cancelled":
        return client.get(path_of(authorize(lwa, login.headers["location"], deny=True)))
    if kind == "refused":  # an answer this browser did not ask for
        return client.get("/callback?state=another&code=c")
    return client.get(f"/callback?state={state}")  # failed: no code in LWA's answer


@pytest.mark.parametrize("kind", KINDS)
def test_default_pages_are_styled(lwa_emulator: LWAEmulator, kind: str) -> None:
    with _client(lwa_emulator, make_signin(lwa_emulator)) as client:
        answer = _answer(client, lwa_emulator, kind)
    assert answer.status_code in (400, 403)
    page = answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"
    assert '<meta name="viewport"' in page  # phones: no 980 px desktop layout
    assert "<style>" in page
    assert "#232f3e" in page
    assert f'id="lwa-{kind}"' in page
    assert 'href="/login"' in page
    assert 'href="/"' in page


def test_the_unavailable_page_is_styled_too(lwa_emulator: LWAEmulator) -> None:
    # The docs list it with the others: a session store that does not answer
    # (a Redis nothing listens on) gives it at /login.
    from support.redis_servers import free_port

    signin = make_signin(lwa_emulator, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with _client(lwa_emulator, signin) as client:
        answer = client.get("/login")
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "<style>" in answer.text
    assert 'id="lwa-unavailable"' in answer.text
    assert 'href="/login"' in answer.text


def test_pages_as_templates_replace_some_kinds(lwa_emulator: LWAEmulator) -> None:
    pages = {"expired": "<p lang=fr>$title: $message <a href='$login_url'>encore</a></p>"}
    signin = make_signin(lwa_emulator, pages=pages, login_path="/entrer")
    with _client(lwa_emulator, signin) as client:
        expired = client.get("/callback?state=s&code=c")
        refused = _answer(client, lwa_emulator, "refused", "/entrer")
    assert expired.status_code == 400
    assert expired.text == (
        "<p lang=fr>Sign-in expired: This sign-in has expired. <a href='/entrer'>encore</a></p>"
    )
    assert 'id="lwa-refused"' in refused.text  # not given: the default page


def test_pages_as_a_callable_get_every_field(lwa_emulator: LWAEmulator) -> None:
    seen: list[Page] = []

    def pages(page: Page) -> str:
        seen.append(page)
        return {"cancelled": "<h1>Connexion annulée</h1>"}.get(page.kind, "<h1>?</h1>")

    signin = make_signin(lwa_emulator, pages=pages, after_login="/home")
    with _client(lwa_emulator, signin) as client:
        answer = _answer(client, lwa_emulator, "cancelled")
    assert answer.status_code == 403
    assert answer.text == "<h1>Connexion annulée</h1>"
    assert seen == [
        Page("cancelled", 403, "Sign-in cancelled", "You cancelled the sign-in.", "/login", "/home")
    ]


def test_a_failing_pages_callable_falls_back_to_the_default_page(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def pages(page: Page) -> str:
        raise RuntimeError("template not found")

    with _client(lwa_emulator, make_signin(lwa_emulator, pages=pages)) as client:
        answer = client.get("/callback?state=s&code=c")
    assert answer.status_code == 400  # not a 500
    assert 'id="lwa-expired"' in answer.text
    assert "pages callable failed" in caplog.text


@pytest.mark.parametrize(
    ("pages", "match"),
    [
        ({"expird": "$title"}, "unknown kind"),
        ({"expired": "$nope"}, "usable template"),
        ({"expired": "$"}, "usable template"),
        ("<h1>$title</h1>", "pages must map"),
    ],
)
def test_bad_pages_are_refused_at_construction(
    lwa_emulator: LWAEmulator, pages: Any, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make_signin(lwa_emulator, pages=pages)


def test_template_values_are_escaped(lwa_emulator: LWAEmulator) -> None:
    signin = make_signin(lwa_emulator, pages={"expired": "$login_url"}, login_path="/in&out")
    with _client(lwa_emulator, signin) as client:
        assert client.get("/callback").text == "/in&amp;out"


# -- Back after signing in -------------------------------------------------------------


def test_back_to_the_callback_after_signing_in_lands_signed_in(lwa_emulator: LWAEmulator) -> None:
    with _client(lwa_emulator, make_signin(lwa_emulator)) as client:
        login = client.get("/login", params={"next": "/me"})
        callback = path_of(authorize(lwa_emulator, login.headers["location"]))
        assert client.get(callback).status_code == 303
        tokens = lwa_emulator.calls["token"]
        again = client.get(callback)  # Back: the used callback URL, the session cookie
        assert again.status_code == 303, again.text  # was 400 "Sign-in expired"
        assert again.headers["location"] == "/"
        assert lwa_emulator.calls["token"] == tokens  # the code is not exchanged again
        assert client.get("/me").json()["user_id"] is not None
    with _client(lwa_emulator, make_signin(lwa_emulator)) as stranger:  # no session: expired
        assert stranger.get(callback).status_code == 400


# -- login_redirect: a page load without a token goes to /login ----------------------------

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_login_redirect_sends_page_loads_to_login(lwa_emulator: LWAEmulator) -> None:
    signin = make_signin(lwa_emulator)
    with _client(lwa_emulator, signin, login_redirect=signin.login_path) as client:
        page = client.get("/me?tab=orders&x=%2F", headers=HTML)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/me%3Ftab%3Dorders%26x%3D%252F"
        assert page.headers["cache-control"] == "no-store"
        follow = client.get(page.headers["location"])  # /login keeps next= for the callback
        assert follow.status_code == 302
        assert client.get("/me", headers={"Accept": "application/json"}).status_code == 401
        assert client.post("/me", headers={**HTML, "Origin": ORIGIN}).status_code == 401
        bad = client.get("/me", headers={**HTML, "Authorization": "Bearer Atza|nope"})
        assert bad.status_code == 401  # a token was sent: its refusal, not a redirect
        answer = sign_in(client, lwa_emulator, "/me?tab=orders&x=%2F")
        assert answer.headers["location"] == "/me?tab=orders&x=%2F"


def test_login_redirect_without_it_is_a_401(lwa_emulator: LWAEmulator) -> None:
    with _client(lwa_emulator, make_signin(lwa_emulator)) as client:
        assert client.get("/me", headers=HTML).status_code == 401


def test_login_redirect_under_wsgi_and_flask(lwa_emulator: LWAEmulator) -> None:
    from werkzeug.test import Client

    signin = make_signin(lwa_emulator)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(get_identity(environ)).encode()]

    wsgi = LWAWSGIMiddleware(
        app,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes=signin.route_policies(),
        login_redirect="/login",
    )
    answer = Client(wsgi).get("/me?a=1", headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/login?next=/me%3Fa%3D1"
    assert Client(wsgi).get("/me").status_code == 401
    wsgi.close()

    flask = Flask(__name__)
    LWA(
        flask,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        session=signin,
        routes=signin.route_policies(),
        login_redirect="/login",
    )
    flask.register_blueprint(signin_blueprint(signin))
    answer = flask.test_client().get("/orders", headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/login?next=/orders"


@pytest.mark.parametrize("bad", ["https://evil.example/login", "//evil", "login", "/login?x=1"])
def test_login_redirect_must_be_a_path(lwa_emulator: LWAEmulator, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="login_redirect must be a path"):
        starlette_app(lwa_emulator, make_signin(lwa_emulator), login_redirect=bad)

