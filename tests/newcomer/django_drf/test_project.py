from django.contrib.auth import get_user_model
from django.test import Client

from lwa_middleware.testing import BUILTIN_CUSTOMERS

ADA = BUILTIN_CUSTOMERS[0]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def sign_in(browser, lwa):
    login = browser.get("/login")
    assert login.status_code in (302, 303)
    back = lwa.consent(login.headers["Location"], customer=0)
    return browser.get(back)


def test_sign_in_creates_and_links_a_django_user(lwa):
    browser = Client()
    assert browser.get("/").json() == {"username": None}
    assert sign_in(browser, lwa).status_code in (302, 303)
    username = browser.get("/").json()["username"]
    assert username.startswith("lwa-")
    user = get_user_model().objects.get(username=username)
    assert not user.has_usable_password()
    assert user.lwa_amazon_account is not None


def test_a_bearer_token_reaches_the_same_user(lwa):
    browser = Client()
    sign_in(browser, lwa)
    signed_in = browser.get("/api/me").json()
    token = lwa.issue_token(scopes=["profile"], user_id=ADA.user_id, name=ADA.name)
    mobile = Client().get("/api/me", headers=bearer(token))
    assert mobile.status_code == 200, mobile.content
    assert mobile.json()["pk"] == signed_in["pk"]
    assert mobile.json()["name"] == "Ada Lovelace"


def test_a_new_customers_first_token_creates_their_user(lwa):
    before = get_user_model().objects.count()
    token = lwa.issue_token(scopes=["profile"], name="Grace Hopper")
    answer = Client().get("/api/me", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.json()["username"].startswith("lwa-")
    assert get_user_model().objects.count() == before + 1


def test_drf_scopes_and_errors(lwa):
    client = Client()
    anonymous = client.get("/api/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="lwa"'
    profile_only = lwa.issue_token(scopes=["profile"])
    refused = client.get("/api/shipping", headers=bearer(profile_only))
    assert refused.status_code == 403
    assert 'scope="postal_code"' in refused.headers["WWW-Authenticate"]
    both = lwa.issue_token(scopes=["profile", "postal_code"], postal_code="10115")
    assert client.get("/api/shipping", headers=bearer(both)).json() == {"postal_code": "10115"}


def test_a_deactivated_user_is_not_let_in(lwa):
    token = lwa.issue_token(scopes=["profile"], name="Alan Turing")
    client = Client()
    username = client.get("/api/me", headers=bearer(token)).json()["username"]
    get_user_model().objects.filter(username=username).update(is_active=False)
    assert client.get("/api/me", headers=bearer(token)).status_code == 403
