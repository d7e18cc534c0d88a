"""Faults injected under load: the store and the app die and come back while ~30 clients verify
every answer (``tests/faults/load.py``).

Store faults (Redis, memcached, each killed with SIGKILL and restarted empty, twice): no 5xx at
all, every request answered, caching resumes on the restarted store (entries appear in it and a
HIT follows). App fault (SIGKILL, restart on the same port): cached routes keep answering (fresh
HITs, and expired 2 s entries through stale-if-error), uncached routes give 502 JSON, and the
sidecar serves the app again once it is back. In every run: zero bodies that do not match their
``X-Body-SHA256`` or the URL/user they were asked for, and every POST reached the app byte for
byte. ``pytest -s`` prints a table per test. The app fault runs on the file store, which this process
shares to purge through it as an app would.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_url

from tests.faults.load import Load, Tally, print_table
from tests.servers import memcached, redis
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

TASKS = 30
STORE_KILLS = 2


def fetch(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request outside the load (status, headers, body); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {within}s")
        await asyncio.sleep(0.1)


def assert_clean(tally: Tally) -> None:
    """No wrong or foreign body, every POST intact, no transport error."""
    assert tally.wrong_bodies == 0, tally.wrong
    assert tally.foreign_bodies == 0, tally.wrong
    assert tally.transport_errors == 0, tally.wrong
    assert tally.ok_by_kind["echo"] > 0
    assert tally.ok_by_kind["user"] > 0


SWITCHED_BACK = "answers again; switched back from the file store"


async def store_fault_run(
    backend: Backend,
    url: str,
    kill: Callable[[], None],
    restart: Callable[[], None],
    items: Callable[[], int] | None,
    tmp_path: Path,
) -> Tally:
    """Load against a sidecar on ``backend``; the store killed and restarted STORE_KILLS times.

    Recovery means: the sidecar logs that it switched back to the store, entries appear in it
    (``items``, when the store restarts empty), and a HIT is served after that.
    """
    app = start_demo_app(tmp_path / "app")
    sidecar: ServerProcess | None = None
    try:
        env: dict[str, str | None] = {
            "TINA4_CACHE_BACKEND": backend.value,
            "TINA4_CACHE_URL": url,
            "TINA4_CACHE_PROBE_INTERVAL": "0.5",
            "TINA4_SIDECAR_LOG_LEVEL": "info",
        }
        sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
        log_path = sidecar.log_path
        settings = CacheSettings(
            cache_backend=backend,
            cache_url=url,
            cache_dir=tmp_path / "purger-cache",
            cache_probe_interval=0.5,
        )
        store = await open_store(settings, "resp")
        try:
            async with Load(f"http://127.0.0.1:{sidecar.port}", TASKS, lambda p: purge_url(store, p)) as load:
                await wait_for(lambda: load.tally.x_cache["HIT"] > 50, 15, "HITs before the fault")
                for round_ in range(1, STORE_KILLS + 1):
                    kill()
                    await asyncio.sleep(3)
                    sent_before = load.tally.sent
                    await asyncio.to_thread(restart)
                    assert load.tally.sent > sent_before  # answered all the while
                    await wait_for(
                        lambda n=round_: log_path.read_text(errors="replace").count(SWITCHED_BACK) >= n,
                        20,
                        f"the sidecar back on {backend.value}",
                    )
                    if items is not None:
                        await wait_for(lambda: items() > 0, 15, f"entries in the restarted {backend.value}")
                    recovered = time.monotonic()
                    await wait_for(lambda t=recovered: load.tally.last_hit > t, 15, "a HIT after recovery")
                    await asyncio.sleep(1)
                await load.stop()
        finally:
            await store.close()
        assert "Traceback" not in sidecar.log_tail(400)
        return load.tally
    finally:
        if sidecar is not None:
            sidecar.stop()
        app.stop()


def check_store_run(title: str, tally: Tally) -> None:
    print_table(title, [(title, tally, STORE_KILLS)])
    assert tally.five_xx == 0, tally.wrong
    assert_clean(tally)
    assert tally.purges > 0


async def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    with redis.serving(redis.redis_server()) as server:
        raw = redis.raw_client(server)

        def items() -> int:
            try:
                return int(raw.dbsize())
            except Exception:
                return 0

        url = redis.server_url(server)
        tally = await store_fault_run(
            Backend.REDIS, url, lambda: memcached.kill(server), server.start, items, tmp_path
        )
    check_store_run("redis killed + restarted", tally)


async def test_memcached_killed_and_restarted_under_load(tmp_path: Path) -> None:
    with memcached.serving(memcached.memcached_server()) as (server,):

        def items() -> int:
            try:
                client = memcached.raw_client(server)
                try:
                    return int(client.stats()[b"curr_items"])
                finally:
                    client.close()
            except Exception:
                return 0

        url = memcached.server_url(server)
        tally = await store_fault_run(
            Backend.MEMCACHED, url, lambda: memcached.kill(server), server.start, items, tmp_path
        )
    check_store_run("memcached killed + restarted", tally)


async def test_app_killed_and_restarted_under_load(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    sidecar: ServerProcess | None = None
    try:
        # The file store: shared with this process, which purges through it like an app would.
        env: dict[str, str | None] = {"TINA4_CACHE_BACKEND": "file", "TINA4_SIDECAR_LOG_LEVEL": "info"}
        sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
        base = f"http://127.0.0.1:{sidecar.port}"
        settings = CacheSettings(cache_backend=Backend.FILE, cache_dir=tmp_path / "sidecar" / "cache")
        store = await open_store(settings, "resp")
        async with Load(base, TASKS, lambda p: purge_url(store, p)) as load:
            tally = load.tally
            await wait_for(
                lambda: tally.ok_by_kind["short"] > 20 and tally.x_cache["HIT"] > 50, 15, "warm-up"
            )
            await asyncio.sleep(2.5)  # every short entry has been stored at least once by now

            load.app_may_be_down = True
            memcached.kill(app)  # SIGKILL, as a crash
            ok_before = dict(tally.ok_by_kind)
            failed_before = dict(tally.failed_by_kind)
            await asyncio.sleep(4)  # past the 2 s TTL: short entries now answer through stale-if-error
            status, headers, body = await asyncio.to_thread(fetch, f"{base}/api/echo", b"down")
            assert status == 502
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["error"] == "upstream unavailable"
            status, headers, body = await asyncio.to_thread(fetch, f"{base}/api/checked-short/short0")
            assert status == 200, body
            ok_down = {kind: tally.ok_by_kind[kind] - ok_before.get(kind, 0) for kind in ("hot", "short")}
            failed_down = {
                kind: tally.failed_by_kind[kind] - failed_before.get(kind, 0) for kind in ("hot", "short")
            }

            await asyncio.to_thread(app.start)
            await wait_for(
                lambda: fetch(f"{base}/api/checked/back{time.monotonic_ns()}")[0] == 200, 15, "app back"
            )
            await asyncio.sleep(1)  # requests refused just before the restart have been answered
            load.app_may_be_down = False
            echo_ok = tally.ok_by_kind["echo"]
            fresh_ok = tally.ok_by_kind["fresh"]
            await asyncio.sleep(3)
            await load.stop()
        await store.close()
        print_table("app killed + restarted", [("app killed + restarted", tally, 1)])
        assert ok_down["hot"] > 0, ok_down
        assert ok_down["short"] > 0, ok_down
        assert failed_down == {"hot": 0, "short": 0}, (failed_down, tally.wrong)
        assert tally.expected_502 > 0  # fresh URLs and POSTs while the app was down
        assert tally.unexpected_5xx == 0, tally.wrong
        assert tally.ok_by_kind["echo"] > echo_ok
        assert tally.ok_by_kind["fresh"] > fresh_ok
        assert_clean(tally)
        assert tally.purges > 0
        assert "Traceback" not in sidecar.log_tail(400)
    finally:
        if sidecar is not None:
            sidecar.stop()
        app.stop()
