"""The ``database`` store: cache entries in a SQL table, on PostgreSQL, MySQL/MariaDB or SQLite.

Which database: the ``url`` argument (the query cache passes ``TINA4_DB_CACHE_URL``), else
``TINA4_CACHE_URL``, else the app's ``TINA4_DATABASE_URL``, else a SQLite file
``<TINA4_CACHE_DIR>/cache.sqlite3``. PostgreSQL URLs: ``postgresql://``, ``postgres://``,
``pgsql://`` (Tina4's alias) and SQLAlchemy's ``postgresql+psycopg://``; any libpq URI parameter
works (``?sslmode=require``, ``?options=-csearch_path%3Dcache``). SQLite URLs follow Tina4:
``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:/absolute/path``,
``sqlite3:`` as an alias, ``sqlite::memory:``. ``TINA4_CACHE_USERNAME``/``PASSWORD`` fill in
what the URL leaves out. Any other engine, or a URL that cannot be parsed, is a configuration error raised by
``from_settings``: :class:`DatabaseURLError`, both a ``ConfigError`` (the command line prints it
as one line) and a ``ValueError`` (what ``open_store`` documents for a malformed URL).

The table is the chapter's ``tina4_cache`` ("a tina4_cache table in any Tina4-supported DB"),
or the name in ``TINA4_CACHE_TABLE`` (read once per process; letters, digits and ``_``). Tina4's
own in-app cache creates a ``tina4_cache(cache_key VARCHAR(255), value TEXT, expires_at)`` of
another layout; with ``install()`` Tina4's cache steps aside and never creates it, and a table of
that layout found in the database is said loudly at open (``TABLE_PROBE`` names our columns, so
the store reports the table as unusable and the fallback warns) instead of failing call by call:
drop it, or set ``TINA4_CACHE_TABLE`` to another name. Our table::

    tina4_cache(cache_key TEXT PRIMARY KEY,  -- Store.full_key(key)  (MySQL: VARBINARY(1024))
                ns TEXT NOT NULL,            -- "<namespace>:<layer>": clear() and size()
                value BYTEA | BLOB NOT NULL,
                expires_at DOUBLE PRECISION | REAL NULL)  -- epoch seconds; NULL = never

Engines: PostgreSQL (psycopg), SQLite (sqlite3) and MySQL/MariaDB (PyMySQL,
``database_mysql.py``: ``mysql://user:pass@host:3306/database``, also ``mariadb://`` and
SQLAlchemy's ``mysql+pymysql://``).

A key whose full form exceeds ``LONG_KEY_BYTES`` (PostgreSQL's btree index refuses entries over
about 2.7 kB, and response keys carry whole query strings), or that a text column cannot hold
(a NUL character, a lone surrogate), is stored under ``<namespace>:<layer>:#sha256:<digest>``;
so is a short key that itself starts with ``#sha256:``, which keeps the mapping one-to-one.

``clear()`` and ``size()`` compare ``ns`` for equality, so they touch exactly one namespace and
layer (no LIKE patterns, no escaping). Expired rows are filtered on every read and removed by
a sweep every minute; a sweep removes expired rows of every namespace, because an expired row
is dead for every reader and an application that went away leaves nobody else to sweep its rows.

``add()`` (set if absent, the cross-process lock) is one statement, ``INSERT ... ON CONFLICT
(cache_key) DO UPDATE ... WHERE <the existing row has expired>``: the primary key lets one of
several concurrent inserts through, and a conflicting row is overwritten only while it is expired
(PostgreSQL re-checks that condition on the newest version of the row after waiting for its lock;
SQLite runs one writer at a time). One row changed means this call stored the value.

A table that goes missing under a running store (dropped by hand, a restore without it, a crash
right after it was created) is re-created: a statement that fails because the table does not exist
is run once more after ``CREATE TABLE/INDEX IF NOT EXISTS`` (under the same advisory lock as at
``open`` on PostgreSQL), with one warning. Running it again is safe: a statement that names a
missing table did nothing. ``ping()`` looks up one primary key in the table instead of ``SELECT 1``,
so it goes through the same recovery, and a table that cannot be re-created (no CREATE privilege)
makes the store unavailable: the fallback then serves from the file store and probes until the
table is back, where a ``SELECT 1`` would have kept it on a store whose every call fails.

Clock: expiry times are written and compared with the sidecar's ``time.time()``, never the
database's ``now()``. Sidecars on several hosts need synced clocks only for TTL accuracy: a host
whose clock runs ahead sees entries expire early. Invalidation (delete, clear) never depends
on clocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import random
import re
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tina4_sidecar.config import ConfigError
from tina4_sidecar.store.contract import Store, StoreStats, StoreUnavailable

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

log = logging.getLogger("tina4_sidecar.store")

DEFAULT_TABLE = "tina4_cache"


def _table_name() -> str:
    name = os.environ.get("TINA4_CACHE_TABLE", "").strip() or DEFAULT_TABLE
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ConfigError(f"TINA4_CACHE_TABLE={name!r}: a table name of letters, digits and _ (at most 63)")
    return name


TABLE = _table_name()
TABLE_PROBE = f"SELECT ns, value, expires_at FROM {TABLE} WHERE cache_key = ''"
"""The engines' ping: one index lookup that fails, like every statement, when the table is missing,
and that names our columns, so a table of another layout under our name is refused at open."""
SQLITE_DEFAULT_FILE = "cache.sqlite3"
SWEEP_INTERVAL = 60.0
SWEEP_BATCH = 1000
SWEEP_MAX_BATCHES = 20
"""A sweep stops after this many batches; the next one carries on, so no sweep runs long."""

LONG_KEY_BYTES = 1000
LONG_KEY_MARK = "#sha256:"

POSTGRES_SCHEMES = ("postgresql", "postgres", "pgsql", "postgresql+psycopg", "postgresql+psycopg2")
SQLITE_SCHEMES = ("sqlite", "sqlite3")
MYSQL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")


def table_refused(target: str, reason: str) -> StoreUnavailable:
    """The store cannot create or use its table: the message names the table and the database, and
    when a column is missing (Tina4's own ``tina4_cache`` layout, from its in-app cache run before
    ``install()``) says which setting moves the store to a table of its own."""
    message = f"database: cannot create or use table {TABLE} in {target}: {reason}"
    if "column" in reason.lower():
        message += (
            f" (a {TABLE} of another layout, e.g. Tina4's own cache's: set TINA4_CACHE_TABLE to another name)"
        )
    return StoreUnavailable(message)


class DatabaseURLError(ConfigError, ValueError):
    """The database store's URL names an engine it does not speak, or cannot be parsed."""


