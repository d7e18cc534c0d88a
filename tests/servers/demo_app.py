"""The Tina4 demo app (examples/demo_app) as a real process, on Tina4's built-in server or uvicorn.

``start_demo_app(workdir)`` returns it started and ready: its cache manifest answers 200, not
just its port open. ``stop()`` then ``start()`` restarts it on the same port. The ``demo_app``
fixture gives a fresh one per test in ``tmp_path``. ``start_tina4_script`` runs any other Tina4
app script the same way.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import pytest

from tests.servers.process import ServerProcess, free_port

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo_app"
MANIFEST_PATH = "/__tina4/cache-manifest"

# What every run needs: no CLI check, no port takeover, no browser, no banner, production mode.
_BASE_ENV = {
    "TINA4_OVERRIDE_CLIENT": "true",
    "TINA4_NO_TAKEOVER": "true",
    "TINA4_NO_BROWSER": "true",
    "TINA4_NO_AI_PORT": "true",
    "TINA4_SUPPRESS": "true",
    "TINA4_DEBUG": "false",
    "TINA4_SECRET": "demo-app-secret-for-tests-only-0123456789abcdef",
    "PYTHONUNBUFFERED": "1",
}


class DemoApp(ServerProcess):
    """A ServerProcess that is ready only once the app answers its cache manifest."""

    def __init__(
        self,
        name: str,
        argv_for_port: Callable[[int], Sequence[str]],
        port: int,
        env: dict[str, str | None],
        cwd: Path,
        manifest_path: str = MANIFEST_PATH,
    ) -> None:
        super().__init__(name, argv_for_port, port=port, env=env, cwd=cwd)
        self.manifest_path = manifest_path

    def start(self) -> DemoApp:
        super().start()
        deadline = time.monotonic() + self._ready_timeout
        url = self.url + self.manifest_path
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if (self.proc is not None and self.proc.poll() is not None) or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} never answered {url}; log:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _builtin_env(port: int, pythonpath: Path) -> dict[str, str | None]:
    # TINA4_DEFAULT_WEBSERVER pins Tina4's own asyncio server: otherwise run() picks uvicorn when
    # it is installed and TINA4_DEBUG is off.
    return {
        **_BASE_ENV,
        "PYTHONPATH": str(pythonpath),
        "TINA4_DEFAULT_WEBSERVER": "true",
        "TINA4_HOST": "127.0.0.1",
        "TINA4_PORT": str(port),
    }


def start_demo_app(
    workdir: Path,
    port: int | None = None,
    mode: Literal["builtin", "uvicorn"] = "builtin",
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> DemoApp:
    """Start the demo app in ``workdir`` (created if missing; Tina4 fills it with src/ data/ ...).

    ``builtin`` runs ``python app.py`` on Tina4's own asyncio server; ``uvicorn`` runs
    ``asgi:app`` with ``workers`` processes. ``env`` is added to the environment (e.g.
    ``TINA4_CACHE_TTL``, or ``DEMO_STEP_ASIDE=false`` to keep Tina4's in-app cache on).
    """
    if mode == "builtin":
        if workers != 1:
            raise ValueError("Tina4's built-in server runs one process; use mode='uvicorn' for workers")
        return start_tina4_script(DEMO_DIR / "app.py", workdir, port, env)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()

    def argv(bound: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi:app",
            "--app-dir",
            str(DEMO_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(bound),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ]

    full_env: dict[str, str | None] = {**_BASE_ENV, "PYTHONPATH": str(DEMO_DIR), **(env or {})}
    return DemoApp("tina4-demo-uvicorn", argv, port, full_env, workdir).start()


def start_tina4_script(
    script: Path,
    workdir: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    manifest_path: str = MANIFEST_PATH,
) -> DemoApp:
    """Run a Tina4 app script (``run()`` at its end) on Tina4's built-in server, in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {**_builtin_env(port, script.parent), **(env or {})}
    argv = [sys.executable, str(script)]
    return DemoApp(f"tina4-{script.stem}", lambda _: argv, port, full_env, workdir, manifest_path).start()


@pytest.fixture
def demo_app(tmp_path: Path) -> Iterator[DemoApp]:
    """A fresh demo app on Tina4's built-in server, in this test's tmp_path."""
    app = start_demo_app(tmp_path / "demo-app")
    try:
        yield app
    finally:
        app.stop()
