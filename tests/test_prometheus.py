"""``lwa_middleware.prometheus.LWACollector``, scraped through prometheus_client's
own registry and text exposition (issue 21)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lwa_middleware import LWAWSGIMiddleware
from lwa_middleware.integrations.prometheus import LWACollector
from lwa_middleware.testing import Fault, LWAEmulator

LABELS = {"app": "api"}


def _ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _get(app: Any, token: str) -> int:
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://app") as client:
        return client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_scrape_reads_the_counters(lwa_emulator: LWAEmulator) -> None:
    app = LWAWSGIMiddleware(
        _ok,
        client_id=lwa_emulator.client_id,
        api_base_url=lwa_emulator.base_url,
        breaker_threshold=1,
    )
    registry = CollectorRegistry()
    registry.register(LWACollector(app, const_labels=LABELS))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {**LABELS, **labels})

    assert value("lwa_lookups_total") == 0
    assert value("lwa_breaker_open") == 0
    token = lwa_emulator.issue_token(scopes=["profile"])
    assert _get(app, token) == 200
    assert _get(app, token) == 200
    revoked = lwa_emulator.issue_token(scopes=["profile"])
    lwa_emulator.revoke(revoked)
    assert _get(app, revoked) == 401
    lwa_emulator.inject(Fault.SERVER_ERROR, endpoint="tokeninfo")
    assert _get(app, lwa_emulator.issue_token(scopes=["profile"])) == 503

    assert value("lwa_lookups_total") == 3
    assert value("lwa_cache_hits_total") == 1
    assert value("lwa_cache_misses_total") == 3
    assert value("lwa_rejections_total") == 1
    assert value("lwa_upstream_errors_total", reason="status") == 1
    assert value("lwa_upstream_errors_total", reason="certificate") == 0
    assert value("lwa_breaker_open") == 1
    assert value("lwa_breaker_opened_total") == 1
    assert value("lwa_saturated_total") == 0
    assert value("lwa_redis_faults_total") == 0
    assert value("lwa_lookup_duration_seconds_count") == 3
    assert value("lwa_lookup_duration_seconds_bucket", le="+Inf") == 3
    assert value("lwa_lookup_duration_seconds_bucket", le="10.0") == 3
    seconds = value("lwa_lookup_duration_seconds_sum")
    assert seconds is not None
    assert seconds > 0

    # Prometheus conventions: counters end in _total, the unit is in the name.
    kinds = {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert kinds["lwa_lookups"] == "counter"
    assert kinds["lwa_breaker_open"] == "gauge"
    assert kinds["lwa_lookup_duration_seconds"] == "histogram"
    assert all(name.startswith("lwa_") for name in kinds)
    app.close()


def test_the_collector_wants_a_middleware() -> None:
    with pytest.raises(TypeError, match="needs a middleware of lwa_middleware"):
        LWACollector(object())


#: Every plain counter of the docs' table (docs/observability.md) and the
#: ``Stats`` field it must read.
DOCUMENTED = {
    "lwa_lookups_total": "lookups",
    "lwa_cache_hits_total": "hits",
    "lwa_cache_misses_total": "misses",
    "lwa_shared_cache_hits_total": "shared_hits",
    "lwa_lookups_joined_total": "coalesced",
    "lwa_stale_served_total": "stale_served",
    "lwa_rejections_total": "rejected",
    "lwa_rejections_cached_total": "rejections_cached",
    "lwa_saturated_total": "saturated",
    "lwa_breaker_opened_total": "breaker_opened",
    "lwa_redis_errors_total": "redis_errors",
    "lwa_redis_faults_total": "redis_faults",
}


def test_each_counter_reads_its_own_stat(lwa_emulator: LWAEmulator) -> None:
    """Joins, saturation, Redis faults…: the scenario above leaves most at 0,
    so each counter is given a value of its own and must report that one."""
    app = LWAWSGIMiddleware(_ok, client_id=lwa_emulator.client_id)
    for number, field in enumerate(DOCUMENTED.values(), start=11):
        setattr(app.stats, field, number)
    app.stats.upstream_error_reasons["timeout"] = 7
    registry = CollectorRegistry()
    registry.register(LWACollector(app))
    for number, name in enumerate(DOCUMENTED, start=11):
        assert registry.get_sample_value(name) == number, name
    assert registry.get_sample_value("lwa_upstream_errors_total", {"reason": "timeout"}) == 7
    app.close()
    docs = (Path(__file__).parent.parent / "docs" / "observability.md").read_text()
    assert all(f"`{name}`" in docs for name in DOCUMENTED)
