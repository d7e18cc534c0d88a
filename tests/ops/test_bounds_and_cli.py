"""The file store's size bounds on a real directory, a flag for every setting, and IPv6 listen
addresses on a real sidecar process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.conftest import call
from tests.servers.demo_app import DemoApp
from tests.servers.process import ServerProcess, free_port
from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.proxy.cli_flags import flag
from tina4_sidecar.store.backends import file_bounds
from tina4_sidecar.store.backends.file import FileStore

CLI = [sys.executable, "-m", "tina4_sidecar.proxy.cli"]


def files(store: FileStore) -> list[Path]:
    return [p for p in store.directory.rglob("*") if p.is_file() and len(p.name) == 64]


async def test_the_file_store_keeps_to_max_entries_and_max_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tina4_sidecar.store.backends.file.CHECK_SECONDS", 0.05)
    settings = CacheSettings(
        cache_backend="file", cache_dir=tmp_path, cache_max_entries=5, cache_max_bytes=1024 * 1024
    )
    store = FileStore.from_settings(settings, "resp")
    await store.open()
    try:
        for number in range(40):
            assert await store.set(f"k{number}", b"v" * 100, 0)
        await asyncio.sleep(0.3)
        assert len(files(store)) <= 5
        assert await store.get("k39") == b"v" * 100  # the newest stay, the oldest went
        assert await store.get("k0") is None
        for number in range(12):  # 12 x 200 KiB = 2.4 MiB against 1 MiB
            await store.set(f"big{number}", b"b" * 200 * 1024, 0)
            await asyncio.sleep(0.06)
        await asyncio.sleep(0.3)
        assert sum(p.stat().st_size for p in files(store)) <= 1024 * 1024
    finally:
        await store.close()
    assert file_bounds.enforce(tmp_path / "missing", file_bounds.Bounds(1, 1024)) == 0


def test_every_setting_has_a_serve_flag() -> None:
    help_text = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, env={"COLUMNS": "200"}
    ).stdout
    for cls in (SidecarSettings, CacheSettings):
        for field in cls.model_fields:
            assert flag(field) in help_text, field
    assert "--honor-cache-control" in help_text
    assert "--backend" in help_text
    bad = subprocess.run([*CLI, "serve", "--drain-timeout", "soon"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "TINA4_SIDECAR_DRAIN_TIMEOUT" in bad.stderr
    bare = subprocess.run([*CLI, "serve", "--listen", "::1:7145"], capture_output=True, text=True)
    assert bare.returncode == 2
    assert "[::1]:7145" in bare.stderr


@pytest.mark.e2e
def test_ipv6_listen_address(ops_app: DemoApp, tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        "sidecar-ipv6",
        lambda p: [
            *CLI,
            "serve",
            "--listen",
            f"[::1]:{p}",
            "--upstream",
            f"http://127.0.0.1:{ops_app.port}",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        port=port,
        cwd=tmp_path,
    )
    try:
        server.start_ipv6 = True  # type: ignore[attr-defined]
        import socket
        import time

        deadline = time.monotonic() + 15
        assert server._argv_for_port
        argv = list(server._argv_for_port(port))
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("::1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            reply = call(f"http://[::1]:{port}/__sidecar/health")
            assert reply.status == 200
        finally:
            proc.terminate()
            out = proc.communicate(timeout=10)[0].decode()
        assert f"listening on http://[::1]:{port} " in out
    finally:
        server.stop()
