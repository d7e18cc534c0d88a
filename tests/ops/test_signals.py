"""Signals sent to real sidecar processes: SIGHUP reloads the rules file and settings (also under
--workers, through the supervisor, which survives it), SIGTERM drains requests in flight on both
transports, and the workers die with a supervisor that is killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.ops.conftest import call, sidecar_for, wait_for
from tests.servers.demo_app import DemoApp

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(line) for line in out.split())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_the_rules_file_and_settings(ops_app: DemoApp, tmp_path: Path, workers: str) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "routes": []}))
    sidecar = sidecar_for(
        ops_app, tmp_path, {"TINA4_SIDECAR_RULES_FILE": str(rules), "TINA4_SIDECAR_WORKERS": workers}
    )
    base = f"http://127.0.0.1:{sidecar.port}"
    assert sidecar.proc is not None
    try:
        assert "X-Cache" not in call(f"{base}/headers").headers
        before = children(sidecar.proc.pid)
        rules.write_text(
            json.dumps({"version": 1, "routes": [{"method": "GET", "path": "/headers", "ttl": 30}]})
        )
        (tmp_path / ".env").write_text("TINA4_SIDECAR_STALE_IF_ERROR=77\nTINA4_SIDECAR_UPSTREAM_TIMEOUT=9\n")
        os.kill(sidecar.proc.pid, signal.SIGHUP)
        reloaded = wait_for(lambda: sidecar.log_text().count("reloaded (SIGHUP)") >= int(workers))
        assert reloaded, sidecar.log_tail()
        # every worker took the new rule (several requests land on both)
        assert all(call(f"{base}/headers").headers.get("X-Cache") for _ in range(8))
        log = sidecar.log_text()
        assert "TINA4_SIDECAR_STALE_IF_ERROR 300 -> 77" in log
        assert "TINA4_SIDECAR_UPSTREAM_TIMEOUT changed: restart the sidecar to apply it" in log
        assert sidecar.proc.poll() is None  # the supervisor (or the one process) lives on
        if workers == "2":
            assert children(sidecar.proc.pid) == before
            assert len(before) == 2
    finally:
        sidecar.stop()


def test_a_killed_supervisor_takes_its_workers_with_it(ops_app: DemoApp, tmp_path: Path) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_WORKERS": "2"})
    assert sidecar.proc is not None
    workers = children(sidecar.proc.pid)
    assert len(workers) == 2
    os.kill(sidecar.proc.pid, signal.SIGKILL)
    sidecar.proc.wait(timeout=5)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 10), "workers outlived the supervisor"
    sidecar.stop()


@pytest.mark.parametrize(("fast_path", "path"), [("true", "/slow?seconds=2"), ("false", "/slow?seconds=2"),
                                                 ("true", "/slow-cached")])  # fmt: skip
def test_sigterm_drains_requests_in_flight(
    ops_app: DemoApp, tmp_path: Path, fast_path: str, path: str
) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_FAST_PATH": fast_path})
    assert sidecar.proc is not None
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(call(f"http://127.0.0.1:{sidecar.port}{path}"))
        except Exception as exc:
            results.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    time.sleep(0.5)  # the request is at the app
    started = time.monotonic()
    os.kill(sidecar.proc.pid, signal.SIGTERM)
    worker.join(10)
    code = sidecar.proc.wait(timeout=10)
    assert len(results) == 1
    reply = results[0]
    assert not isinstance(reply, Exception), f"{reply!r}\n{sidecar.log_tail()}"
    assert reply.status == 200
    assert json.loads(reply.body)["slow"] is True
    assert code == 0
    assert time.monotonic() - started < 8
    assert "draining requests in flight" in sidecar.log_text()
    sidecar.stop()
