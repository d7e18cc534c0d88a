"""The app's near cache of query results with push invalidation on a real Redis (TINA4_DB_CACHE_PUSH).

What is proved: a HIT then sends no command to Redis (counted by the server's own commandstats);
a write by another process (a real second process) is seen once announced, within a bound; the
writing process sees its own write at once; with push off every HIT reads the tokens (one
MGET); a subscription the server kills stops the trust, and HITs read the tokens again, still
correct.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.client.conftest import clean_env, unique_namespace
from tests.servers.process import ServerProcess
from tests.servers.redis import server_url
from tina4_sidecar.client import Database, runtime
from tina4_sidecar.client.request_scope import current

QUERY = "SELECT id, name FROM products ORDER BY id"
WRITER = """
import sys
from tina4_sidecar.client import Database
Database(sys.argv[1]).execute("UPDATE products SET name = 'Changed' WHERE id = 1")
"""


def mget_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO products VALUES (1, 'Keyboard'), (2, 'Mat')")
    return "sqlite:///" + str(path)


def environment(push: bool, url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TINA4_DB_CACHE": "true",
        "TINA4_AUTO_CACHING": "false",
        "TINA4_DB_CACHE_BACKEND": "redis",
        "TINA4_DB_CACHE_URL": url,
        "TINA4_DB_CACHE_PUSH": "true" if push else "false",
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def server(client_redis: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server_url(client_redis))
    yield client
    client.close()


def wait_until_trusted(db: Database, server: redis.Redis) -> None:
    """Until a HIT sends no MGET (the subscription is confirmed and the tokens learned)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = mget_calls(server)
        db.fetch_all(QUERY)
        if mget_calls(server) == before:
            return
        time.sleep(0.05)
    raise AssertionError("the near cache never trusted its tokens")


def test_push_hits_send_nothing_and_another_process_write_is_seen(
    client_redis: ServerProcess,
    server: redis.Redis,
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment(True, server_url(client_redis), tmp_path)
    clean_env(monkeypatch, tmp_path / "work", env)
    runtime.reset()
    current().flush()
    try:
        db = Database(app_db)
        assert db.fetch_all(QUERY)[0]["name"] == "Keyboard"
        wait_until_trusted(db, server)
        before = mget_calls(server)
        for _ in range(50):
            assert db.fetch_all(QUERY)[0]["name"] == "Keyboard"
        assert mget_calls(server) == before  # 50 HITs, no round trip
        hits = db.cache_stats()["hits"]
        assert hits >= 50

        subprocess.run([sys.executable, "-c", WRITER, app_db], check=True, timeout=60)
        deadline, seen = time.monotonic() + 2.0, ""
        while time.monotonic() < deadline:
            seen = db.fetch_all(QUERY)[0]["name"]
            if seen == "Changed":
                break
            time.sleep(0.005)
        assert seen == "Changed"  # the announcement reached this process within the bound

        db.execute("UPDATE products SET name = 'Mine' WHERE id = 1")
        assert db.fetch_all(QUERY)[0]["name"] == "Mine"  # its own write: at once

        wait_until_trusted(db, server)
        server.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the follower notices and stops trusting
            before = mget_calls(server)
            db.fetch_all(QUERY)
            if mget_calls(server) > before:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("HITs kept trusting tokens after the subscription was killed")
        with sqlite3.connect(app_db.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE products SET name = 'Hidden' WHERE id = 2")  # behind the cache
        assert [r["name"] for r in db.fetch_all(QUERY)] == ["Mine", "Mat"]  # still a correct HIT
    finally:
        runtime.reset()


def test_without_push_every_hit_reads_the_tokens_once(
    client_redis: ServerProcess,
    server: redis.Redis,
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean_env(monkeypatch, tmp_path / "work", environment(False, server_url(client_redis), tmp_path))
    runtime.reset()
    current().flush()
    try:
        db = Database(app_db)
        db.fetch_all(QUERY)
        before = mget_calls(server)
        for _ in range(20):
            assert db.fetch_all(QUERY)[0]["name"] == "Keyboard"
        assert mget_calls(server) - before == 20  # one round trip per HIT: the tokens
        subprocess.run([sys.executable, "-c", WRITER, app_db], check=True, timeout=60)
        assert db.fetch_all(QUERY)[0]["name"] == "Changed"  # exact: the next HIT sees it
    finally:
        runtime.reset()
