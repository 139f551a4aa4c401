"""Issue 19, item 3: one clock convention. ``clock=`` takes the same kind of
object everywhere (``monotonic()`` and ``time()``, like the ``time`` module);
the middleware reads its monotonic face, ``SignIn`` its epoch face."""

from __future__ import annotations

import time
import warnings

import pytest
from support.clock import FakeClock
from support.private import Settings

from lwa_middleware import ConfigurationError
from lwa_middleware.signin import MemorySessionStore, SignIn

CLIENT_ID = "amzn1.application-oa2-client.clock"


class TwoFaces:
    """A clock whose faces differ, to see which one each part reads."""

    def __init__(self) -> None:
        self.mono, self.epoch = 50.0, 1_700_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.epoch


def _signin(**options: object) -> SignIn:
    return SignIn(
        client_id=CLIENT_ID,
        client_secret="amzn1.oa2-cs.v1." + "5e" * 32,
        redirect_uri="http://127.0.0.1:8000/callback",
        session_secret="s" * 40,
        api_base_url="http://127.0.0.1:9",
        allow_mixed_hosts=True,  # no browser goes anywhere here
        **options,  # type: ignore[arg-type]
    )


def test_the_middleware_reads_the_monotonic_face_and_signin_the_epoch_face() -> None:
    clock = TwoFaces()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        settings = Settings.from_options(client_id=CLIENT_ID, clock=clock)
        signin = _signin(clock=clock)
    assert settings.clock() == 50.0
    assert signin.clock() == 1_700_000_000.0
    signin.close()


def test_the_default_is_the_time_module() -> None:
    assert Settings.from_options(client_id=CLIENT_ID).clock is time.monotonic
    signin = _signin()
    assert signin.clock is time.time
    signin.close()


def test_the_memory_store_expires_by_the_monotonic_face() -> None:
    clock = TwoFaces()
    store = MemorySessionStore(clock=clock)
    store.put("session:a", b"sealed", 10)
    clock.epoch += 3600  # the wall clock jumps: nothing expires
    assert store.get("session:a") == b"sealed"
    clock.mono += 11
    assert store.get("session:a") is None


def test_one_fake_clock_serves_all_of_them() -> None:
    clock = FakeClock.starting_now()
    settings = Settings.from_options(client_id=CLIENT_ID, clock=clock)
    signin = _signin(clock=clock)
    clock.advance(60)
    assert settings.clock() == signin.clock() == clock.now
    signin.close()


@pytest.mark.parametrize(
    ("build", "face"),
    [
        (lambda c: Settings.from_options(client_id=CLIENT_ID, clock=c).clock, "monotonic"),
        (lambda c: _signin(clock=c).clock, "time"),
    ],
)
def test_a_bare_callable_still_works_with_a_deprecation_warning(build, face) -> None:
    def bare() -> float:
        return 7.0

    with pytest.warns(DeprecationWarning, match=rf"reads its {face}\(\); a bare callable"):
        read = build(bare)
    assert read is bare


@pytest.mark.parametrize("value", [5.0, "time", object()])
def test_something_else_is_refused_naming_what_to_give(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"clock must be a clock: an object with"):
        Settings.from_options(client_id=CLIENT_ID, clock=value)
    with pytest.raises(ConfigurationError, match=r"clock"):
        _signin(clock=value)
