"""Fixtures of the admin API's tests: in-process sidecars and a real app + sidecar process pair.

``make_proxy`` and ``client_session`` are the proxy tests' fixtures; admin settings go through
``make_proxy(rules, routes, admin_token=TOKEN, ...)``. ``stack`` is the demo app behind a real
``tina4-sidecar serve`` with the admin token and a separate admin listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.admin.helpers import TOKEN
from tests.proxy.conftest import client_session, make_proxy  # noqa: F401  (fixtures used here)
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess, free_port
from tests.servers.sidecar import start_sidecar


@dataclass
class Stack:
    app: DemoApp
    sidecar: ServerProcess
    admin_port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("admin-stack")
    app = start_demo_app(workdir / "app")
    admin_port = free_port()
    env: dict[str, str | None] = {
        "TINA4_SIDECAR_ADMIN_TOKEN": TOKEN,
        "TINA4_SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
    }
    try:
        sidecar = start_sidecar(app.port, workdir, env=env)
    except BaseException:
        app.stop()
        raise
    yield Stack(app, sidecar, admin_port, workdir)
    sidecar.stop()
    app.stop()
