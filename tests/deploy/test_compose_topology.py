"""docker-compose.yml's topology run as plain processes: same commands, same environments.

No Docker engine is needed. The compose file is read through the real Compose binary, so what
the test runs is what ``docker compose up`` would configure: redis-server with the redis
service's command, the demo app under uvicorn with the app service's command (Tina4's ``asgi()``
app, its worker count) and environment, and the sidecar with the sidecar service's environment.
The service names that the containers reach each other by (``redis:6379``, ``app:7146``) become
127.0.0.1 and free ports. Then the README's promise: ``curl -i :7145/api/products`` answers MISS,
then HIT, out of Redis; and every service's healthcheck command passes against its process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from tests.deploy.deploy_files import (
    APP_DOCKERFILE,
    SIDECAR_DOCKERFILE,
    load_compose,
    option,
    parse_dockerfile,
    service,
    service_env,
)
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess, free_port, require_binary
from tests.servers.redis import DataServer, raw_client, redis_binary, serving
from tests.servers.sidecar import start_sidecar, wait_until_cached

pytestmark = pytest.mark.e2e

REDIS_PORT = 6379
"""The port the redis image listens on inside the compose network."""

WARM_UP_PATH = "/api/products/1"
"""A cached route other than /api/products, to wait on until the sidecar has its rules."""


@dataclass
class Topology:
    compose: dict[str, Any]
    redis: DataServer
    app: DemoApp
    sidecar: ServerProcess
    app_container_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}"


def start_redis(command: Sequence[str]) -> DataServer:
    """The redis service's command on redis-server, on loopback and a free port."""
    assert command[0] == "redis-server", command
    assert "--port" not in command, "the test maps the redis image's default port only"
    workdir = tempfile.mkdtemp(prefix="compose-redis-")
    binary = redis_binary()

    def argv(port: int) -> list[str]:
        return [binary, *command[1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir]

    return DataServer("compose-redis", argv, workdir)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    compose = load_compose()
    names = sorted(compose["services"])
    app_service = service(compose, "app")
    command = list(app_service["command"])
    assert command[:2] == ["uvicorn", "asgi:app"], command
    app_container_port = int(option(command, "--port"))
    workers = int(option(command, "--workers"))
    workdir = tmp_path_factory.mktemp("compose")
    with serving(start_redis(service(compose, "redis")["command"])) as redis:
        assert isinstance(redis, DataServer)
        app_port = free_port()
        addresses = {f"redis:{REDIS_PORT}": redis.port, f"app:{app_container_port}": app_port}
        app_image = parse_dockerfile(APP_DOCKERFILE)[-1].env()
        app_env = service_env(app_service, app_image, addresses, names)
        app = start_demo_app(workdir / "app", port=app_port, mode="uvicorn", workers=workers, env=app_env)
        try:
            sidecar_image = parse_dockerfile(SIDECAR_DOCKERFILE)[-1].env()
            sidecar_env = service_env(service(compose, "sidecar"), sidecar_image, addresses, names)
            assert sidecar_env["TINA4_SIDECAR_UPSTREAM"] == app.url
            sidecar = start_sidecar(
                app.port, workdir / "sidecar", env=dict(sidecar_env), wait_for_rules=False
            )
            try:
                wait_until_cached(sidecar.port, WARM_UP_PATH)
                yield Topology(compose, redis, app, sidecar, app_container_port)
            finally:
                sidecar.stop()
        finally:
            app.stop()


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes


def get(url: str) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return Answer(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers, exc.read())


def test_products_miss_then_hit_out_of_redis(topology: Topology) -> None:
    first = get(topology.url + "/api/products")
    second = get(topology.url + "/api/products")

    assert first.status == 200, first.body
    assert first.headers["X-Cache"] == "MISS", dict(first.headers)
    assert second.status == 200
    assert second.headers["X-Cache"] == "HIT", dict(second.headers)
    assert second.body == first.body  # generated_at included: the handler did not run again
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert first.headers["Content-Type"].startswith("application/json")
    assert "products" in json.loads(first.body)
    stored = [
        key.decode()
        for key in raw_client(topology.redis).scan_iter(match="*:resp:*", count=1000)
        if key.decode().endswith("/api/products")
    ]
    assert stored, "the sidecar did not store /api/products in Redis (did it fall back to files?)"


def test_sidecar_is_ready_with_redis_and_the_app(topology: Topology) -> None:
    answer = get(topology.url + "/__sidecar/ready")

    assert answer.status == 200, answer.body
    body = json.loads(answer.body)
    assert (body["status"], body["store"], body["app"], body["rules"]) == ("ok", "ok", "ok", "loaded")


def run_check(argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, env=env, check=False)


def healthcheck_argv(topology: Topology, name: str) -> list[str]:
    """The service's healthcheck test as a local command line, pointed at the test's ports."""
    test = list(service(topology.compose, name)["healthcheck"]["test"])
    assert test[0] == "CMD", f"{name}: healthcheck in exec form expected, got {test}"
    argv = test[1:]
    if name == "redis":
        cli = shutil.which("redis-cli") or require_binary("redis-cli", "apt-get install redis-tools")
        return [cli, "-p", str(topology.redis.port), *argv[1:]]
    assert argv[0] == "python", argv
    argv[0] = sys.executable
    if name == "app":
        inside = f"127.0.0.1:{topology.app_container_port}"
        assert inside in argv[-1], argv
        argv[-1] = argv[-1].replace(inside, f"127.0.0.1:{topology.app.port}")
    return argv


def sidecar_env(topology: Topology) -> dict[str, str]:
    """The sidecar's check runs in the sidecar's environment, where LISTEN says its port."""
    return {"PATH": "/usr/bin:/bin", "TINA4_SIDECAR_LISTEN": f"0.0.0.0:{topology.sidecar.port}"}


def wait_for_status(argv: Sequence[str], env: dict[str, str], healthy: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = run_check(argv, env)
        if (done.returncode == 0) == healthy:
            return
        if time.monotonic() > deadline:
            state = "healthy" if healthy else "unhealthy"
            raise AssertionError(f"never {state}: {argv}\n{done.stdout}{done.stderr}")
        time.sleep(0.3)


def test_every_healthcheck_passes_and_the_sidecar_follows_the_app(topology: Topology) -> None:
    for name in ("redis", "app"):
        done = run_check(healthcheck_argv(topology, name))
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    sidecar_check = healthcheck_argv(topology, "sidecar")
    image_check = [sys.executable, *parse_dockerfile(SIDECAR_DOCKERFILE)[-1].healthcheck()[1][1:]]
    for argv in (sidecar_check, image_check):
        done = run_check(argv, sidecar_env(topology))
        assert done.returncode == 0, f"sidecar: {done.stdout}{done.stderr}"

    get(topology.url + WARM_UP_PATH)
    topology.app.stop()
    try:
        # The app down: the sidecar stays healthy (Docker keeps it, a load balancer keeps sending
        # to it) because it still serves the cache; its ready body says the app is down.
        ready = wait_for_ready_body(topology, lambda body: body["app"] == "failed")
        assert ready["status"] == "ok", ready
        for argv in (sidecar_check, image_check):
            done = run_check(argv, sidecar_env(topology))
            assert done.returncode == 0, f"sidecar with the app down: {done.stdout}{done.stderr}"
        assert get(topology.url + WARM_UP_PATH).headers["X-Cache"] == "HIT"
    finally:
        topology.app.start()
    wait_for_ready_body(topology, lambda body: body["app"] == "ok")
    wait_for_status(sidecar_check, sidecar_env(topology), healthy=True)


def wait_for_ready_body(topology: Topology, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The sidecar's ``ready`` body once ``wanted`` holds for it (it checks the app in the background)."""
    deadline = time.monotonic() + 20
    while True:
        reply = get(f"{topology.url}/__sidecar/ready")
        body = json.loads(reply.body)
        if wanted(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.3)
