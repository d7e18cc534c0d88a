"""What the client library costs beside what it replaces, measured side by side in one run.

    .venv/bin/python -m bench.client_costs [--calls 20000]

Table 1, ``cache_get`` of one small JSON-like value (a HIT): ours on each store, beside Tina4's own
``tina4_python.cache.cache_get`` (memory) and beside the raw driver reading the same stored bytes
and decoding them (redis-py GET, pymemcache get, pymongo find_one, psycopg SELECT, each + msgpack).
Table 2, a ``fetch_all`` of 100 of 1000 rows: uncached (``no_cache=True``) beside a persistent
query-cache HIT, on SQLite and PostgreSQL, with the persistent layer on memory and on Redis.
Wall µs per call, CPU µs per call (process time: the steadier figure on a shared 2-core machine)
and the ratio. Each store runs in a fresh interpreter against real servers started for the run
(redis-server, memcached, the MongoDB wire server on free ports; the running PostgreSQL, in a
fresh schema dropped afterwards). No assertion: the table is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VALUE = {"id": 42, "name": "Wireless Keyboard", "price": 79.99, "in_stock": True}
ROWS = 1000
QUERY = "SELECT id, name, category, price FROM products WHERE category = ? ORDER BY id"


def timed(calls: int, work: Callable[[], Any]) -> tuple[float, float]:
    work()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        work()
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def raw_reader(backend: str, url: str, namespace: str) -> Callable[[], Any] | None:
    import msgpack

    from tina4_sidecar.client import runtime

    key = f"{namespace}:kv:bench"
    if backend == "memory":
        from tina4_python import cache as tina4_cache

        tina4_cache.cache_set("bench", VALUE, 300)
        return lambda: tina4_cache.cache_get("bench")
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        return lambda: msgpack.unpackb(client.get(key)[1:])
    if backend == "memcached":
        from pymemcache.client.base import Client

        host, _, port = url.removeprefix("memcached://").partition(":")
        mc = Client((host, int(port)), no_delay=True)
        mc.set("raw:bench", runtime.sync_store("kv").get("bench") or b"")
        return lambda: msgpack.unpackb(mc.get("raw:bench")[1:])
    if backend == "mongodb":
        import pymongo

        coll = pymongo.MongoClient(url).get_default_database("tina4")["tina4_cache"]
        return lambda: msgpack.unpackb(bytes(coll.find_one({"_id": key}, {"value": 1})["value"])[1:])
    if backend == "database":
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
        sql = (
            "SELECT value FROM tina4_sidecar_cache WHERE cache_key = %s "
            "AND (expires_at IS NULL OR expires_at > %s)"
        )
        return lambda: msgpack.unpackb(bytes(conn.execute(sql, (key, time.time())).fetchone()[0])[1:])
    return None


def child_cache_get(calls: int, url: str) -> dict[str, float]:
    from tina4_sidecar.client import cache_get, cache_set, runtime

    backend = os.environ.get("TINA4_CACHE_BACKEND", "memory")
    cache_set("bench", VALUE, ttl=300)
    ours = timed(calls, lambda: cache_get("bench"))
    raw = raw_reader(backend, url, runtime.settings().cache_namespace)
    theirs = timed(calls, raw) if raw is not None else (0.0, 0.0)
    return {"ours_us": ours[0], "ours_cpu": ours[1], "raw_us": theirs[0], "raw_cpu": theirs[1]}


def child_fetch_all(calls: int, url: str) -> dict[str, float]:
    from tina4_sidecar.client import Database

    db = Database(url)
    db.execute("DROP TABLE IF EXISTS products")
    db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL)")
    for start in range(0, ROWS, 100):
        db.execute_many(
            "INSERT INTO products (id, name, category, price) VALUES (?, ?, ?, ?)",
            [[i, f"product {i}", f"c{i % 10}", i * 1.5] for i in range(start, start + 100)],
        )
    db.commit()
    rows = len(db.fetch_all(QUERY, ["c3"], no_cache=True))
    uncached = timed(calls, lambda: db.fetch_all(QUERY, ["c3"], no_cache=True))
    cached = timed(calls, lambda: db.fetch_all(QUERY, ["c3"]))
    db.execute("DROP TABLE products")
    db.commit()
    return {
        "uncached_us": uncached[0],
        "uncached_cpu": uncached[1],
        "cached_us": cached[0],
        "cached_cpu": cached[1],
        "rows": rows,
    }


def run_child(kind: str, calls: int, env: dict[str, str], url: str = "") -> dict[str, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TINA4_")} | env
    argv = [sys.executable, "-m", "bench.client_costs", "--child", kind, "--calls", str(calls), "--url", url]
    out = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {env}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "cache_get":
        print(json.dumps(child_cache_get(args.calls, args.url)))
        return 0
    if args.child == "fetch_all":
        print(json.dumps(child_fetch_all(args.calls, args.url)))
        return 0

    from tests.servers import memcached, mongodb, redis
    from tests.servers.postgres import SharedPostgres

    work = Path(tempfile.mkdtemp(prefix="tina4-bench-costs-"))
    postgres = SharedPostgres()
    base = {"TINA4_CACHE_DIR": str(work / "cache"), "TINA4_CACHE_NAMESPACE": "tina4:bench"}
    net_calls = max(args.calls // 10, 500)
    try:
        with (
            redis.serving(redis.redis_server()) as rs,
            memcached.serving(memcached.memcached_server()) as mcs,
            mongodb.serving(mongodb.mongodb_server()) as ms,
        ):
            redis_url = redis.server_url(rs)
            pg_cache = postgres.fresh_schema_url()
            stores = [
                ("memory", "Tina4's cache_get (memory)", args.calls, {}, ""),
                (
                    "redis",
                    "redis-py GET + unpack",
                    net_calls,
                    {"TINA4_CACHE_BACKEND": "redis", "TINA4_CACHE_URL": redis_url},
                    redis_url,
                ),
                (
                    "memcached",
                    "pymemcache get + unpack",
                    net_calls,
                    {"TINA4_CACHE_BACKEND": "memcached", "TINA4_CACHE_URL": memcached.server_url(*mcs)},
                    memcached.server_url(*mcs),
                ),
                (
                    "mongodb",
                    "pymongo find_one + unpack",
                    net_calls,
                    {"TINA4_CACHE_BACKEND": "mongodb", "TINA4_CACHE_URL": mongodb.server_url(ms)},
                    mongodb.server_url(ms),
                ),
                (
                    "database (PostgreSQL)",
                    "psycopg SELECT + unpack",
                    net_calls,
                    {"TINA4_CACHE_BACKEND": "database", "TINA4_CACHE_URL": pg_cache},
                    pg_cache,
                ),
            ]
            print("bench: cache_get ...", file=sys.stderr)
            kv = [
                (name, raw, run_child("cache_get", calls, base | env, url))
                for name, raw, calls, env, url in stores
            ]
            layers = [
                ("persistent, memory", {"TINA4_AUTO_CACHING": "false", "TINA4_DB_CACHE": "true"}),
                (
                    "persistent, redis",
                    {
                        "TINA4_AUTO_CACHING": "false",
                        "TINA4_DB_CACHE": "true",
                        "TINA4_DB_CACHE_BACKEND": "redis",
                        "TINA4_DB_CACHE_URL": redis_url,
                    },
                ),
            ]
            databases = [
                ("SQLite", f"sqlite:///{work / 'bench.db'}"),
                ("PostgreSQL", postgres.fresh_schema_url()),
            ]
            print("bench: fetch_all ...", file=sys.stderr)
            fetches = [
                (db, layer, run_child("fetch_all", max(args.calls // 20, 300), base | env, url))
                for db, url in databases
                for layer, env in layers
            ]
    finally:
        postgres.drop_all()
    print("\ncache_get of a 4-field dict, HIT: ours beside what it replaces (µs per call, wall / CPU)")
    print("| store | ours | ours CPU | beside | theirs | theirs CPU | ratio (CPU) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, raw, n in kv:
        ratio = n["ours_cpu"] / n["raw_cpu"] if n["raw_cpu"] else 0.0
        print(
            f"| {name} | {n['ours_us']:.2f} | {n['ours_cpu']:.2f} | {raw} | {n['raw_us']:.2f} | "
            f"{n['raw_cpu']:.2f} | {ratio:.2f}x |"
        )
    print(f"\nfetch_all of {int(fetches[0][2]['rows'])} of {ROWS} rows: uncached vs a persistent HIT")
    print("| database | query cache | uncached | uncached CPU | cached | cached CPU | speed-up (wall) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for db, layer, n in fetches:
        print(
            f"| {db} | {layer} | {n['uncached_us']:.0f} | {n['uncached_cpu']:.0f} | {n['cached_us']:.0f} | "
            f"{n['cached_cpu']:.0f} | {n['uncached_us'] / n['cached_us']:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
