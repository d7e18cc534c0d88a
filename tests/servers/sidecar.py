"""Starting the real sidecar (``tina4-sidecar serve``) as a process for end-to-end tests."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers.process import ServerProcess

SIDECAR_BIN = Path(sys.executable).with_name("tina4-sidecar")


def start_sidecar(
    upstream_port: int,
    workdir: Path,
    env: dict[str, str | None] | None = None,
    port: int | None = None,
    wait_for_rules: bool = True,
) -> ServerProcess:
    """A started sidecar in front of ``127.0.0.1:upstream_port``; memory store unless ``env`` says."""
    workdir.mkdir(parents=True, exist_ok=True)
    base_env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("TINA4_")}
    base_env |= {
        "TINA4_SIDECAR_UPSTREAM": f"http://127.0.0.1:{upstream_port}",
        "TINA4_SIDECAR_MANIFEST_REFRESH": "1",
        "TINA4_SIDECAR_LOG_LEVEL": "debug",
        "TINA4_CACHE_DIR": str(workdir / "cache"),
        **(env or {}),
    }
    server = ServerProcess(
        "sidecar",
        lambda p: [str(SIDECAR_BIN), "serve", "--listen", f"127.0.0.1:{p}"],
        port=port,
        env=base_env,
        cwd=workdir,
    )
    server.start()
    if wait_for_rules:
        try:
            wait_until_cached(server.port, "/api/products")
        except BaseException:
            server.stop()  # never leave a sidecar behind when the test cannot use it
            raise
    return server


def wait_until_cached(port: int, path: str, timeout: float = 15.0) -> None:
    """Block until the sidecar has loaded the manifest (the route answers with X-Cache)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                if response.headers.get("X-Cache"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the sidecar on port {port} never cached {path}")
