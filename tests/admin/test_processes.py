"""The admin API of a real ``tina4-sidecar serve`` in front of the real demo app: the separate admin
listener, readiness that follows the app going away and coming back, and the ``stats`` and
``purge`` commands run as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.admin.conftest import Stack
from tests.admin.helpers import TOKEN, Answer, admin_call, run_cli, x_cache
from tests.servers.demo_app import DemoApp
from tests.servers.process import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def wait_for_ready(http: aiohttp.ClientSession, stack: Stack, status: int) -> Answer:
    """The sidecar's ready answer once it is ``status``, or the last one after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        answer = await admin_call(http, stack.url, "ready")
        if answer.status == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.1)


async def test_the_admin_listener_needs_no_token(stack: Stack, http: aiohttp.ClientSession) -> None:
    stats = await admin_call(http, stack.admin_url, "stats")
    assert stats.status == 200
    assert stats.body["manifest"]["rules"] > 0
    metrics = await admin_call(http, stack.admin_url, "metrics")
    assert metrics.status == 200
    assert "tina4_sidecar_requests_total" in metrics.body
    assert (await admin_call(http, stack.admin_url, "health")).status == 200
    async with http.get(f"{stack.admin_url}/api/products") as outside:  # nothing else, no forwarding
        assert outside.status == 404
        assert "only the admin API" in (await outside.json())["error"]
    # The public listener still wants the token.
    assert (await admin_call(http, stack.url, "stats")).status == 401
    assert (await admin_call(http, stack.url, "stats", token=TOKEN)).status == 200


def crash(app: DemoApp) -> None:
    """Kill the app at once: a graceful stop waits ~10 s for the sidecar's keep-alive connections."""
    assert app.proc is not None
    os.killpg(app.proc.pid, signal.SIGKILL)
    app.proc.wait(timeout=10)


async def wait_for_app(http: aiohttp.ClientSession, stack: Stack, state: str) -> Answer:
    """The ready answer once it reports the app ``state``, or the last one after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        answer = await admin_call(http, stack.url, "ready")
        if answer.body.get("app") == state or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.1)


async def test_ready_reports_the_app_and_stays_ready_while_it_is_down(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """Readiness means the sidecar can serve: with the app down it still serves stale content, so a
    load balancer must keep it. The app's state is in the body (and tina4_sidecar_app_up)."""
    up = await wait_for_ready(http, stack, 200)
    assert {name: up.body[name] for name in ("status", "listening", "rules", "store", "app")} == {
        "status": "ok", "listening": True, "rules": "loaded", "store": "ok", "app": "ok"
    }  # fmt: skip
    await x_cache(http, f"{stack.url}/api/products")
    crash(stack.app)
    try:
        down = await wait_for_app(http, stack, "failed")
        assert (down.status, down.body["status"], down.body["app"]) == (200, "ok", "failed")
        metrics = await admin_call(http, stack.admin_url, "metrics")
        assert "tina4_sidecar_app_up 0.0" in metrics.body
        assert (await admin_call(http, stack.url, "health")).status == 200  # alive all the same
    finally:
        stack.app.start()
    up = await wait_for_app(http, stack, "ok")
    assert (up.status, up.body["app"]) == (200, "ok")


async def test_cli_stats_table_and_json(stack: Stack, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    await x_cache(http, f"{stack.url}/api/products")
    assert await x_cache(http, f"{stack.url}/api/products") == "HIT"
    table = run_cli("stats", "--admin", stack.url, "--token", TOKEN, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "hit rate" in table.stdout
    assert "/api/products" in table.stdout
    assert "backend         memory" in table.stdout

    as_json = run_cli(
        "stats", "--json", "--admin", stack.url, cwd=tmp_path, env={"TINA4_SIDECAR_ADMIN_TOKEN": TOKEN}
    )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["hits"] >= 1
    assert document["routes"]["/api/products"]["hits"] >= 1

    # No --admin, no token: the admin listener named in the settings.
    listener = run_cli(
        "stats", "--json", cwd=tmp_path, env={"TINA4_SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{stack.admin_port}"}
    )
    assert listener.returncode == 0, listener.stderr
    assert json.loads(listener.stdout)["backend"] == "memory"


async def test_cli_purge(stack: Stack, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    products, product = f"{stack.url}/api/products", f"{stack.url}/api/products/1"
    for url in (products, product):
        await x_cache(http, url)
        assert await x_cache(http, url) == "HIT"
    env = {"TINA4_SIDECAR_ADMIN_TOKEN": TOKEN}
    purged = run_cli("purge", "--url", "/api/products", "--admin", stack.url, cwd=tmp_path, env=env)
    assert (purged.returncode, purged.stdout.splitlines()) == (
        0, ["purged url /api/products", "every variant of /api/products (any host): gone"]
    ), purged.stderr  # fmt: skip
    assert [await x_cache(http, products), await x_cache(http, product)] == ["MISS", "HIT"]

    purged = run_cli("purge", "--all", "--admin", f"http://127.0.0.1:{stack.admin_port}", cwd=tmp_path)
    assert (purged.returncode, purged.stdout.splitlines()[0]) == (0, "purged everything"), purged.stderr
    assert [await x_cache(http, products), await x_cache(http, product)] == ["MISS", "MISS"]


def test_cli_errors_are_one_line(stack: Stack, tmp_path: Path) -> None:
    wrong = run_cli("stats", "--admin", stack.url, "--token", TOKEN + "-wrong", cwd=tmp_path)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        f"tina4-sidecar: {stack.url}/__sidecar/stats refused the admin token (401): "
        "check TINA4_SIDECAR_ADMIN_TOKEN or --token"
    ]
    missing = run_cli("purge", "--all", "--admin", stack.url, cwd=tmp_path)
    assert missing.returncode == 1
    assert "needs the admin token" in missing.stderr

    refused = run_cli("stats", "--admin", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "connection refused" in refused.stderr

    bad_url = run_cli("purge", "--all", "--admin", "ftp://somewhere", cwd=tmp_path)
    assert bad_url.returncode == 2
    assert bad_url.stderr.startswith("tina4-sidecar: configuration error: --admin")
    bad_prefix = run_cli("stats", cwd=tmp_path, env={"TINA4_SIDECAR_ADMIN_PREFIX": "sidecar"})
    assert bad_prefix.returncode == 2
    assert "TINA4_SIDECAR_ADMIN_PREFIX" in bad_prefix.stderr
    assert "Traceback" not in bad_url.stderr + bad_prefix.stderr + refused.stderr + wrong.stderr


def test_serve_refuses_a_short_token_without_printing_it(tmp_path: Path) -> None:
    served = run_cli(
        "serve",
        "--listen",
        f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
        env={"TINA4_SIDECAR_ADMIN_TOKEN": "short-secret"},
    )
    assert served.returncode == 2
    assert "TINA4_SIDECAR_ADMIN_TOKEN: must be at least 16 characters" in served.stderr
    assert "short-secret" not in served.stderr + served.stdout
