"""The login and callback steps: state, PKCE, single use, redirects, cookies, rotation."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from starlette.testclient import TestClient
from support.private import safe_next

from lwa_middleware import ConfigurationError
from lwa_middleware.signin import SignIn
from tests.signin.signin_support import (
    ORIGIN,
    SESSION_SECRET,
    Recorder,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    session_of,
    sign_in,
    starlette_app,
)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(lwa_emulator, recorder):
    signin = make_signin(lwa_emulator, http=httpx2.Client(transport=recorder))
    with TestClient(
        starlette_app(lwa_emulator, signin), base_url=ORIGIN, follow_redirects=False
    ) as client:
        client.signin = signin
        yield client


def test_sign_in_opens_a_server_side_session_and_links_the_user(client, lwa_emulator):
    answer = sign_in(client, lwa_emulator, "/me")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/me"
    me = client.get("/me").json()
    assert me["user_id"] == "amzn1.account.AFADALOVELACE0000000000001"
    assert me["app_user"] == {"id": me["user_id"], "name": "Ada Lovelace"}  # request.user


def test_login_redirects_with_state_and_s256_pkce(client, lwa_emulator, recorder):
    login = client.get("/login")
    target = urlsplit(login.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{lwa_emulator.base_url}/ap/oa"
    query = dict(parse_qsl(target.query))
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == "profile"
    assert query["redirect_uri"] == f"{ORIGIN}/callback"
    assert len(query["state"]) >= 43
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Max-Age=600" in cookie
    client.get(path_of(authorize(lwa_emulator, login.headers["location"])))
    (exchange,) = recorder.grants("authorization_code")
    verifier = exchange["code_verifier"]  # the verifier was sent, and matches the challenge
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert exchange["client_secret"]
    assert exchange["redirect_uri"] == f"{ORIGIN}/callback"
    method, url, _ = recorder.sent[0]
    assert method == "POST"
    assert url == f"{lwa_emulator.base_url}/auth/o2/token"


def test_state_mismatch_is_refused_and_ends_the_attempt(client, lwa_emulator):
    login = client.get("/login")
    back = authorize(lwa_emulator, login.headers["location"])
    forged = re.sub(r"state=[^&]+", "state=forged", path_of(back))
    refused = client.get(forged)
    assert refused.status_code == 400
    assert session_cookie(refused) in (None, "")
    # The pending login was used up: the genuine answer cannot follow.
    assert client.get(path_of(back)).status_code == 400
    assert client.get("/me").status_code == 401


def test_callback_without_the_login_cookie_is_refused(client, lwa_emulator):
    login = client.get("/login")
    back = authorize(lwa_emulator, login.headers["location"])
    client.cookies.clear()
    assert client.get(path_of(back)).status_code == 400


def test_a_code_is_used_once(client, lwa_emulator, recorder):
    login = client.get("/login")
    first = authorize(lwa_emulator, login.headers["location"])
    assert client.get(path_of(first)).status_code == 303
    # A second login, answered with the first (already redeemed) code.
    login = client.get("/login")
    second = authorize(lwa_emulator, login.headers["location"])
    code = dict(parse_qsl(urlsplit(first).query))["code"]
    replay = re.sub(r"code=[^&]+", f"code={code}", path_of(second))
    answer = client.get(replay)
    assert answer.status_code == 400
    assert b"refused" in answer.content
    assert len(recorder.grants("authorization_code")) == 2  # LWA said invalid_grant


def test_access_denied_is_answered_gracefully(client, lwa_emulator):
    login = client.get("/login")
    back = authorize(lwa_emulator, login.headers["location"], deny=True)
    answer = client.get(path_of(back))
    assert answer.status_code == 403
    assert b"cancelled" in answer.content
    assert b'href="/login"' in answer.content
    assert session_cookie(answer) in (None, "")


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil",
        "/a\nb",
        "javascript:alert(1)",
        "evil",
        "/%0a",
        " /x",
        "\\\\evil",
    ],
)
def test_open_redirects_are_refused(client, lwa_emulator, target):
    expected = "/%0a" if target == "/%0a" else "/"  # an encoded %0a is just a path
    assert safe_next(target, "/") == expected
    answer = sign_in(client, lwa_emulator, target)
    assert answer.headers["location"] == expected


def test_same_origin_paths_are_kept():
    assert safe_next("/orders/7?tab=open#x", "/") == "/orders/7?tab=open#x"


def test_session_ids_are_unguessable_and_rotated_on_sign_in(client, lwa_emulator):
    first = session_cookie(sign_in(client, lwa_emulator))
    assert first is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", first)
    assert client.get("/me").status_code == 200
    second = session_cookie(sign_in(client, lwa_emulator))  # with the first cookie still sent
    assert second is not None
    assert second != first
    assert session_of(client.signin, first) is None  # the old session is gone
    client.cookies.clear()
    client.cookies.set("lwa_session", first)
    assert client.get("/me").status_code == 401
    ids = {session_cookie(sign_in(client, lwa_emulator)) for _ in range(5)}
    assert len(ids) == 5


def test_a_planted_session_id_never_becomes_a_session(client, lwa_emulator):
    planted = "A" * 43
    client.cookies.set("lwa_session", planted)
    answer = sign_in(client, lwa_emulator)
    assert session_cookie(answer) != planted
    client.cookies.clear()
    client.cookies.set("lwa_session", planted)
    assert client.get("/me").status_code == 401


def test_https_cookies_are_secure_and_host_prefixed(lwa_emulator):
    origin = "https://localhost:8443"
    signin = make_signin(lwa_emulator, origin=origin)
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=origin, follow_redirects=False) as client:
        login = client.get("/login")
        assert login.headers["set-cookie"].startswith("__Host-lwa_session_login=")
        answer = client.get(path_of(authorize(lwa_emulator, login.headers["location"])))
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("__Host-lwa_session=")
        )
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag in cookie.split("; ")
        assert "Domain" not in cookie
        assert client.get("/me").status_code == 200


def test_configuration_is_checked(lwa_emulator):
    with pytest.raises(ConfigurationError, match="session_secret"):
        SignIn(
            client_id=lwa_emulator.client_id,
            client_secret="x",
            session_secret="short",
            redirect_uri=f"{ORIGIN}/callback",
            api_base_url=lwa_emulator.base_url,
        )
    with pytest.raises(ConfigurationError, match="plain http"):
        SignIn(
            client_id=lwa_emulator.client_id,
            client_secret="x",
            session_secret=SESSION_SECRET,
            redirect_uri="http://app.example/callback",
            api_base_url=lwa_emulator.base_url,
        )
    with pytest.raises(ConfigurationError, match="scopes"):
        make_signin(lwa_emulator, scopes=("alexa:all",))
