"""``--workers 2``: two processes share the port, share the cache through the store, and stop
together when the supervisor is told to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.servers.demo_app import start_demo_app
from tests.servers.sidecar import start_sidecar

TOKEN = "w" * 24


def fetch(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Connection": "close", **headers})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return dict(reply.headers), reply.read()


def test_two_workers_share_the_port_and_the_store(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    env: dict[str, str | None] = {
        "TINA4_SIDECAR_WORKERS": "2",
        "TINA4_CACHE_BACKEND": "file",
        "TINA4_SIDECAR_ADMIN_TOKEN": TOKEN,
    }
    sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
    assert sidecar.proc is not None
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        pids = set()
        for _ in range(60):  # new connections are spread over both workers by the kernel
            _headers, body = fetch(f"{base}/__sidecar/stats", Authorization=f"Bearer {TOKEN}")
            pids.add(json.loads(body)["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert sidecar.proc.pid not in pids  # the supervisor serves nothing itself

        first, body = fetch(f"{base}/api/products?t=workers")
        assert first["X-Cache"] == "MISS"
        later = [fetch(f"{base}/api/products?t=workers") for _ in range(10)]
        assert all(h["X-Cache"] == "HIT" and b == body for h, b in later)  # whichever worker answers

        os.kill(sidecar.proc.pid, signal.SIGTERM)  # the supervisor alone: it must stop its workers
        sidecar.proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        sidecar.stop()
        app.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose once its parent reaped it.
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(state.strip()) and not state.strip().startswith("Z")
