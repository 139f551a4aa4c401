"""No secret reaches the browser, a URL, a log line or a repr, at any step."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

import httpx2
from starlette.testclient import TestClient
from support.clock import FakeClock

from tests.signin.signin_support import (
    ORIGIN,
    Recorder,
    authorize,
    make_signin,
    path_of,
    session_cookie,
    session_of,
    starlette_app,
)


def test_no_secret_in_responses_urls_logs_or_reprs(lwa_emulator, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    clock, recorder = FakeClock.starting_now(), Recorder()
    signin = make_signin(lwa_emulator, clock=clock, http=httpx2.Client(transport=recorder))
    app = starlette_app(lwa_emulator, signin)
    seen: list[httpx2.Response] = []
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        client.event_hooks = {"request": [], "response": [seen.append]}
        login = client.get("/login")
        logging.disable(logging.CRITICAL)  # the browser's own step at Amazon, not the server's
        try:
            back = authorize(lwa_emulator, login.headers["location"])
        finally:
            logging.disable(logging.NOTSET)
        code = dict(parse_qsl(urlsplit(back).query))["code"]
        session_id = session_cookie(client.get(path_of(back)))
        first = session_of(signin, session_id)
        client.get("/me")
        client.post("/me")  # refused: CSRF
        clock.advance(3600)
        client.get("/me")  # refreshed
        second = session_of(signin, session_id)
        client.post("/logout", headers={"Origin": ORIGIN})
        client.get("/me")  # 401
        for response in seen:
            response.read()
    verifier = recorder.grants("authorization_code")[0]["code_verifier"]
    secrets = {
        "access token": first.access_token,
        "refreshed access token": second.access_token,
        "refresh token": first.refresh_token,
        "code": code,
        "verifier": verifier,
        "client secret": lwa_emulator.client_secret,
    }
    assert len(seen) == 7
    sent_to_browser = "\n".join(f"{r.status_code} {r.headers.multi_items()} {r.text}" for r in seen)
    # The test client (the browser) logs the URLs it requests, the callback's
    # code included, as a browser keeps it in its history; the server must not.
    # Every attribute of a record too: its extra= fields reach a JSON formatter (issue 21).
    server_logs = "\n".join(
        r.getMessage() + " ".join(f"{k}={v!r} {v}" for k, v in vars(r).items())
        for r in caplog.records
        if f" {ORIGIN}/" not in r.getMessage()
    )
    assert "auth/o2/token" in server_logs  # the server side's own logs were captured
    urls = [url for _, url, _ in recorder.sent] + [r.target for r in lwa_emulator.requests]
    reprs = " ".join(map(repr, (signin, signin.store, signin.cookies, first, app)))
    for name, value in secrets.items():
        assert value not in sent_to_browser, f"{name} sent to the browser"
        assert not any(value in url for url in urls), f"{name} in a URL"
        assert value not in server_logs, f"{name} logged"
        assert value not in reprs, f"{name} in a repr"
    # The refresh token went to the token endpoint only, in the body.
    bodies = [(url, form) for _, url, form in recorder.sent if first.refresh_token in form.values()]
    assert [url for url, _ in bodies] == [f"{lwa_emulator.base_url}/auth/o2/token"]
