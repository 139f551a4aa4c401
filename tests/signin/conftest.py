"""Every SignIn a sign-in test builds is closed after it (its HTTP client and
the recorder transport behind it), so the suite leaves no socket behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lwa_middleware.signin import SignIn


@pytest.fixture(autouse=True)
def _close_signins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[SignIn] = []
    original = SignIn.__init__

    def tracked(self: SignIn, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SignIn, "__init__", tracked)
    yield
    for signin in made:
        signin.close()
