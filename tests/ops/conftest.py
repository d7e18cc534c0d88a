"""Fixtures of the operations tests: the ops Tina4 app, a sidecar process in front of it, and
small HTTP helpers (urllib, so that nothing pools or retries behind the test's back)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.admin.helpers import TOKEN
from tests.servers.demo_app import DemoApp, start_tina4_script
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar, wait_until_cached

OPS_APP = Path(__file__).with_name("ops_app.py")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def call(url: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None,
         timeout: float = 15) -> Reply:  # fmt: skip
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read())


def admin(base: str, name: str, body: object | None = None, method: str | None = None) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return call(f"{base}/__sidecar/{name}", headers, method or ("POST" if data else "GET"), data)


def wait_for(check: object, timeout: float = 10.0, every: float = 0.1) -> object:
    """The first truthy result of ``check()`` within ``timeout`` seconds, else its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


@pytest.fixture(scope="package")
def ops_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApp]:
    app = start_tina4_script(OPS_APP, tmp_path_factory.mktemp("ops-app"))
    try:
        yield app
    finally:
        app.stop()


def sidecar_for(app: DemoApp, workdir: Path, env: dict[str, str | None] | None = None) -> ServerProcess:
    """A sidecar in front of the ops app, ready once /page is cached."""
    server = start_sidecar(app.port, workdir, env={"TINA4_SIDECAR_ADMIN_TOKEN": TOKEN, **(env or {})},
                           wait_for_rules=False)  # fmt: skip
    try:
        wait_until_cached(server.port, "/news/ready")
    except BaseException:
        server.stop()
        raise
    return server
