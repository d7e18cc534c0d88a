"""The bridge between app code and the stores: configuration errors, reset, forks, cancellation,
the file store standing in for a network store that is down."""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
import warnings

import pytest

from tests.client.conftest import KvBackend, unique_namespace
from tests.servers.process import free_port
from tina4_sidecar.client import acache_get, cache_get, cache_set, cache_stats, runtime
from tina4_sidecar.config import ConfigError


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("TINA4_CACHE_BACKEND", "redsi", "TINA4_CACHE_BACKEND"),
        ("TINA4_CACHE_TTL", "-5", "TINA4_CACHE_TTL"),
        ("TINA4_CACHE_NAMESPACE", "app:kv", "TINA4_CACHE_NAMESPACE"),
    ],
)
def test_a_bad_setting_raises_a_one_line_config_error(
    memory_backend: KvBackend, monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    runtime.reset()
    began = time.monotonic()
    with pytest.raises(ConfigError, match=named) as raised:
        cache_get("k")
    assert time.monotonic() - began < 2
    assert "\n" not in str(raised.value)
    monkeypatch.delenv(name)
    runtime.reset()
    assert cache_set("k", 1) is True  # fixed and re-read: works


def test_a_malformed_url_raises_a_config_error_naming_the_variable(
    memory_backend: KvBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "redis")
    monkeypatch.setenv("TINA4_CACHE_URL", "http://127.0.0.1:6379")
    runtime.reset()
    with pytest.raises(ConfigError, match=r"^TINA4_CACHE_URL: .*redis://"):
        cache_set("k", 1)


async def test_config_errors_reach_async_callers_too(
    memory_backend: KvBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "nope")
    runtime.reset()
    with pytest.raises(ConfigError, match="TINA4_CACHE_BACKEND"):
        await acache_get("k")


def test_an_unreachable_network_store_falls_back_to_the_file_store(
    memory_backend: KvBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "redis")
    monkeypatch.setenv("TINA4_CACHE_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("TINA4_CACHE_TIMEOUT", "0.3")
    runtime.reset()
    assert cache_set("k", {"v": 1}) is True
    assert cache_get("k") == {"v": 1}
    assert cache_stats() == {"hits": 1, "misses": 0, "size": 1, "backend": "file"}


def test_reset_rereads_the_environment(kv_backend: KvBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_set("k", "first namespace")
    monkeypatch.setenv("TINA4_CACHE_NAMESPACE", unique_namespace())
    runtime.reset()
    assert cache_get("k") is None
    assert cache_stats()["misses"] == 1
    monkeypatch.setenv("TINA4_CACHE_NAMESPACE", kv_backend.namespace)
    runtime.reset()
    assert cache_stats() == {"hits": 0, "misses": 0, "size": 1, "backend": kv_backend.name}
    assert cache_get("k") == "first namespace"


def test_a_forked_child_gets_a_bridge_of_its_own(kv_backend: KvBackend) -> None:
    cache_set("before-fork", "from the parent")
    parent_bridge = runtime._current()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()"
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            bridge = runtime._current()
            checks = [
                bridge is not parent_bridge and bridge.pid == os.getpid(),
                cache_get("before-fork") == "from the parent",
                cache_set("from-child", os.getpid()),
                cache_stats()["hits"] == 1,  # the parent's counts are not the child's
            ]
            os.write(write_end, repr(checks).encode())
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 20)
        report = os.read(read_end, 4096).decode() if ready else "the child did not answer"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert report == repr([True] * 4)
    # The parent's bridge and stores were left alone by the child.
    assert runtime._current() is parent_bridge
    assert cache_get("before-fork") == "from the parent"
    shared = kv_backend.name != "memory"  # the memory store is the child's own copy
    assert cache_get("from-child") == (pid if shared else None)


def test_run_sync_on_the_bridge_loop_raises_instead_of_deadlocking(memory_backend: KvBackend) -> None:
    async def inner() -> int:
        return 1

    async def outer() -> int:
        return runtime.run_sync(inner())

    with pytest.raises(RuntimeError, match="bridge loop"):
        runtime.run_sync(outer())


def test_store_for_only_runs_on_the_bridge_loop(memory_backend: KvBackend) -> None:
    with pytest.raises(RuntimeError, match="bridge loop"):
        asyncio.run(runtime.store_for("kv"))


async def test_cancelling_an_async_caller_cancels_its_work_on_the_bridge() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(runtime.run_async(slow()))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 5)


async def test_the_callers_loop_keeps_running_while_the_bridge_works() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    running = asyncio.create_task(ticker())
    await runtime.run_async(asyncio.sleep(0.2))  # on the bridge loop
    running.cancel()
    assert ticks >= 10