class SqlEngine(Protocol):
    """What the store needs from a database; keys are full keys, times are epoch seconds.

    Methods may raise anything; the store's guard turns failures into misses and counted errors.
    ``open`` raises StoreUnavailable with a message naming the database (never its password).
    """

    name: str
    target: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, key: str, now: float) -> bytes | None: ...

    async def get_many(self, keys: list[str], now: float) -> dict[str, bytes]: ...

    async def set(self, key: str, ns: str, value: bytes, expires_at: float | None) -> None: ...

    async def add(self, key: str, ns: str, value: bytes, expires_at: float | None, now: float) -> bool:
        """Insert, or overwrite a row that has expired by ``now``; True when a row was written."""
        ...

    async def delete(self, key: str, now: float) -> bool: ...

    async def clear(self, ns: str) -> None: ...

    async def count(self, ns: str, now: float) -> int: ...

    async def sweep(self, now: float, limit: int) -> int: ...

    async def ping(self) -> None: ...


@runtime_checkable
class DeletesManyRows(Protocol):
    """An engine that deletes many rows in one statement (the fallback's replay uses it)."""

    async def delete_many(self, keys: list[str]) -> None: ...


class DatabaseStore(Store):
    """One namespace and layer in the ``tina4_cache`` table (``TABLE``) of a SQL database."""

    backend_name = "database"

    def __init__(
        self,
        engine: SqlEngine,
        namespace: str,
        layer: str,
        timeout: float = 1.0,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        super().__init__(namespace, layer, timeout)
        self.engine = engine
        self.ns = self.prefix.removesuffix(":")
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> DatabaseStore:
        """Raises DatabaseURLError for a URL of an engine this store does not speak."""
        return cls(
            engine_for(settings, url, name=f"{settings.cache_namespace}:{layer}"),
            settings.cache_namespace,
            layer,
            settings.cache_timeout,
        )

    def row_key(self, key: str) -> str:
        """The ``cache_key`` of ``key``: its full key, or a digest where a SQL text column cannot hold it."""
        full = self.full_key(key)
        try:
            storable = len(full.encode()) <= LONG_KEY_BYTES and "\x00" not in full
        except UnicodeEncodeError:  # a lone surrogate: not valid UTF-8 text
            storable = False
        if storable and not key.startswith(LONG_KEY_MARK):
            return full
        return self.prefix + LONG_KEY_MARK + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    async def sweep(self, now: float | None = None) -> int:
        """Delete expired rows (of every namespace) in bounded batches; the number deleted."""
        at = time.time() if now is None else now
        removed = 0
        for _ in range(SWEEP_MAX_BATCHES):
            batch = await self._guard("sweep", self.engine.sweep(at, SWEEP_BATCH), -1)
            if batch < 0:
                break
            removed += batch
            if batch < SWEEP_BATCH:
                break
        return removed

    async def stats(self) -> StoreStats:
        snapshot = await super().stats()
        return dataclasses.replace(snapshot, extra={"engine": self.engine.name, "target": self.engine.target})

    async def _open(self) -> None:
        await self.engine.open()
        if self.sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name=f"sweep {self.ns}")

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.engine.close()

    async def _sweep_forever(self) -> None:
        while True:
            # Jitter: the stores of one sidecar, and several sidecars, should not sweep in lockstep.
            await asyncio.sleep(self.sweep_interval * random.uniform(0.8, 1.2))
            await self.sweep()

    async def _get(self, key: str) -> bytes | None:
        return await self.engine.get(self.row_key(key), time.time())

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        rows = [self.row_key(key) for key in keys]
        found = await self.engine.get_many(list(dict.fromkeys(rows)), time.time())
        return [found.get(row) for row in rows]

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        await self.engine.set(self.row_key(key), self.ns, value, self.expires_at(ttl))

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        now = time.time()
        return await self.engine.add(self.row_key(key), self.ns, value, self.expires_at(ttl, now), now)

    async def _delete(self, key: str) -> bool:
        return await self.engine.delete(self.row_key(key), time.time())

    async def _delete_many(self, keys: list[str]) -> None:
        """Delete every key; raises on failure (the fallback's replay of an outage calls it)."""
        rows = list(dict.fromkeys(self.row_key(key) for key in keys))
        if isinstance(self.engine, DeletesManyRows):
            await self.engine.delete_many(rows)
            return
        now = time.time()
        for row in rows:
            await self.engine.delete(row, now)

    async def _clear(self) -> None:
        await self.engine.clear(self.ns)

    async def _size(self) -> int:
        return await self.engine.count(self.ns, time.time())

    async def _ping(self) -> None:
        await self.engine.ping()


