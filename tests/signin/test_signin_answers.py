"""SignIn reads the token endpoint's answers in every documented shape.

``expires_in``: a number on Amazon's "Login with Amazon Access Tokens"
(developer.amazon.com/docs/login-with-amazon/access-token.html), the string
``"3600"`` on "Step 5: Make an Access Token Request from Your App" (Alexa
account linking, developer.amazon.com/en-US/docs/alexa/account-linking/
your-app-to-alexa-step5.html), the same ``/auth/o2/token``. Rotation: "Login
with Amazon Access Tokens" says a refresh gives a new refresh token.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import FakeClock
from support.lwa_proxy import Answer, RewritingProxy, json_answer

from lwa_middleware.signin import SignIn
from lwa_middleware.testing import Fault, LWAEmulator
from tests.signin.signin_support import (
    ORIGIN,
    SESSION_SECRET,
    session_cookie,
    session_of,
    sign_in,
    starlette_app,
)


def _signin(lwa: LWAEmulator, api_base_url: str, **options: Any) -> SignIn:
    lwa.add_redirect_uri(f"{ORIGIN}/callback")
    return SignIn(
        client_id=lwa.client_id,
        client_secret=lwa.client_secret,
        redirect_uri=f"{ORIGIN}/callback",
        session_secret=SESSION_SECRET,
        api_base_url=api_base_url,
        authorize_url=f"{lwa.base_url}/ap/oa",
        scopes=("profile",),
        **options,
    )


@pytest.fixture
def proxy(lwa_emulator: LWAEmulator) -> Iterator[RewritingProxy]:
    with RewritingProxy(lwa_emulator) as running:
        yield running


def test_expires_in_as_a_string_signs_in(lwa_emulator: LWAEmulator) -> None:
    # Fact T8. Before the fix: every callback answered 503.
    clock = FakeClock.starting_now()
    signin = _signin(lwa_emulator, lwa_emulator.base_url, clock=clock)
    lwa_emulator.inject(Fault.EXPIRES_IN_STRING, endpoint="token")
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        answer = sign_in(client, lwa_emulator, "/me")
        assert answer.status_code == 303, answer.text
        session_id = session_cookie(answer)
        assert session_id is not None
        assert session_of(signin, session_id).expires_at == pytest.approx(clock.now + 3600)
        assert client.get("/me").json()["user_id"] == "amzn1.account.AFADALOVELACE0000000000001"


def _expires_in(value: Any) -> Any:
    def rewrite(path: str, answer: Answer) -> Answer:
        status, headers, _ = answer
        if not path.startswith("/auth/o2/token") or status != 200:
            return answer
        data = json_answer(answer)
        if value is _MISSING:
            del data["expires_in"]
        else:
            data["expires_in"] = value
        return status, headers, json.dumps(data).encode()

    return rewrite


_MISSING = object()


def test_expires_in_as_amazons_string_on_the_code_and_the_refresh(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy
) -> None:
    # Fact T8, Amazon's own shape through the rewriting proxy: S8's
    # "expires_in": "3600" on every successful token answer, the code
    # exchange and the refresh (the same /auth/o2/token).
    proxy.rewrite_answer = _expires_in("3600")
    clock = FakeClock.starting_now()
    signin = _signin(lwa_emulator, proxy.base_url, clock=clock)
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        session_id = session_cookie(sign_in(client, lwa_emulator, "/me"))
        assert session_id is not None
        assert session_of(signin, session_id).expires_at == pytest.approx(clock.now + 3600)
        clock.advance(3600)  # the access token is due: SignIn refreshes it
        assert client.get("/me").status_code == 200
        assert session_of(signin, session_id).expires_at == pytest.approx(clock.now + 3600)
    assert lwa_emulator.calls["token"] == 2  # the code, then the refresh


@pytest.mark.parametrize(
    "value", ["soon", "", "NaN", "1e3", "-3600", 0, -5, None, True, [3600], {"s": 3600}, _MISSING]
)
def test_unusable_expires_in_is_a_503_never_a_500(
    lwa_emulator: LWAEmulator, proxy: RewritingProxy, value: Any
) -> None:
    proxy.rewrite_answer = _expires_in(value)
    signin = _signin(lwa_emulator, proxy.base_url)
    app = starlette_app(lwa_emulator, signin)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        answer = sign_in(client, lwa_emulator, "/me")
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert session_cookie(answer) is None
    assert lwa_emulator.calls["token"] == 1  # the proxy did forward it


def test_a_rotated_refresh_token_is_kept() -> None:
    # Fact R2, with LWAEmulator(rotate_refresh_tokens=True): each refresh
    # voids the refresh token it was sent, so a client must keep the new one.
    clock = FakeClock.starting_now()
    with LWAEmulator(rotate_refresh_tokens=True) as lwa:
        signin = _signin(lwa, lwa.base_url, clock=clock)
        app = starlette_app(lwa, signin)
        with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
            session_id = session_cookie(sign_in(client, lwa))
            assert session_id is not None
            seen = [session_of(signin, session_id).refresh_token]
            for _ in range(2):
                clock.advance(3600)
                assert client.get("/me").status_code == 200
                seen.append(session_of(signin, session_id).refresh_token)
        assert lwa.calls["token"] == 3  # the code, then two refreshes
    assert len(set(seen)) == 3


def test_default_authorize_url_is_amazons(lwa_emulator: LWAEmulator) -> None:
    # "Authorization Code Grant": https://www.amazon.com/ap/oa (no regional
    # variant documented; an assumption for the EU and FE regions).
    signin = SignIn(
        client_id=lwa_emulator.client_id,
        client_secret=lwa_emulator.client_secret,
        redirect_uri=f"{ORIGIN}/callback",
        session_secret=SESSION_SECRET,
        region="eu",
    )
    starlette_app(lwa_emulator, signin)  # wired (session=signin): login() refuses otherwise
    answer = signin.login("/me")
    assert answer.status == 302
    assert (answer.header("location") or "").startswith("https://www.amazon.com/ap/oa?")


@pytest.mark.parametrize("failure", ["status", "connection"])
def test_a_failing_token_endpoint_is_logged_with_why(
    lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    """Issue 21: the sign-in's call to LWA's token endpoint failing (LWA's 503,
    or no answer) is a WARNING with the reason, LWA's status and its
    x-amzn-RequestId (field and text), like the lookups' failures; it was
    answered "Amazon is unavailable" and logged nothing. Still a 503."""
    api = lwa_emulator.base_url
    # Bound, never listening: a connection to it is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        if failure == "status":
            lwa_emulator.inject(Fault.UNAVAILABLE, endpoint="token")
        else:
            api = f"http://127.0.0.1:{closed.getsockname()[1]}"
        app = starlette_app(lwa_emulator, _signin(lwa_emulator, api))
        with (
            TestClient(app, base_url=ORIGIN, follow_redirects=False) as client,
            caplog.at_level(logging.WARNING, logger="lwa_middleware.signin"),
        ):
            answer = sign_in(client, lwa_emulator, "/me")
    assert answer.status_code == 503
    (record,) = [r for r in caplog.records if getattr(r, "lwa_event", None) == "signin_unavailable"]
    assert record.levelno == logging.WARNING
    assert record.lwa_reason == failure
    if failure == "status":
        assert record.lwa_status == 503
        assert record.lwa_request_id  # the emulator sends one on every answer
        assert record.lwa_request_id in record.getMessage()
    else:
        assert (record.lwa_status, record.lwa_request_id) == (None, None)
    assert lwa_emulator.client_secret not in caplog.text
