"""Starting up: an unusable TINA4_CACHE_DIR is a one-line configuration error (exit 2, as every
other), also under --workers; and two demos (examples/run_demo.sh) run side by side, each in a
folder of its own that goes when it stops. Real processes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.servers.process import ServerProcess, free_port
from tests.servers.sidecar import SIDECAR_BIN, wait_until_cached

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TINA4_ setting, plus ``extra``."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TINA4_")} | extra


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_an_unusable_cache_dir_is_a_one_line_configuration_error(
    tmp_path: Path, where: str, workers: str
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")
    cache_dir = blocker if where == "a-file" else blocker / "cache"
    env = clean_env(
        TINA4_CACHE_BACKEND="file",
        TINA4_CACHE_DIR=str(cache_dir),
        TINA4_SIDECAR_UPSTREAM=f"http://127.0.0.1:{free_port()}",
        TINA4_SIDECAR_WORKERS=workers,
    )
    done = subprocess.run(
        [str(SIDECAR_BIN), "serve", "--listen", f"127.0.0.1:{free_port()}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("tina4-sidecar: configuration error: TINA4_CACHE_DIR: the file store cannot use ")
    assert str(cache_dir) in line


def test_two_demos_run_side_by_side_each_in_its_own_folder(tmp_path: Path) -> None:
    demos = []
    try:
        for _ in range(2):
            app_port, sidecar_port = free_port(), free_port()
            env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("TINA4_")}
            env |= {
                "DEMO_APP_PORT": str(app_port),
                "DEMO_SIDECAR_PORT": str(sidecar_port),
                "TMPDIR": str(tmp_path),
            }
            demo = ServerProcess(
                "demo", lambda _: ["bash", str(REPO / "examples" / "run_demo.sh")], port=sidecar_port,
                env=env, cwd=REPO, ready_timeout=60,
            )  # fmt: skip
            demos.append(demo)
            demo.start()
            wait_until_cached(sidecar_port, "/api/products")
        folders = [Path(re.findall(r"\(log: (.+)/app\.log\)", demo.log_text())[0]) for demo in demos]
        assert folders[0] != folders[1]
        assert all(folder.parent == tmp_path and folder.is_dir() for folder in folders)
        assert all((folder / "app.log").is_file() for folder in folders)
    finally:
        for demo in demos:
            demo.stop()
    assert [path for path in tmp_path.iterdir() if path.name.startswith("tina4-sidecar-demo")] == []
