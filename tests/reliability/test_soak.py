"""Load and soak, CI-sized: ``benchmarks/soak.py``'s scenario on real servers.

uvicorn (in a thread) and a threaded WSGI server (waitress, else wsgiref with
threads) serve a who-am-I app behind the middleware; 32 concurrent clients
send a few hundred tokens, 30% garbage, through an LWA outage and its end.
The scenario judges every answer as it arrives (see the benchmark's
docstring); these tests assert that nothing was judged wrong, plus the
figures each variant is about. Run the benchmark for the long version.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lwa_middleware.testing import LWAEmulator

from .conftest import assert_clean_logs, load_soak

soak: Any = load_soak()

MIB = 1024 * 1024


def _show(lines: list[str]) -> None:
    print("\n" + "\n".join(lines))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "stale"),
    # Stale-if-error and failing closed are one core shared by both adapters:
    # one server each keeps the suite CI-sized (the benchmark runs all four).
    [("uvicorn", True), ("waitress", False)],
    ids=["uvicorn-stale", "wsgi-fail-closed"],
)
def test_soak_through_an_outage(
    server: str, stale: bool, lwa_emulator: LWAEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    plan = soak.Plan(
        server=server,
        stale_if_error=stale,
        clients=32,
        tokens=300,
        warm=1.2,
        cache_ttl=0.7,
        outage=0.8,
        after=0.5,
        recovery_bound=3.0,
    )
    # A 1 s cooldown (5 s by default) keeps the time to recover CI-sized.
    report = soak.run_soak(lwa_emulator, plan, breaker_cooldown=1.0)
    _show(report.lines())

    assert 500 not in report.statuses
    assert set(report.statuses) <= {200, 401, 503}
    assert not report.violations, dict(report.violations)
    # The scenario really ran: both kinds of token, served and refused.
    assert report.matrix["warm", "valid", 200] > 0
    assert report.matrix["warm", "garbage", 401] > 0
    assert sum(n for (phase, _, _), n in report.matrix.items() if phase == "outage") > 0
    outage_valid_ok = report.matrix["outage", "valid", 200]
    if stale:
        # Cached identities, stale after cache_ttl, kept being served.
        assert outage_valid_ok > 0
        assert report.stats["stale_served"] > 0
    else:
        assert outage_valid_ok == 0
        assert report.stats["stale_served"] == 0
    _assert_no_errors_logged(caplog)
    # Token hygiene under load: not in any log record, never in an LWA URL.
    assert_clean_logs(caplog.records, *report.tokens)
    assert lwa_emulator.token_in_url == 0
    assert {r.target for r in lwa_emulator.requests if r.endpoint != "mint"} <= {
        "/auth/o2/tokeninfo",
        "/user/profile",
    }
    assert report.recovery_seconds is not None
    assert report.matrix["after", "valid", 200] > 0


def _assert_no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    # uvicorn and waitress log an app's exception at ERROR with its traceback.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors[:5]]


@pytest.mark.slow
def test_token_flood_keeps_memory_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Distinct random tokens, 4x the negative cache, with small caches."""
    caplog.set_level(logging.WARNING)
    # LWA runs in a child process here, so RSS is the server's and the middleware's.
    flood = soak.run_flood(
        "uvicorn",
        tokens=400,
        clients=32,
        valid_every=6,
        cache_maxsize=50,
        negative_cache_maxsize=100,
    )
    _show(flood.lines())
    assert flood.problems() == []
    assert 500 not in flood.statuses
    assert set(flood.statuses) <= {200, 401}
    assert flood.statuses[200] == flood.valid == 67
    assert flood.valid_ok == flood.valid
    assert flood.cache_size <= 50
    assert flood.rejections_size <= 100
    assert flood.rejections_size > 0
    assert flood.flights_left == 0
    assert not flood.transport_errors
    assert flood.rss_after - flood.rss_before < 50 * MIB
    _assert_no_errors_logged(caplog)
