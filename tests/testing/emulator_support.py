"""Helpers shared by the emulator's tests: clients, calls and expected bodies.

Every client is built with ``trust_env=False`` so no proxy setting can send
a request anywhere but loopback.
"""

from __future__ import annotations

import re
import ssl
import threading

import httpx

from lwa_middleware.testing import LWAEmulator

JSON_TYPE = "application/json;charset=UTF-8"


INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The request has an invalid parameter : access_token",
}


MISSING_TOKEN = {
    "error": "invalid_request",
    "error_description": "The request is missing a required parameter : access_token",
}


USER_ID = re.compile(r"amzn1\.account\.[A-Z0-9]{26}")


APP_ID = re.compile(r"amzn1\.application\.[0-9a-f]{32}")


TOKEN = re.compile(r"Atza\|[A-Za-z0-9_-]+")


REDIRECT = "http://127.0.0.1:9/callback"


# Building a TLS context per client costs ~30 ms (CA bundle load); the
# emulator speaks plain HTTP, so one shared context is plenty.
_TLS = ssl.create_default_context()


def make_client(timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(timeout=timeout, trust_env=False, verify=_TLS)


def tokeninfo(c: httpx.Client, lwa: LWAEmulator, token: str) -> httpx.Response:
    return c.get(lwa.tokeninfo_url, headers={"x-amz-access-token": token})


def profile(c: httpx.Client, lwa: LWAEmulator, token: str) -> httpx.Response:
    return c.get(lwa.profile_url, headers={"Authorization": f"Bearer {token}"})


def call_in_thread(url: str, token: str) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def call() -> None:
        with make_client(timeout=30.0) as c:
            try:
                outcome["response"] = c.get(url, headers={"x-amz-access-token": token})
            except httpx.HTTPError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome
