"""docs/operations.md is true: each curl example runs against a real sidecar in front of a real
Tina4 app and succeeds, every metric in its table exists in a real scrape (prometheus-client's
parser), and the Grafana dashboard is valid JSON whose queries name only those metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.admin.helpers import TOKEN
from tests.ops.conftest import admin, call, sidecar_for
from tests.servers.demo_app import DemoApp

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = (DOCS / "operations.md").read_text()


def test_every_example_and_metric_in_the_doc(ops_app: DemoApp, tmp_path: Path) -> None:
    sidecar = sidecar_for(ops_app, tmp_path)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        call(base + "/news/doc")
        call(base + "/news/doc")
        admin(base, "purge", {"prefix": "/news/"})
        curls = [line for line in re.findall(r"^curl .*$", DOC, re.M)]
        assert len(curls) >= 6
        for line in curls:
            call(base + "/news/doc")  # something to purge or inspect before each example
            command = (
                line.replace("$SIDECAR", base).replace("$TOKEN", TOKEN).replace("/api/products", "/news/doc")
            )
            done = subprocess.run(["bash", "-c", command + " -o /dev/null -w '%{http_code}'"],
                                  capture_output=True, text=True, timeout=20)  # fmt: skip
            assert done.stdout in ("200",), (line, done.stdout, done.stderr)
        scraped = {
            sample.name
            for family in text_string_to_metric_families(admin(base, "metrics").body.decode())
            for sample in family.samples
        }
        names = set(re.findall(r"^\| `(tina4_sidecar_\w+)`", DOC, re.M))
        assert len(names) >= 20
        for name in names:
            assert any(sample == name or sample.startswith(name + "_") for sample in scraped), name
        dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for used in re.findall(r"tina4_sidecar_\w+", panel["targets"][0]["expr"]):
                assert any(sample == used for sample in scraped) or used.removesuffix("_bucket") in names, (
                    used
                )
    finally:
        sidecar.stop()
