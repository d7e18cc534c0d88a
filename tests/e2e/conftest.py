"""A real Tina4 demo app process with the real sidecar process in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar


@dataclass
class Stack:
    app: ServerProcess
    sidecar: ServerProcess
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Demo app (built-in Tina4 server, TINA4_CACHE_TTL=2 for the class-form route) + sidecar."""
    workdir = tmp_path_factory.mktemp("stack")
    app = start_demo_app(workdir / "app", env={"TINA4_CACHE_TTL": "2"})
    try:
        sidecar = start_sidecar(app.port, workdir)
    except BaseException:
        app.stop()
        raise
    yield Stack(app, sidecar, workdir)
    sidecar.stop()
    app.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session