def table_recreated(target: str) -> None:
    """The one warning of an engine that found its table missing and created it again."""
    log.warning("the cache table %s was missing in %s; created it again", TABLE, target)


def database_url(settings: CacheSettings, url: str | None = None) -> tuple[str, str]:
    """The URL to use and the setting it came from (for error messages)."""
    if url and url.strip():
        return url.strip(), "the database store's URL"
    if settings.cache_url:
        return settings.cache_url, "TINA4_CACHE_URL"
    if settings.database_url:
        return settings.database_url, "TINA4_DATABASE_URL"
    return f"sqlite:///{settings.cache_dir / SQLITE_DEFAULT_FILE}", "TINA4_CACHE_DIR"


def engine_for(settings: CacheSettings, url: str | None = None, name: str = "cache") -> SqlEngine:
    """The engine for the resolved URL; DatabaseURLError names the setting when it cannot be used."""
    chosen, source = database_url(settings, url)
    scheme, sep, _ = chosen.partition(":")
    scheme = scheme.lower()
    if scheme in SQLITE_SCHEMES:
        from tina4_sidecar.store.backends.database_sqlite import SqliteEngine, sqlite_path

        try:
            return SqliteEngine(sqlite_path(chosen), settings.cache_timeout)
        except ValueError as exc:
            raise DatabaseURLError(f"{source}: {exc}") from None
    if sep and scheme in POSTGRES_SCHEMES:
        from tina4_sidecar.store.backends.database_postgres import PostgresEngine

        password = settings.cache_password.get_secret_value() if settings.cache_password else None
        try:
            return PostgresEngine(
                "postgresql" + chosen[len(scheme) :],
                settings.cache_timeout,
                username=settings.cache_username,
                password=password,
                name=name,
            )
        except ValueError as exc:
            raise DatabaseURLError(f"{source}: {exc}") from None
    if sep and scheme in MYSQL_SCHEMES:
        from tina4_sidecar.store.backends.database_mysql import MysqlEngine

        password = settings.cache_password.get_secret_value() if settings.cache_password else None
        try:
            return MysqlEngine(
                "mysql" + chosen[len(scheme) :], settings.cache_timeout, settings.cache_username, password
            )
        except ValueError as exc:
            raise DatabaseURLError(f"{source}: {exc}") from None
    # Only the scheme may be shown: the rest of the URL can hold a password.
    looks_like_url = re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) and chosen[len(scheme) :].startswith("://")
    shown = f"a {scheme}:// URL" if looks_like_url else "a value without a driver:// scheme"
    raise DatabaseURLError(
        f"{source}: the database store speaks PostgreSQL (postgresql://, postgres://, pgsql://, "
        f"postgresql+psycopg://), MySQL/MariaDB (mysql://, mariadb://) and SQLite "
        f"(sqlite:///relative/path, sqlite:////absolute/path), "
        f"not {shown}; set TINA4_CACHE_URL to one of those or choose another TINA4_CACHE_BACKEND"
    )
