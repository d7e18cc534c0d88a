"""The database store on MySQL and MariaDB: PyMySQL, one connection per calling thread.

Why PyMySQL, not Tina4's own adapter: Tina4's ``MySQLAdapter`` needs mysql-connector-python and
brings its SQL translator and pool, where the store needs plain parameterised statements,
``ON DUPLICATE KEY UPDATE``, a socket timeout on every call and a connection per thread. PyMySQL
is the well-kept pure-Python driver (no compiler in slim images; aiomysql builds on it). The
sync store (``store/sync/database.py``) calls :class:`MysqlSql` in the caller's thread; the
async :class:`MysqlEngine` runs the same methods in a small thread pool, as the memcached store
does with pymemcache.

Table (``store/backends/database.TABLE``)::

    cache_key VARBINARY(1024) PRIMARY KEY  -- bytes: compared exactly, never by a collation
    ns VARBINARY(255) NOT NULL, value LONGBLOB NOT NULL, expires_at DOUBLE NULL

``add()`` is one ``INSERT ... ON DUPLICATE KEY UPDATE`` whose assignments keep the row unless it
has expired (``expires_at`` assigned last: MySQL evaluates assignments left to right), and
MySQL's affected-row count (1 inserted, 2 replaced, 0 kept; the connection does not ask for
found rows) says whether this call wrote. A statement that finds the table missing creates it
and runs once more, as on the other engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pymysql  # type: ignore[import-untyped]
from pymysql.constants import CLIENT  # type: ignore[import-untyped]

from tina4_sidecar.store.backends.database import TABLE, TABLE_PROBE, table_recreated, table_refused

T = TypeVar("T")

THREADS = 4
_NO_SUCH_TABLE = 1146

_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (cache_key VARBINARY(1024) NOT NULL PRIMARY KEY, "
    "ns VARBINARY(255) NOT NULL, value LONGBLOB NOT NULL, expires_at DOUBLE NULL, "
    f"KEY {TABLE}_ns (ns, expires_at), KEY {TABLE}_expires (expires_at))"
)
_GET = f"SELECT value FROM {TABLE} WHERE cache_key = %s AND {_LIVE}"
_SET = (
    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE ns = VALUES(ns), value = VALUES(value), expires_at = VALUES(expires_at)"
)
_EXPIRED = "(expires_at IS NOT NULL AND expires_at <= %(now)s)"
_ADD = (
    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) "
    "VALUES (%(key)s, %(ns)s, %(value)s, %(expires_at)s) ON DUPLICATE KEY UPDATE "
    f"ns = IF({_EXPIRED}, VALUES(ns), ns), value = IF({_EXPIRED}, VALUES(value), value), "
    f"expires_at = IF({_EXPIRED}, VALUES(expires_at), expires_at)"
)
_DELETE_LIVE = f"DELETE FROM {TABLE} WHERE cache_key = %s AND {_LIVE}"
_DELETE = f"DELETE FROM {TABLE} WHERE cache_key = %s"
_CLEAR = f"DELETE FROM {TABLE} WHERE ns = %s"
_COUNT = f"SELECT COUNT(*) FROM {TABLE} WHERE ns = %s AND {_LIVE}"
_SWEEP = f"DELETE FROM {TABLE} WHERE expires_at IS NOT NULL AND expires_at <= %s LIMIT %s"


def _params(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("a mysql:// URL needs a host: mysql://user:pass@host:3306/database")
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "database": unquote(parts.path.lstrip("/")) or None,
    }


class MysqlSql:
    """The store's statements, blocking, on a connection of the calling thread."""

    name = "mysql"

    def __init__(
        self, url: str, timeout: float, username: str | None = None, password: str | None = None
    ) -> None:
        self.url = url
        self.params = _params(url)
        if self.params["user"] is None:
            self.params["user"] = username
        if self.params["password"] is None:
            self.params["password"] = password
        if not self.params["database"]:
            raise ValueError("a mysql:// URL needs a database: mysql://user:pass@host:3306/database")
        self.timeout = timeout
        self.target = f"mysql://{self.params['host']}:{self.params['port']}/{self.params['database']}"
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = pymysql.connect(
                **{k: v for k, v in self.params.items() if v is not None},
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                write_timeout=self.timeout,
                autocommit=True,
                client_flag=CLIENT.MULTI_RESULTS,  # no FOUND_ROWS: add() reads affected rows
            )
            self._local.conn = conn
        return conn

    def _run(self, work: Callable[[Any], T]) -> T:
        try:
            try:
                return work(self._conn())
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] != _NO_SUCH_TABLE:
                    raise
            with self._conn().cursor() as cur:
                cur.execute(_SCHEMA)
            table_recreated(self.target)
            return work(self._conn())
        except pymysql.err.OperationalError:
            self._drop()  # a broken connection: the next call connects again
            raise

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _rows(self, sql: str, params: Any) -> list[Any]:
        def work(conn: Any) -> list[Any]:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())

        return self._run(work)

    def _count(self, sql: str, params: Any) -> int:
        def work(conn: Any) -> int:
            with conn.cursor() as cur:
                return int(cur.execute(sql, params))

        return self._run(work)

    def open(self) -> None:
        try:
            with self._conn().cursor() as cur:
                cur.execute(_SCHEMA)
                cur.execute(TABLE_PROBE)
        except pymysql.MySQLError as exc:
            self._drop()
            raise table_refused(self.target, str(exc.args[-1])) from None

    def close(self) -> None:
        self._drop()

    def get(self, key: str, now: float) -> bytes | None:
        rows = self._rows(_GET, (key.encode(), now))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        marks = ", ".join(["%s"] * len(keys))
        sql = f"SELECT cache_key, value FROM {TABLE} WHERE cache_key IN ({marks}) AND {_LIVE}"
        rows = self._rows(sql, (*(key.encode() for key in keys), now))
        return {bytes(key).decode(): bytes(value) for key, value in rows}

    def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        self._count(_SET, (key.encode(), ns.encode(), value, expires_at))

    def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        params = {
            "key": key.encode(),
            "ns": ns.encode(),
            "value": value,
            "expires_at": expires_at,
            "now": now,
        }
        return self._count(_ADD, params) in (1, 2)

    def delete(self, key: str, now: float) -> bool:
        live = self._count(_DELETE_LIVE, (key.encode(), now)) > 0
        if not live:
            self._count(_DELETE, (key.encode(),))  # an expired row goes too
        return live

    def delete_many(self, keys: list[str]) -> None:
        marks = ", ".join(["%s"] * len(keys))
        self._count(f"DELETE FROM {TABLE} WHERE cache_key IN ({marks})", tuple(k.encode() for k in keys))

    def clear(self, ns: str) -> None:
        self._count(_CLEAR, (ns.encode(),))

    def count(self, ns: str, now: float) -> int:
        return int(self._rows(_COUNT, (ns.encode(), now))[0][0])

    def sweep(self, now: float, limit: int = 100_000) -> int:
        return self._count(_SWEEP, (now, limit))

    def ping(self) -> None:
        self._rows(TABLE_PROBE, ())


