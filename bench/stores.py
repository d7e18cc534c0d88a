"""Get/set latency and throughput of every store, against real servers, in one run.

    .venv/bin/python -m bench.stores [--ops 2000] [--concurrency 32] [--value-bytes 1024]

Starts redis-server, valkey-server, memcached and the MongoDB wire server on free loopback ports,
uses the running PostgreSQL (a fresh schema, dropped afterwards) and temporary directories for
the file store and SQLite, then through the store contract (timeouts, error accounting and the
fallback wrapper included, as the sidecar uses it) measures sequential get and set latency and
concurrent get throughput, and prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.servers import memcached, mongodb, redis
from tests.servers.postgres import SharedPostgres
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import open_store


@contextmanager
def backends(work: Path) -> Iterator[list[tuple[str, Backend, str | None]]]:
    with ExitStack() as stack:
        redis_srv = stack.enter_context(redis.serving(redis.redis_server()))
        valkey_srv = stack.enter_context(redis.serving(redis.valkey_server()))
        (memcached_srv,) = stack.enter_context(memcached.serving(memcached.memcached_server()))
        mongo_srv = stack.enter_context(mongodb.serving(mongodb.mongodb_server()))
        postgres = SharedPostgres()
        stack.callback(postgres.drop_all)
        yield [
            ("memory", Backend.MEMORY, None),
            ("file", Backend.FILE, None),
            ("redis", Backend.REDIS, redis.server_url(redis_srv)),
            ("valkey", Backend.VALKEY, redis.server_url(valkey_srv, scheme="valkey")),
            ("memcached", Backend.MEMCACHED, memcached.server_url(memcached_srv)),
            ("mongodb (nx-27017)", Backend.MONGODB, mongodb.server_url(mongo_srv)),
            ("database (PostgreSQL)", Backend.DATABASE, postgres.fresh_schema_url()),
            ("database (SQLite)", Backend.DATABASE, f"sqlite:///{work / 'bench.sqlite3'}"),
        ]


def pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(store: Store, ops: int, concurrency: int, value: bytes) -> tuple[float, ...]:
    keys = [f"bench:{i}" for i in range(ops)]
    sets, gets = [], []
    for key in keys:
        started = time.perf_counter()
        await store.set(key, value, 300)
        sets.append((time.perf_counter() - started) * 1e6)
    for key in keys:
        started = time.perf_counter()
        assert await store.get(key) == value
        gets.append((time.perf_counter() - started) * 1e6)

    async def worker(offset: int) -> None:
        for i in range(offset, ops, concurrency):
            await store.get(keys[i])

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    throughput = ops / (time.perf_counter() - started)
    await store.clear()
    return (
        statistics.median(gets),
        pct(gets, 0.99),
        statistics.median(sets),
        pct(sets, 0.99),
        throughput,
    )


async def run(ops: int, concurrency: int, value_bytes: int) -> list[tuple[str, tuple[float, ...], int]]:
    value = os.urandom(value_bytes)
    work = Path(tempfile.mkdtemp(prefix="tina4-bench-stores-"))
    rows = []
    with backends(work) as plan:
        for name, backend, url in plan:
            settings = CacheSettings(
                cache_dir=work / "files", cache_namespace="tina4:bench", cache_timeout=5.0
            )
            store = await open_store(settings, "kv", backend=backend, url=url)
            try:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                numbers = await measure(store, ops, concurrency, value)
                rows.append((name, numbers, store.counters.errors))
            finally:
                await store.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--value-bytes", type=int, default=1024)
    args = parser.parse_args()
    rows = asyncio.run(run(args.ops, args.concurrency, args.value_bytes))
    print(
        f"\n{args.ops} ops of {args.value_bytes}-byte values per store; ops/s with {args.concurrency} tasks"
    )
    print("| store | get p50 µs | get p99 µs | set p50 µs | set p99 µs | get ops/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (g50, g99, s50, s99, tput), errors in rows:
        print(f"| {name} | {g50:.0f} | {g99:.0f} | {s50:.0f} | {s99:.0f} | {tput:.0f} | {errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
