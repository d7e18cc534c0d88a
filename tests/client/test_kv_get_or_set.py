"""``cache_get_or_set`` computes a missing value once: 50 threads, 50 tasks, and 2 processes x 25
threads on one shared store, with the producer's runs counted outside the cache (a file append)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import KvBackend
from tina4_sidecar.client import acache_get_or_set, cache_get, cache_get_or_set, cache_stats

LOCK = "~lock:kv:"


def run_threads(count: int, call: Any) -> list[Any]:
    """``call()`` in ``count`` threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_fifty_threads_run_the_producer_once(kv_backend: KvBackend) -> None:
    runs: list[int] = []

    def producer() -> dict[str, Any]:
        runs.append(threading.get_ident())
        time.sleep(0.2)
        return {"report": "quarterly", "rows": list(range(5))}

    results = run_threads(50, lambda: cache_get_or_set("report", producer, ttl=60))
    assert len(runs) == 1
    assert results == [{"report": "quarterly", "rows": [0, 1, 2, 3, 4]}] * 50
    assert cache_get("report") == results[0]
    assert kv_backend.peek("meta", LOCK + "report") is None  # released
    stats = cache_stats()
    assert (stats["hits"], stats["misses"]) == (1, 50)


def test_a_producer_error_reaches_every_waiter_and_frees_the_key(kv_backend: KvBackend) -> None:
    runs: list[int] = []

    def failing() -> str:
        runs.append(1)
        time.sleep(0.2)
        raise LookupError("the database is down")

    results = run_threads(20, lambda: cache_get_or_set("report", failing))
    assert len(runs) == 1
    assert all(isinstance(r, LookupError) and str(r) == "the database is down" for r in results)
    assert kv_backend.peek("meta", LOCK + "report") is None
    assert cache_get_or_set("report", lambda: "recovered") == "recovered"


def test_an_unstorable_result_is_refused_to_every_caller(memory_backend: KvBackend) -> None:
    results = run_threads(5, lambda: cache_get_or_set("k", lambda: (time.sleep(0.1), {1: object()})[1]))
    assert all(isinstance(r, TypeError) and "object" in str(r) for r in results)
    assert cache_get_or_set("k", lambda: [1, 2]) == [1, 2]


async def test_fifty_tasks_run_an_async_producer_once(kv_backend: KvBackend) -> None:
    runs = 0

    async def producer() -> list[int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.2)
        return [1, 2, 3]

    results = await asyncio.gather(*(acache_get_or_set("async-report", producer) for _ in range(50)))
    assert runs == 1
    assert results == [[1, 2, 3]] * 50


async def test_a_cancelled_leader_hands_over_to_a_waiter(memory_backend: KvBackend) -> None:
    started = asyncio.Event()

    async def never_finishes() -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    leader = asyncio.create_task(acache_get_or_set("k", never_finishes))
    await started.wait()
    waiter = asyncio.create_task(acache_get_or_set("k", lambda: "the waiter's"))
    await asyncio.sleep(0.05)
    leader.cancel()
    assert await asyncio.wait_for(waiter, 5) == "the waiter's"
    assert cache_get("k") == "the waiter's"


WORKER = r"""
import os, sys, threading, time, json
from pathlib import Path
from tina4_sidecar.client import cache_get_or_set, cache_get

count_file, ready_file, go_file = sys.argv[1:4]

def producer():
    with open(count_file, "a") as out:
        out.write(f"{os.getpid()}\n")
    time.sleep(0.3)
    return {"computed_by": os.getpid()}

cache_get("warm-up")  # opens the store before the race
Path(ready_file).touch()
while not os.path.exists(go_file):
    time.sleep(0.002)
results = []
def worker():
    results.append(cache_get_or_set("shared-report", producer, ttl=60))
threads = [threading.Thread(target=worker) for _ in range(25)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(results))
"""


@pytest.mark.parametrize("kv_backend", ["redis", "file", "database"], indirect=True)
def test_two_processes_of_25_threads_run_the_producer_once(kv_backend: KvBackend, tmp_path: Path) -> None:
    count_file, go_file = tmp_path / "producer-runs", tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    env = {**os.environ, **kv_backend.env}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(count_file), str(flag), str(go_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 20
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, [w.poll() for w in workers]
            time.sleep(0.01)
        go_file.touch()
        outputs = [w.communicate(timeout=30) for w in workers]
    finally:
        for worker in workers:
            worker.kill()
    results = [item for out, err in outputs for item in json.loads(out or "null") or [err]]
    runs = count_file.read_text().split()
    assert len(runs) == 1, runs
    assert results == [{"computed_by": int(runs[0])}] * 50
