"""The database store on PostgreSQL: psycopg 3 async through a small ``AsyncConnectionPool``.

``open`` makes one direct connection first, so that a wrong password or an unknown database
surfaces as PostgreSQL's own message (a pool would only report that it timed out), and creates
the table under an advisory lock: two sidecars running ``CREATE TABLE IF NOT EXISTS`` at the
same moment can otherwise fail with a unique violation on ``pg_type``.

Every connection gets ``statement_timeout`` equal to the store's timeout, so the server stops
work that the caller has given up on. Each query runs in its own task and the caller awaits it
through ``asyncio.shield``: when the caller's timeout cancels the wait, psycopg's cancellation
handshake (up to seconds against an unresponsive server) finishes in the background instead of
holding up the request. ``clear()`` gets a longer server-side bound, so a clear of a large
layer that outlasts the caller's timeout (reported as failed) still completes.

The pool does not check connections before lending them: that would double the round trips of
every cache call. After a server restart each pooled connection fails once (a counted error, a
miss), the pool drops it and reconnects in the background.

A slot whose connection broke retries once and then leaves reconnecting to demand
(``reconnect_timeout`` is the store's timeout, not psycopg_pool's five minutes). The pool's own
retries back off exponentially (1, 2, 4, 8, 16 s ...) and every retrying slot counts as a
connection, so while all slots retry the pool lends nothing and does not grow: every call, the
fallback's probe included, waits out its timeout until a retry comes round, which can be as long
again as the outage has lasted. A slot that has given up is not counted: the next call that
finds no connection grows the pool, which connects at once, so the store answers again within
about a probe interval of the server.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from tina4_sidecar.store.backends.database import TABLE, TABLE_PROBE, table_recreated, table_refused
from tina4_sidecar.store.contract import StoreUnavailable

POOL_MAX = 4
CLEAR_TIMEOUT = "60s"
"""Server-side bound of ``clear()``: it runs on after a caller's timeout, so that it takes effect."""
SCHEMA_LOCK = 0x7134_CACE
"""Advisory lock key held while creating the table (any constant; shared by all sidecars)."""

type Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (cache_key TEXT PRIMARY KEY, ns TEXT NOT NULL, "
    "value BYTEA NOT NULL, expires_at DOUBLE PRECISION NULL)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ns ON {TABLE} (ns, expires_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires_at)",
)
_GET = f"SELECT value FROM {TABLE} WHERE cache_key = %s AND {_LIVE}"
_GET_MANY = f"SELECT cache_key, value FROM {TABLE} WHERE cache_key = ANY(%s) AND {_LIVE}"
_SET = (
    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (cache_key) DO UPDATE SET ns = EXCLUDED.ns, value = EXCLUDED.value, "
    "expires_at = EXCLUDED.expires_at"
)
# One statement: the insert, or, on a conflict, an overwrite of a row that has expired. Under
# READ COMMITTED a conflicting row that another transaction is writing is waited for and the
# WHERE re-checked on its newest version, so of concurrent adds exactly one writes a row.
_ADD = (
    f"INSERT INTO {TABLE} AS cache (cache_key, ns, value, expires_at) "
    "VALUES (%(key)s, %(ns)s, %(value)s, %(expires_at)s) "
    "ON CONFLICT (cache_key) DO UPDATE SET ns = EXCLUDED.ns, value = EXCLUDED.value, "
    "expires_at = EXCLUDED.expires_at "
    "WHERE cache.expires_at IS NOT NULL AND cache.expires_at <= %(now)s"
)
_DELETE = f"DELETE FROM {TABLE} WHERE cache_key = %s RETURNING {_LIVE}"
_DELETE_MANY = f"DELETE FROM {TABLE} WHERE cache_key = ANY(%s)"
_CLEAR = f"DELETE FROM {TABLE} WHERE ns = %s"
_COUNT = f"SELECT count(*) FROM {TABLE} WHERE ns = %s AND {_LIVE}"
# By primary key, not ctid, and re-checking expiry outside the subquery: a row that another
# sidecar refreshes meanwhile is re-evaluated after its lock and survives. SKIP LOCKED lets
# several sidecars sweep at once without queueing on each other's rows.
_SWEEP = (
    f"DELETE FROM {TABLE} WHERE cache_key IN (SELECT cache_key FROM {TABLE} "
    "WHERE expires_at <= %(now)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AND expires_at <= %(now)s"
)