class MysqlEngine:
    """The async engine of the database store: :class:`MysqlSql` in a small thread pool."""

    name = "mysql"

    def __init__(
        self, url: str, timeout: float, username: str | None = None, password: str | None = None
    ) -> None:
        self.sql = MysqlSql(url, timeout, username, password)
        self.target = self.sql.target
        self._pool: ThreadPoolExecutor | None = None

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="tina4-sidecar-mysql")
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(func, *args))

    async def open(self) -> None:
        await self._call(self.sql.open)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    async def get(self, key: str, now: float) -> bytes | None:
        return await self._call(self.sql.get, key, now)

    async def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        return await self._call(self.sql.get_many, keys, now)

    async def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        await self._call(self.sql.set, key, ns, value, expires_at)

    async def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        return await self._call(self.sql.add, key, ns, value, expires_at, now)

    async def delete(self, key: str, now: float) -> bool:
        return await self._call(self.sql.delete, key, now)

    async def delete_many(self, keys: list[str]) -> None:
        await self._call(self.sql.delete_many, keys)

    async def clear(self, ns: str) -> None:
        await self._call(self.sql.clear, ns)

    async def count(self, ns: str, now: float) -> int:
        return await self._call(self.sql.count, ns, now)

    async def sweep(self, now: float, limit: int) -> int:
        return await self._call(self.sql.sweep, now, limit)

    async def ping(self) -> None:
        await self._call(self.sql.ping)
