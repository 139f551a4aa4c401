"""The :class:`LWAEmulator` facade: tokens, revocation, reset, repr, lifecycle.

Endpoint behaviour is tested next to the module that holds it (``test_api``,
``test_faults``, ``test_server``, ``test_signin``); helpers are in
``emulator_support`` and the ``client`` fixture in ``conftest``.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import httpx2
import pytest

from lwa_middleware.testing import BUILTIN_CUSTOMERS, Customer, Fault, LWAEmulator

from .emulator_support import (
    INVALID_TOKEN,
    TOKEN,
    USER_ID,
    make_client,
    profile,
    tokeninfo,
)

# -- tokens --------------------------------------------------------------------


def test_issued_token_looks_like_an_lwa_token(lwa_emulator: LWAEmulator) -> None:
    tokens = {lwa_emulator.issue_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert TOKEN.fullmatch(token), token[:10]
        assert 380 <= len(token) <= 500



def test_issue_token_validates(lwa_emulator: LWAEmulator) -> None:
    with pytest.raises(ValueError):
        lwa_emulator.issue_token(scopes=["two words"])
    with pytest.raises(ValueError):
        lwa_emulator.issue_token(expires_in=float("inf"))



def test_customer_fields(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    grace = BUILTIN_CUSTOMERS[1]
    token = lwa_emulator.issue_token(
        scopes=["profile", "postal_code"], customer=grace, email="g@example.com"
    )
    assert lwa_emulator.customer_for(token) == Customer(
        grace.user_id, grace.name, "g@example.com", grace.postal_code
    )
    assert profile(client, lwa_emulator, token).json() == {
        "user_id": grace.user_id,
        "name": "Grace Hopper",
        "email": "g@example.com",
        "postal_code": grace.postal_code,
    }
    # Without a customer, each token gets a fresh one.
    a = lwa_emulator.customer_for(lwa_emulator.issue_token())
    b = lwa_emulator.customer_for(lwa_emulator.issue_token(user_id="amzn1.account.X"))
    assert a.user_id != b.user_id
    assert b.user_id == "amzn1.account.X"
    assert a.email.endswith("@example.com")
    for c in BUILTIN_CUSTOMERS:
        assert USER_ID.fullmatch(c.user_id)



def test_revoke(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    other = lwa_emulator.issue_token()
    assert tokeninfo(client, lwa_emulator, token).status_code == 200

    lwa_emulator.revoke(token)

    assert tokeninfo(client, lwa_emulator, token).json() == INVALID_TOKEN
    assert profile(client, lwa_emulator, token).status_code == 400
    assert tokeninfo(client, lwa_emulator, other).status_code == 200
    assert USER_ID.fullmatch(lwa_emulator.customer_for(token).user_id)
    with pytest.raises(KeyError):
        lwa_emulator.revoke("Atza|never-issued")
    with pytest.raises(KeyError):
        lwa_emulator.customer_for("Atza|never-issued")


# -- lifecycle, reset, secrecy -------------------------------------------------


def test_reset_clears_everything(lwa_emulator: LWAEmulator, client: httpx2.Client) -> None:
    token = lwa_emulator.issue_token()
    tokeninfo(client, lwa_emulator, token)
    client.get(lwa_emulator.tokeninfo_url, params={"access_token": token})
    lwa_emulator.inject(Fault.SERVER_ERROR)
    lwa_emulator.set_latency(0.5)
    assert lwa_emulator.connections == 1

    lwa_emulator.reset()

    assert lwa_emulator.calls == Counter()
    assert lwa_emulator.requests == []
    assert lwa_emulator.connections == 0
    assert lwa_emulator.token_in_url == 0
    start = time.monotonic()
    response = tokeninfo(client, lwa_emulator, token)
    assert time.monotonic() - start < 0.4
    assert response.json() == INVALID_TOKEN
    with pytest.raises(KeyError):
        lwa_emulator.customer_for(token)



def test_repr_and_output_never_show_tokens(
    lwa_emulator: LWAEmulator, client: httpx2.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    token = lwa_emulator.issue_token()
    tokeninfo(client, lwa_emulator, token)
    client.get(lwa_emulator.profile_url, params={"access_token": token})
    client.get(lwa_emulator.base_url + "/nowhere", params={"access_token": token})
    lwa_emulator.inject(Fault.RESET, times=1)
    with pytest.raises(httpx2.HTTPError):
        tokeninfo(client, lwa_emulator, token)
    text = repr(lwa_emulator)
    assert token not in text
    assert "tokens=1" in text
    assert lwa_emulator.base_url in text
    out, err = capfd.readouterr()
    assert token not in out
    assert token not in err
    assert token[5:40] not in out + err



def test_lifecycle() -> None:
    lwa = LWAEmulator(client_id="amzn1.application-oa2-client.life")
    with pytest.raises(RuntimeError):
        _ = lwa.base_url
    assert "unbound" in repr(lwa)
    token = lwa.issue_token()
    with lwa:
        assert lwa.start() is lwa  # starting twice is harmless
        url = lwa.base_url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert url.endswith(f":{lwa.port}")
        with make_client() as c:
            assert tokeninfo(c, lwa, token).json()["aud"] == "amzn1.application-oa2-client.life"
    assert "stopped" in repr(lwa)
    with make_client() as c, pytest.raises(httpx2.ConnectError):
        tokeninfo(c, lwa, token)
    with lwa, make_client() as c:
        assert lwa.base_url == url
        assert tokeninfo(c, lwa, token).status_code == 200
    with pytest.raises(RuntimeError):
        lwa.inject(Fault.DOWN)
