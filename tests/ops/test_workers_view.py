"""``--workers 2`` seen as one sidecar: metrics (parsed with prometheus-client's parser) and stats
sum every worker, the admin listener works with workers, and a purge sent to any worker reaches
all of them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import admin, call, sidecar_for, wait_for
from tests.servers.demo_app import DemoApp
from tests.servers.process import free_port

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value for (sample, got), value in samples(text).items()
        if sample == name and all((k, v) in got for k, v in labels.items())
    )  # fmt: skip


def test_two_workers_report_as_one(ops_app: DemoApp, tmp_path: Path) -> None:
    admin_port = free_port()
    env = {"TINA4_SIDECAR_WORKERS": "2", "TINA4_SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin_port}"}
    sidecar = sidecar_for(ops_app, tmp_path, env)
    base = f"http://127.0.0.1:{sidecar.port}"
    admin_base = f"http://127.0.0.1:{admin_port}"
    try:
        time.sleep(1.0)  # every worker has written its counters of the start-up requests
        before = admin(admin_base, "metrics").body.decode()
        served = 60
        for _ in range(served):
            call(f"{base}/news/workers")  # a new connection each: both workers answer
        stats_pids = {admin(admin_base, "stats").json()["pid"] for _ in range(12)}  # type: ignore[index]
        assert len(stats_pids) == 2, "the admin listener is not shared by both workers"

        def counted() -> float:
            text = admin(admin_base, "metrics").body.decode()
            return total(text, "tina4_sidecar_requests_total", route="/news/{name}") - total(
                before, "tina4_sidecar_requests_total", route="/news/{name}")  # fmt: skip

        assert wait_for(lambda: counted() == served, 5), counted()
        text = admin(admin_base, "metrics").body.decode()
        assert total(text, "tina4_sidecar_workers") == 2
        assert total(text, "tina4_sidecar_responses_total", **{"class": "2xx"}) >= served
        stats = admin(base, "stats").json()
        assert isinstance(stats, dict)
        assert len(stats["workers"]) == 2
        assert stats["routes"]["/news/{name}"]["hits"] + stats["routes"]["/news/{name}"]["misses"] >= served

        # a purge sent to one worker reaches both (their near caches too)
        assert admin(admin_base, "purge", {"url": "/news/workers"}).status == 200
        assert wait_for(lambda: all(call(f"{base}/news/workers").json()["call"] > 1 for _ in range(1)), 3)  # type: ignore[index]
        first = call(f"{base}/news/workers").json()["call"]  # type: ignore[index]
        seen = {call(f"{base}/news/workers").json()["call"] for _ in range(20)}  # type: ignore[index]
        assert seen == {first}, "a worker still served the purged entry"
    finally:
        sidecar.stop()
