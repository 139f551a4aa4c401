"""Old name of :mod:`support.clock`."""

from support.clock import FakeClock

__all__ = ["FakeClock"]