class PostgresEngine:
    """The SQL of the database store, spoken to PostgreSQL."""

    name = "postgresql"

    def __init__(
        self,
        url: str,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
        name: str = "cache",
    ) -> None:
        try:
            params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's reason can quote the password (a bad percent-escape in it), so it is not shown.
            raise ValueError(
                "libpq cannot parse this PostgreSQL URL; check its port, percent-escapes and query parameters"
            ) from None
        if username and not params.get("user"):
            params["user"] = username
        if password and "password" not in params:
            params["password"] = password
        # libpq counts whole seconds and treats anything below 2 as 2.
        params.setdefault("connect_timeout", str(max(2, math.ceil(timeout))))
        params.setdefault("application_name", "tina4-sidecar")
        self.conninfo = make_conninfo(**params)
        self.target = _safe_target(params)
        self.timeout = timeout
        self._pool_name = f"tina4-sidecar {name}"
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._recreating = asyncio.Lock()

    async def open(self) -> None:
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"database: cannot connect to {self.target}: {_reason(exc)}") from None
        try:
            async with conn:
                await _create_table(conn)
                await conn.execute(TABLE_PROBE)  # a table of another layout under our name: refused
        except psycopg.Error as exc:
            raise table_refused(self.target, _reason(exc)) from None
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=POOL_MAX,
            timeout=self.timeout,
            reconnect_timeout=self.timeout,
            kwargs={"autocommit": True},
            configure=self._configure,
            name=self._pool_name,
            open=False,
        )
        await pool.open(wait=False)
        self._pool = pool

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=self.timeout)

    async def get(self, key: str, now: float) -> bytes | None:
        rows = await self._query(_GET, (key, now))
        return bytes(rows[0][0]) if rows else None

    async def get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        rows = await self._query(_GET_MANY, (keys, now))
        return {key: bytes(value) for key, value in rows}

    async def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None:
        await self._execute(_SET, (key, ns, value, expires_at))

    async def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        params = {"key": key, "ns": ns, "value": value, "expires_at": expires_at, "now": now}
        return await self._execute(_ADD, params) == 1  # 0: the conflicting row is live

    async def delete(self, key: str, now: float) -> bool:
        rows = await self._query(_DELETE, (key, now))
        return bool(rows and rows[0][0])

    async def delete_many(self, keys: list[str]) -> None:
        await self._execute(_DELETE_MANY, (keys,))

    async def clear(self, ns: str) -> None:
        async def run(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute("SELECT set_config('statement_timeout', %s, true)", (CLEAR_TIMEOUT,))
                await conn.execute(_CLEAR, (ns,))

        await self._detached(run)

    async def count(self, ns: str, now: float) -> int:
        rows = await self._query(_COUNT, (ns, now))
        return int(rows[0][0])

    async def sweep(self, now: float, limit: int) -> int:
        return await self._execute(_SWEEP, {"now": now, "limit": limit})

    async def ping(self) -> None:
        await self._query(TABLE_PROBE, ())

    # -- running statements -------------------------------------------------------------------

    async def _query(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params, binary=True)
            return await cursor.fetchall()

        return await self._detached(run)

    async def _execute(self, sql: str, params: Any) -> int:
        async def run(conn: Conn) -> int:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

        return await self._detached(run)

    async def _detached[T](self, work: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the database store is not open")

        async def with_connection() -> T:
            async with pool.connection() as conn:
                return await self._with_table(conn, work)

        task = asyncio.create_task(with_connection())
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    async def _with_table[T](self, conn: Conn, work: Callable[[Conn], Awaitable[T]]) -> T:
        """``work(conn)``, once more after creating the table again if it has gone (see database.py)."""
        try:
            return await work(conn)
        except psycopg.errors.UndefinedTable:
            # One connection at a time: the others then find the table and log nothing.
            async with self._recreating:
                if await _create_table(conn):
                    table_recreated(self.target)
        return await work(conn)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that gave up must not leave "never retrieved" noise

    async def _configure(self, conn: Conn) -> None:
        millis = max(1, math.ceil(self.timeout * 1000))
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{millis}ms",))


async def _create_table(conn: Conn) -> bool:
    """Create the table and its indexes unless the table exists; True when this call ran the DDL."""
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    row = await cursor.fetchone()
    if row is not None and row[0]:
        return False  # already there: needs no CREATE privilege, which a DBA may not have granted
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in _SCHEMA:
            await conn.execute(statement)
    return True


def _safe_target(params: dict[str, Any]) -> str:
    """``postgresql://user@host:port/db`` without the password, for messages and stats."""
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def _reason(exc: psycopg.Error) -> str:
    """PostgreSQL's message, on one line (libpq prefixes every attempted address)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines)[:300] or type(exc).__name__
