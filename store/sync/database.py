"""Sync twin of the database store: the same table, rows and statements as ``store/backends/database*``,
on sqlite3 (one connection per calling thread, WAL, busy timeout) or psycopg's blocking
``ConnectionPool`` (thread-safe), in the caller's thread. The async store creates the table at
open; a statement that finds it missing creates it again here too (``database.py`` says why).

On PostgreSQL each calling thread keeps a connection of its own (``per_thread.py``, at most
``POOL_MAX`` of them; past that, and for a thread whose connection is being made, the pool):
``with pool.connection()`` checked each connection out and back in on every ``cache_get``, about a
third of its CPU beside the ``SELECT``. A kept connection that failed is closed; one the server
dropped while idle is retried once on a new one."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tina4_sidecar.store.backends import database_sqlite as lite
from tina4_sidecar.store.backends.database import TABLE, TABLE_PROBE, DatabaseStore, table_recreated
from tina4_sidecar.store.backends.database_mysql import MysqlEngine, MysqlSql
from tina4_sidecar.store.contract import StoreUnavailable
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.per_thread import PerThread

T = TypeVar("T")


class SyncDatabaseStore(SyncStore):
    def __init__(self, spec: DatabaseStore) -> None:
        super().__init__(spec)
        self.db_spec = spec
        self.ns = spec.ns
        engine = spec.engine
        self.sql: _Sql
        if engine.name == "postgresql":
            self.sql = _Postgres(engine)
        elif isinstance(engine, MysqlEngine):
            sql = engine.sql
            self.sql = MysqlSql(sql.url, sql.timeout, sql.params["user"], sql.params["password"])
        else:
            self.sql = _Sqlite(engine)

    def _get(self, key: str) -> bytes | None:
        return self.sql.get(self.db_spec.row_key(key), time.time())

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        rows = [self.db_spec.row_key(key) for key in keys]
        found = self.sql.get_many(list(dict.fromkeys(rows)), time.time())
        return [found.get(row) for row in rows]

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        self.sql.set(self.db_spec.row_key(key), self.ns, value, self.db_spec.expires_at(ttl))

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        now = time.time()
        return self.sql.add(self.db_spec.row_key(key), self.ns, value, self.db_spec.expires_at(ttl, now), now)

    def _delete(self, key: str) -> bool:
        return self.sql.delete(self.db_spec.row_key(key), time.time())

    def _clear(self) -> None:
        self.sql.clear(self.ns)

    def _size(self) -> int:
        return self.sql.count(self.ns, time.time())

    def _sweep(self) -> int:
        return self.sql.sweep(time.time())

    def _ping(self) -> None:
        self.sql.ping()

    def _open(self) -> None:
        self.sql.open()

    def _close(self) -> None:
        self.sql.close()


class _Sql(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def get(self, key: str, now: float) -> bytes | None: ...
    def get_many(self, keys: list[str], now: float) -> dict[str, bytes]: ...
    def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None: ...
    def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool: ...
    def delete(self, key: str, now: float) -> bool: ...
    def clear(self, ns: str) -> None: ...
    def count(self, ns: str, now: float) -> int: ...
    def sweep(self, now: float) -> int: ...
    def ping(self) -> None: ...


class _Sqlite:
    def __init__(self, engine: Any) -> None:
        self.path: str = engine.path
        self.target: str = engine.target
        self.timeout: float = engine.timeout
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.path == ":memory:":
                raise StoreUnavailable("database: an in-memory SQLite store is private to the async store")
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            lite._enable_wal(conn, self.timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _run(self, work: Callable[..., T], *args: Any) -> T:
        conn = self._conn()
        try:
            return work(conn, *args)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith(f"no such table: {TABLE}"):
                raise
        if lite._create_schema(conn):
            table_recreated(self.target)
        return work(conn, *args)

    def open(self) -> None:
        try:
            lite._create_schema(self._conn())
            self._conn().execute(TABLE_PROBE)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"database: cannot open {self.target}: {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def get(self, key: str, now: float) -> bytes | None:
        rows = self._run(lite._fetchall, lite._GET, (key, now))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        return self._run(lite._get_many, keys, now)

    def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        self._run(lite._fetchall, lite._SET, (key, ns, value, expires_at))

    def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        return self._run(lite._rowcount, lite._ADD, (key, ns, value, expires_at, now)) == 1

    def delete(self, key: str, now: float) -> bool:
        rows = self._run(lite._fetchall, lite._DELETE, (key, now))
        return bool(rows and rows[0][0])

    def clear(self, ns: str) -> None:
        self._run(lite._fetchall, lite._CLEAR, (ns,))

    def count(self, ns: str, now: float) -> int:
        return int(self._run(lite._fetchall, lite._COUNT, (ns, now))[0][0])

    def sweep(self, now: float) -> int:
        return self._run(lite._rowcount, lite._SWEEP, (now, 100_000))

    def ping(self) -> None:
        self._run(lite._fetchall, TABLE_PROBE, ())


class _Postgres:
    def __init__(self, engine: Any) -> None:
        from tina4_sidecar.store.backends import database_postgres as pg

        self.pg = pg
        self.conninfo: str = engine.conninfo
        self.target: str = engine.target
        self.timeout: float = engine.timeout
        self._pool: Any = None
        self._conns: PerThread[Any] | None = None

    def open(self) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                self._create(conn)
                conn.execute(TABLE_PROBE)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"database: cannot connect to {self.target}: {self.pg._reason(exc)}"
            ) from None
        millis = max(1, math.ceil(self.timeout * 1000))

        def configure(conn: Any) -> None:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{millis}ms",))

        self._pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.pg.POOL_MAX,
            timeout=self.timeout,
            reconnect_timeout=self.timeout,
            kwargs={"autocommit": True},
            configure=configure,
            name="tina4-sidecar sync",
            open=True,
        )

        def connect() -> Any:
            conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=max(2, math.ceil(self.timeout))
            )
            configure(conn)
            return conn

        self._conns = PerThread(connect, lambda conn: conn.close(), self.pg.POOL_MAX)

    def _create(self, conn: Any) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
        if row is not None and row[0]:
            return False
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.pg.SCHEMA_LOCK,))
            for statement in self.pg._SCHEMA:
                conn.execute(statement)
        return True

    def close(self) -> None:
        pool, self._pool = self._pool, None
        conns, self._conns = self._conns, None
        if conns is not None:
            conns.close()
        if pool is not None:
            pool.close()

    def _run(self, work: Callable[[Any], T]) -> T:
        """``work(conn)`` on the calling thread's kept connection, else on one of the pool."""
        import psycopg

        if self._pool is None:
            raise RuntimeError("the database store is not open")
        conns = self._conns
        for attempt in (0, 1):
            conn = conns.get() if conns is not None else None
            if conns is None or conn is None:
                break
            try:
                return self._with_table(conn, work)
            except psycopg.OperationalError:
                conns.discard()
                if attempt or not _dropped(conn):
                    raise
            except BaseException:
                if conn.broken or conn.closed:
                    conns.discard()
                raise
        with self._pool.connection() as pooled:
            return self._with_table(pooled, work)

    def _with_table(self, conn: Any, work: Callable[[Any], T]) -> T:
        import psycopg

        try:
            return work(conn)
        except psycopg.errors.UndefinedTable:
            if self._create(conn):
                table_recreated(self.target)
        return work(conn)

    def _query(self, sql: str, params: Any) -> list[Any]:
        return self._run(lambda conn: conn.execute(sql, params, binary=True).fetchall())

    def _execute(self, sql: str, params: Any) -> int:
        return int(self._run(lambda conn: conn.execute(sql, params).rowcount))

    def get(self, key: str, now: float) -> bytes | None:
        rows = self._query(self.pg._GET, (key, now))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        return {key: bytes(value) for key, value in self._query(self.pg._GET_MANY, (keys, now))}

    def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        self._execute(self.pg._SET, (key, ns, value, expires_at))

    def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        params = {"key": key, "ns": ns, "value": value, "expires_at": expires_at, "now": now}
        return self._execute(self.pg._ADD, params) == 1

    def delete(self, key: str, now: float) -> bool:
        rows = self._query(self.pg._DELETE, (key, now))
        return bool(rows and rows[0][0])

    def clear(self, ns: str) -> None:
        self._execute(self.pg._CLEAR, (ns,))

    def count(self, ns: str, now: float) -> int:
        return int(self._query(self.pg._COUNT, (ns, now))[0][0])

    def sweep(self, now: float) -> int:
        return self._execute(self.pg._SWEEP, {"now": now, "limit": 100_000})

    def ping(self) -> None:
        self._query(TABLE_PROBE, ())


def _dropped(conn: Any) -> bool:
    """True when ``conn`` is broken (the server closed it, e.g. restarted): worth one retry."""
    return bool(conn.broken)
