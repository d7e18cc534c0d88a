"""What the client library costs: ``cache_get`` per store, and a cached ``fetch_all`` against an
uncached one, on SQLite and PostgreSQL, with the query cache on each layer.

    .venv/bin/python -m bench.client [--calls 3000]

Each configuration runs in a fresh interpreter (the client reads its TINA4_* settings once), against
real servers started for the run: redis-server on a free port, the running PostgreSQL (a fresh
schema, dropped afterwards), a temporary directory for the file store and the SQLite database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1000
QUERY = "SELECT id, name, category, price FROM products WHERE category = ? ORDER BY id"


def child_cache_get(calls: int) -> dict[str, float]:
    from tina4_sidecar.client import cache_get, cache_set, clear_cache

    cache_set("bench:value", {"id": 42, "name": "Wireless Keyboard", "price": 79.99}, ttl=300)
    cache_get("bench:value")
    started = time.perf_counter()
    for _ in range(calls):
        cache_get("bench:value")
    hit = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for i in range(calls):
        cache_get(f"bench:missing:{i}")
    miss = (time.perf_counter() - started) / calls * 1e6
    clear_cache()
    return {"hit_us": hit, "miss_us": miss}


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
    started = time.perf_counter()
    for _ in range(calls):
        db.fetch_all(QUERY, ["c3"], no_cache=True)
    uncached = (time.perf_counter() - started) / calls * 1e6
    db.fetch_all(QUERY, ["c3"])
    started = time.perf_counter()
    for _ in range(calls):
        db.fetch_all(QUERY, ["c3"])
    cached = (time.perf_counter() - started) / calls * 1e6
    db.execute("DROP TABLE products")
    db.commit()
    return {"uncached_us": uncached, "cached_us": cached, "rows": rows}


def run_child(kind: str, calls: int, env: dict[str, str], url: str = "") -> dict[str, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TINA4_")} | env
    argv = [sys.executable, "-m", "bench.client", "--child", kind, "--calls", str(calls), "--url", url]
    out = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {env}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "cache_get":
        print(json.dumps(child_cache_get(args.calls)))
        return 0
    if args.child == "fetch_all":
        print(json.dumps(child_fetch_all(args.calls, args.url)))
        return 0

    from tests.servers.postgres import SharedPostgres
    from tests.servers.redis import redis_server, server_url, serving

    work = Path(tempfile.mkdtemp(prefix="tina4-bench-client-"))
    postgres = SharedPostgres()
    try:
        with serving(redis_server()) as redis:
            redis_url = server_url(redis)
            pg_cache_url = postgres.fresh_schema_url()
            pg_data_url = postgres.fresh_schema_url()
            base = {"TINA4_CACHE_DIR": str(work / "cache"), "TINA4_CACHE_NAMESPACE": "tina4:bench"}
            stores = [
                ("memory", {}),
                ("file", {"TINA4_CACHE_BACKEND": "file"}),
                ("redis", {"TINA4_CACHE_BACKEND": "redis", "TINA4_CACHE_URL": redis_url}),
                (
                    "database (PostgreSQL)",
                    {"TINA4_CACHE_BACKEND": "database", "TINA4_CACHE_URL": pg_cache_url},
                ),
            ]
            print("bench: cache_get ...", file=sys.stderr)
            kv = [(name, run_child("cache_get", args.calls, base | env)) for name, env in stores]
            layers = [
                ("no query cache", {"TINA4_AUTO_CACHING": "false"}),
                ("request-scoped (TTL guard)", {}),
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
            databases = [("SQLite", f"sqlite:///{work / 'bench.db'}"), ("PostgreSQL", pg_data_url)]
            print("bench: fetch_all ...", file=sys.stderr)
            fetches = [
                (db_name, layer, run_child("fetch_all", max(args.calls // 10, 100), base | env, url))
                for db_name, url in databases
                for layer, env in layers
            ]
    finally:
        postgres.drop_all()
    print(f"\ncache_get of a small JSON value, {args.calls} calls (µs per call)")
    print("| store | hit | miss |")
    print("|---|---:|---:|")
    for name, numbers in kv:
        print(f"| {name} | {numbers['hit_us']:.1f} | {numbers['miss_us']:.1f} |")
    print(f"\nfetch_all of {int(fetches[0][2]['rows'])} of {ROWS} rows (µs per call)")
    print("| database | query cache | uncached (no_cache=True) | cached | speed-up |")
    print("|---|---|---:|---:|---:|")
    for db_name, layer, numbers in fetches:
        speedup = numbers["uncached_us"] / numbers["cached_us"] if numbers["cached_us"] else 0.0
        uncached, cached = numbers["uncached_us"], numbers["cached_us"]
        print(f"| {db_name} | {layer} | {uncached:.0f} | {cached:.0f} | {speedup:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
