"""Which sidecar is running: ``tina4-sidecar --version``, and the line a starting sidecar logs once."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

import tina4_sidecar
from tests.servers.process import free_port

CLI = str(Path(sys.executable).with_name("tina4-sidecar"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_version_prints_the_package_version() -> None:
    done = run("--version")

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"tina4-sidecar {tina4_sidecar.__version__}\n"


def test_version_verbose_names_python_aiohttp_and_uvloop() -> None:
    done = run("--version", "--verbose")

    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[0] == f"tina4-sidecar {tina4_sidecar.__version__}"
    assert lines[1].startswith(f"python {platform.python_version()} (")
    assert f"aiohttp {version('aiohttp')}" in lines
    assert f"uvloop {version('uvloop')}" in lines


def test_no_command_is_a_usage_error() -> None:
    done = run()

    assert done.returncode == 2
    assert "a command is required" in done.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_starting_sidecar_logs_its_versions_once(tmp_path: Path, workers: int) -> None:
    argv = [CLI, "serve", "--upstream", "http://127.0.0.1:1", "--listen", f"127.0.0.1:{free_port()}"]
    argv += ["--workers", str(workers)]
    env = {"PATH": "/usr/bin:/bin", "TINA4_CACHE_DIR": str(tmp_path / "cache")}
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env) as proc:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while sum("listening on" in line for line in lines) < workers:
                assert time.monotonic() < deadline, lines
                line = proc.stderr.readline()
                assert line, lines  # the process ended before it listened
                lines.append(line)
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    starting = [line for line in lines if "tina4-sidecar starting:" in line]
    assert len(starting) == 1, lines  # once per sidecar, not once per worker
    assert f"version={tina4_sidecar.__version__} python={platform.python_version()}" in starting[0]
    assert f"aiohttp={version('aiohttp')}" in starting[0]
