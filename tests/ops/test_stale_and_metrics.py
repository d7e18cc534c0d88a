"""A stale answer says ``X-Cache: STALE`` (never HIT, which Tina4's chapter defines as fresh), and
the metrics count the store's latency per operation and the bytes received from the app: against
the real sidecar process in front of the real ops app, on both transports, the scrape parsed by
prometheus-client's parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import admin, sidecar_for, wait_for
from tests.ops.test_app_restarts import TRANSPORTS, get
from tests.servers.demo_app import DemoApp

pytestmark = pytest.mark.e2e


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    text = admin(base, "metrics").body.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def received(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples[("tina4_sidecar_origin_received_bytes_total", ())]


@pytest.mark.parametrize("fast_path", TRANSPORTS)
def test_a_stale_answer_says_stale_a_fresh_one_hit(ops_app: DemoApp, tmp_path: Path, fast_path: str) -> None:
    rules = tmp_path / "rules.json"
    rule = {"method": "GET", "path": "/docs/*", "ttl": 1, "stale_while_revalidate": 60}
    rules.write_text(json.dumps({"version": 1, "routes": [rule]}))
    env: dict[str, str | None] = {"TINA4_SIDECAR_RULES_FILE": str(rules)}
    env["TINA4_SIDECAR_FAST_PATH"] = fast_path
    env["TINA4_SIDECAR_EARLY_REFRESH_BETA"] = "0"  # no refresh before expiry: the stale entry is the first
    sidecar = sidecar_for(ops_app, tmp_path, env)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        first = get(base, "/docs/stale")
        assert first.headers["X-Cache"] == "MISS"
        fresh = get(base, "/docs/stale")
        assert (fresh.headers["X-Cache"], fresh.body) == ("HIT", first.body)
        # HITs until the entry expires; the first answer after is the stale one
        stale = wait_for(lambda: (reply := get(base, "/docs/stale")).headers["X-Cache"] != "HIT" and reply)
        assert stale, "the entry never went stale"
        assert stale.headers["X-Cache"] == "STALE", stale.headers  # type: ignore[attr-defined]
        assert stale.headers["X-Cache-TTL"] == "0"  # type: ignore[attr-defined]
        assert "; hit; ttl=-" in stale.headers["Cache-Status"]  # type: ignore[attr-defined]
        assert stale.body == first.body  # type: ignore[attr-defined]
    finally:
        sidecar.stop()


@pytest.mark.parametrize("fast_path", TRANSPORTS)
def test_store_latency_and_bytes_from_the_app_are_metrics(
    ops_app: DemoApp, tmp_path: Path, fast_path: str
) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_FAST_PATH": fast_path})
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        before = scrape(base)
        forwarded = get(base, "/slow?seconds=0")  # no cached rule: forwarded (5 kB of padding)
        assert forwarded.status == 200
        assert len(forwarded.body) > 5000
        after_forward = scrape(base)
        assert received(after_forward) - received(before) >= len(forwarded.body)

        filled = get(base, "/news/metrics")  # a miss: fetched for the cache and stored
        assert filled.headers["X-Cache"] == "MISS"
        assert get(base, "/news/metrics").headers["X-Cache"] == "HIT"
        after = scrape(base)
        assert received(after) - received(after_forward) >= len(filled.body)

        count = "tina4_sidecar_store_duration_seconds_count"
        operations = {dict(labels)["operation"] for name, labels in after if name == count}
        assert "set" in operations
        assert operations & {"get", "get_many"}
        for operation in operations:
            labels = (("operation", operation),)
            assert after[(count, labels)] > 0
            inf = ("tina4_sidecar_store_duration_seconds_bucket", (("le", "+Inf"), ("operation", operation)))
            assert after[inf] == after[(count, labels)]
            assert after[("tina4_sidecar_store_duration_seconds_sum", labels)] >= 0
        assert after[(count, (("operation", "set"),))] > before.get((count, (("operation", "set"),)), 0)
    finally:
        sidecar.stop()
