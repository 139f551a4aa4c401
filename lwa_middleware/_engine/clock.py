"""One clock convention for everything that takes ``clock=``.

A clock is an object with two faces, as the :mod:`time` module itself has
(the default): ``monotonic()`` for what lives in this process, and ``time()``
(epoch seconds) for what outlives it. Each part reads the face its safety
needs, never the other:

- the middleware (caches, breaker, throttles) reads ``monotonic()``: a step of
  the wall clock (NTP) must not stretch a cached identity or a breaker's
  cooldown;
- ``SignIn`` and ``LWAEmulator`` read ``time()``: a session's end and its
  token's expiry are stored (in Redis, read by other workers) and must mean
  the same in another process.

So one object (the test suite's ``FakeClock``, or ``time``) serves all of
them. A bare callable, the form before this, is still read as the face that
part used to read, with a ``DeprecationWarning``, for one release.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ConfigurationError

__all__ = ["Clock", "check_clock", "epoch_of", "monotonic_of"]


@runtime_checkable
class Clock(Protocol):
    """What ``clock=`` takes: like the :mod:`time` module, both faces."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


def _is_clock(value: Any) -> bool:
    return callable(getattr(value, "monotonic", None)) and callable(getattr(value, "time", None))


def check_clock(name: str) -> Callable[[Any], None]:
    """The option check: a clock, or (deprecated) a bare callable."""

    def check(value: Any) -> None:
        if not _is_clock(value) and not callable(value):
            raise ConfigurationError(
                f"{name} must be a clock: an object with monotonic() and time(), like the "
                "time module (the default)"
            )

    return check


def _face(value: Any, face: Literal["monotonic", "time"], owner: str) -> Callable[[], float]:
    if _is_clock(value):
        read: Callable[[], float] = getattr(value, face)
        return read
    if callable(value):
        warnings.warn(
            f"{owner}(clock=) takes a clock (an object with monotonic() and time(), like the "
            f"time module) and reads its {face}(); a bare callable, read as time.{face}, "
            "is deprecated and will be refused in the next release",
            DeprecationWarning,
            stacklevel=4,
        )
        return value  # type: ignore[no-any-return]
    check_clock("clock")(value)  # raises
    raise AssertionError  # pragma: no cover


def monotonic_of(value: Any, owner: str) -> Callable[[], float]:
    """The monotonic face of ``clock=``: what lives in this process."""
    return _face(value, "monotonic", owner)


def epoch_of(value: Any, owner: str) -> Callable[[], float]:
    """The epoch-seconds face of ``clock=``: what is stored, or outlives the process."""
    return _face(value, "time", owner)
