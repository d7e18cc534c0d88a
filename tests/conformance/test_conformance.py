"""The RFC 9111 conformance suite (http-tests/cache-tests) against a real sidecar in standards mode.

``run.sh`` copies the suite, runs its origin server and a sidecar in front of it (memory store,
no rules, TINA4_SIDECAR_HONOR_CACHE_CONTROL=true) and the suite's client; this checks the scores
the way cache-tests.fyi counts them (a test passes only with every test it depends on). About a
minute. The floor is the issue's goal, kept below today's 155/82 so a change of the suite's own
timing (it pauses seconds between requests) does not fail it by chance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conformance.score import load_results, load_tests, score
from tests.servers.process import in_ci

HERE = Path(__file__).resolve().parent
SUITE = Path(os.environ.get("CACHE_TESTS_DIR", str(HERE.parents[2] / "shared" / "cache-tests")))
REQUIRED_FLOOR = 140
OPTIONAL_FLOOR = 70

pytestmark = pytest.mark.timeout(900)


def needs(condition: bool, what: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(f"{what} (required under CI=true)")
        pytest.skip(what)


def test_standards_mode_passes_the_conformance_suite(tmp_path: Path) -> None:
    needs(shutil.which("node") is not None and shutil.which("npm") is not None, "node and npm are missing")
    needs((SUITE / "tests" / "index.mjs").is_file(), f"no cache-tests suite at {SUITE} (CACHE_TESTS_DIR)")
    out = tmp_path / "results.json"
    env = {**os.environ, "CACHE_TESTS_DIR": str(SUITE), "HONOR": "true"}

    done = subprocess.run(
        ["bash", str(HERE / "run.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=840,
        env=env,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = load_tests(SUITE)
    scored = score(tests, load_results(out), "sidecar", "rev-proxy")
    required, required_total, _ = scored.count(tests, "required")
    optional, optional_total, _ = scored.count(tests, "optimal")
    print(f"\nconformance: required {required}/{required_total}, optional {optional}/{optional_total}")
    assert required >= REQUIRED_FLOOR
    assert optional >= OPTIONAL_FLOOR
