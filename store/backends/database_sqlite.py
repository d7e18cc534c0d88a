"""The database store on SQLite: the stdlib driver, one connection per store, on one thread of its own.

sqlite3 blocks, so the store's connection lives on a dedicated worker thread and every statement
is handed to it (``run_in_executor``): the event loop never waits, the connection is only ever
used by one thread (no lock needed), and a database that another process keeps locked ties up
this store's thread only, not the loop's shared default executor that ``asyncio.to_thread``
would exhaust. The file is in WAL mode, so readers in other processes (other sidecars, other app
workers) are not blocked by a writer; writers wait for each other up to the store's timeout
(busy timeout) instead of failing at once, and so do stores opening a new file at the same moment
(SQLite refuses the switch to WAL at once while another connection makes it, so it is retried).
When a caller's timeout fires, a statement already running finishes on the thread; queued ones
are dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tina4_sidecar.store.backends.database import TABLE, TABLE_PROBE, table_recreated, table_refused

MAX_VARIABLES = 500
"""Keys per ``IN (...)`` query of get_many; old SQLite builds allow only 999 variables."""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (cache_key TEXT PRIMARY KEY, ns TEXT NOT NULL, "
    "value BLOB NOT NULL, expires_at REAL NULL)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ns ON {TABLE} (ns, expires_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires_at)",
)
_TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
_GET = f"SELECT value FROM {TABLE} WHERE cache_key = ? AND {_LIVE}"
_SET = (
    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (cache_key) DO UPDATE SET ns = excluded.ns, value = excluded.value, "
    "expires_at = excluded.expires_at"
)
# Upsert syntax needs SQLite 3.24. The statement's rowcount is sqlite3_changes(): 1 for the insert
# or the overwrite of an expired row, 0 when the WHERE kept a live row. Writers are serialised
# by the database lock, so the statement is atomic across processes.
_ADD = (
    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (cache_key) DO UPDATE SET ns = excluded.ns, value = excluded.value, "
    f"expires_at = excluded.expires_at WHERE {TABLE}.expires_at IS NOT NULL AND {TABLE}.expires_at <= ?"
)
_DELETE = f"DELETE FROM {TABLE} WHERE cache_key = ? RETURNING {_LIVE}"
_CLEAR = f"DELETE FROM {TABLE} WHERE ns = ?"
_COUNT = f"SELECT count(*) FROM {TABLE} WHERE ns = ? AND {_LIVE}"
_SWEEP = f"DELETE FROM {TABLE} WHERE rowid IN (SELECT rowid FROM {TABLE} WHERE expires_at <= ? LIMIT ?)"


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:`` URL, read the way Tina4 reads it.

    ``sqlite:///data/c.db`` -> ``data/c.db`` (relative to the working directory),
    ``sqlite:////abs/c.db`` and ``sqlite:/abs/c.db`` -> ``/abs/c.db``, ``sqlite:c.db`` -> ``c.db``,
    ``sqlite::memory:`` -> an in-memory database private to the store.
    """
    if url.startswith("sqlite3:"):
        url = "sqlite:" + url.removeprefix("sqlite3:")
    if url in ("sqlite::memory:", "sqlite:///:memory:"):
        return ":memory:"
    prefix = next(p for p in ("sqlite:///", "sqlite://", "sqlite:", "") if url.startswith(p))
    path = url.removeprefix(prefix).split("?", 1)[0]
    if not path:
        raise ValueError("the sqlite: URL names no file")
    return path


class SqliteEngine:
    """The SQL of the database store, spoken to an SQLite file from the store's own thread."""

    name = "sqlite"

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.target = f"sqlite:///{path}"
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tina4-sidecar-sqlite")
        try:
            await self._submit(self._connect)
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, sqlite3.Error | OSError):
                raise table_refused(self.target, str(exc)) from None
            raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(thread, self._disconnect)
        finally:
            thread.shutdown(wait=False)

    def _abandon(self) -> None:
        """Let the thread close the connection once it is done (open failed or was cancelled)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.submit(self._disconnect)
            thread.shutdown(wait=False)

    async def get(self, key: str, now: float) -> bytes | None:
        rows = await self._call(_fetchall, _GET, (key, now))
        return bytes(rows[0][0]) if rows else None

    async def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        return await self._call(_get_many, keys, now)

    async def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        await self._call(_fetchall, _SET, (key, ns, value, expires_at))

    async def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        return await self._call(_rowcount, _ADD, (key, ns, value, expires_at, now)) == 1

    async def delete(self, key: str, now: float) -> bool:
        rows = await self._call(_fetchall, _DELETE, (key, now))
        return bool(rows and rows[0][0])

    async def clear(self, ns: str) -> None:
        # Shielded: a clear queued behind other statements still runs when its caller gives up.
        await asyncio.shield(self._call(_fetchall, _CLEAR, (ns,)))

    async def count(self, ns: str, now: float) -> int:
        rows = await self._call(_fetchall, _COUNT, (ns, now))
        return int(rows[0][0])

    async def sweep(self, now: float, limit: int) -> int:
        return await self._call(_rowcount, _SWEEP, (now, limit))

    async def ping(self) -> None:
        await self._call(_fetchall, TABLE_PROBE, ())

    async def _call[T](self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(connection, *args)`` on the store's thread."""
        return await self._submit(self._with_connection, work, args)

    async def _submit[T](self, function: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise RuntimeError("the database store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    # -- on the store's thread -----------------------------------------------------------------

    def _with_connection[T](self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the database store is not open")
        try:
            return work(conn, *args)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith(f"no such table: {TABLE}"):
                raise
        # The table has gone (see database.py): only this thread uses the connection, so no lock.
        if _create_schema(conn):
            table_recreated(self.target)
        return work(conn, *args)

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each statement is its own transaction.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            _enable_wal(conn, self.timeout)
            conn.execute("PRAGMA synchronous=NORMAL")  # a cache may lose its last writes on power loss
            _create_schema(conn)
            conn.execute(TABLE_PROBE)  # a table of another layout under our name: refused
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """WAL mode, retried for up to ``timeout`` s: the switch needs the file to itself and SQLite
    refuses it at once, without the busy wait, while another connection is switching it too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _create_schema(conn: sqlite3.Connection) -> bool:
    """The table and its indexes, if missing, in one write transaction; True when the table was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        missing = not conn.execute(_TABLE_EXISTS, (TABLE,)).fetchall()
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return missing


def _fetchall(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _rowcount(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


def _get_many(conn: sqlite3.Connection, keys: list[str], now: float) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(keys), MAX_VARIABLES):
        chunk = keys[start : start + MAX_VARIABLES]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT cache_key, value FROM {TABLE} WHERE cache_key IN ({marks}) AND {_LIVE}"
        found.update((key, bytes(value)) for key, value in conn.execute(sql, (*chunk, now)))
    return found
