from urllib.parse import urlsplit

import pytest
from site_app import create_app, make_signin

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def signin(lwa_emulator):
    lwa_emulator.add_redirect_uri(f"{ORIGIN}/callback")
    signin = make_signin(
        client_id=lwa_emulator.client_id, client_secret=lwa_emulator.client_secret,
        session_secret="a-test-secret-of-32-bytes-or-more!!",
        redirect_uri=f"{ORIGIN}/callback",
        api_base_url=lwa_emulator.base_url, authorize_url=lwa_emulator.authorize_url)
    yield signin
    signin.close()


@pytest.fixture
def browser(signin, lwa_emulator):
    app = create_app(signin, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url)
    return app.test_client()


def sign_in(browser, lwa_emulator, **consent):
    login = browser.get(f"{ORIGIN}/login")
    assert login.status_code in (302, 303)
    back = lwa_emulator.consent(login.headers["Location"], **consent)
    return browser.get(back)


def test_home_is_anonymous_until_signed_in(browser, lwa_emulator):
    assert browser.get(f"{ORIGIN}/").json == {"user": None}
    callback = sign_in(browser, lwa_emulator)
    assert callback.status_code == 303
    user = browser.get(f"{ORIGIN}/").json["user"]
    assert user["name"] == "Ada Lovelace"
    assert user["id"].startswith("amzn1.account.")


def test_a_page_load_goes_to_login_and_back(browser, lwa_emulator):
    page = browser.get(f"{ORIGIN}/account", headers={"Accept": "text/html"})
    assert page.status_code == 303
    login = page.headers["Location"]
    assert urlsplit(login).path == "/login"
    assert "next=" in login
    api = browser.get(f"{ORIGIN}/account", headers={"Accept": "application/json"})
    assert api.status_code == 401


def test_logout_ends_the_session(browser, lwa_emulator):
    sign_in(browser, lwa_emulator)
    assert browser.get(f"{ORIGIN}/account").status_code == 200
    out = browser.post(f"{ORIGIN}/logout", headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert browser.get(f"{ORIGIN}/").json == {"user": None}


def test_logout_from_another_site_is_refused(browser, lwa_emulator):
    sign_in(browser, lwa_emulator)
    out = browser.post(f"{ORIGIN}/logout", headers={"Origin": "https://evil.example"})
    assert out.status_code == 403
    assert browser.get(f"{ORIGIN}/account").status_code == 200


def test_a_customer_who_refuses_is_not_signed_in(browser, lwa_emulator):
    login = browser.get(f"{ORIGIN}/login")
    back = lwa_emulator.deny(login.headers["Location"])
    assert "error=access_denied" in back
    browser.get(back)
    assert browser.get(f"{ORIGIN}/").json == {"user": None}
