"""``Database``: Tina4's Database with the chapter's query cache done right.

App code uses it exactly as the chapter uses Tina4's (``Database()`` reads
``TINA4_DATABASE_URL``; ``fetch``, ``fetch_one``, ``fetch_all``, ``execute``, ``insert``...,
``cache_stats()``, ``cache_clear()``), and gets the same result types back. The SQL work is
Tina4's own ``Database``, built with Tina4's query cache switched off for good; the caching is
this module's:

* **Request-scoped layer** (``TINA4_AUTO_CACHING``, on by default): identical reads within one
  request hit the database once. Scoped to the request through a ContextVar, never to a
  connection object (``client/request_scope.py``); flushed on any write in that request; outside
  a request its entries live ``TINA4_AUTO_CACHING_TTL`` seconds.
* **Persistent layer** (``TINA4_DB_CACHE``): results shared across requests and app instances in
  the store's ``query`` layer for ``TINA4_DB_CACHE_TTL`` seconds, invalidated per table, on every
  instance sharing the store, by invalidation tokens (``client/query_cache.py``).

Reads look in the request scope, then the persistent layer, then ask the database. The cache keeps
private copies (``query_cache.Snapshot``; JSON text in the store) and every hit hands out a new
copy: a caller that mutates what it got cannot change what the next caller gets, and a hit is equal
to, and of the same types as, a fresh result. ``no_cache=True`` neither reads nor writes either
layer (a write through ``fetch`` still invalidates). Inside a transaction (``start_transaction()``,
``transaction()``, or a pending write with ``TINA4_AUTOCOMMIT=false``) reads bypass both layers:
they may see uncommitted rows, which must never reach a cache.

Invalidation order, and why reads record tokens first:

1. A cacheable read reads the tokens of its scopes (its tables, the database-wide scope)
   BEFORE it runs its query, and stores its result with those tokens. An entry is served only
   while every token it recorded is still current.
2. A write bumps its tables' tokens AFTER it commits: right after the statement in autocommit
   mode, at ``commit()`` inside a transaction.

Take a reader R and a writer W. If R's query ran before W committed, R's rows are old; R read its
tokens before its query, so before W committed, so before W's bump: R's entry recorded the old
token and is never served after the bump. If R's query ran after W committed, its rows are new,
whatever tokens it recorded. So no entry holding pre-commit rows outlives the bump, including
one whose read was in flight while W committed (the django-cacheops rule that
django-cachalot's timestamps miss). The only window is between W's commit and W's bump (one
store round trip), in which any cache, this one included, still serves the old rows.

A bump BEFORE the write as well would buy nothing: until W commits, the old rows are the truth,
and a reader between that early bump and the commit would record the early token and cache old
rows all the same, so the bump after the commit is needed anyway; the early one only costs a
round trip and throws away entries that were still right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from tina4_sidecar.client.query.keys import Unencodable, database_hash, entry_key, identity
from tina4_sidecar.client.query.layer import PersistentLayer
from tina4_sidecar.client.query.scopes import (
    COARSE,
    SchemaFacts,
    any_scope,
    cached_facts,
    db_scope,
    forget_facts,
    keep_facts,
    read_facts,
    read_scopes,
    write_scopes,
)
from tina4_sidecar.client.query.snapshot import (
    FETCH,
    ONE,
    Snapshot,
    snapshot,
)
from tina4_sidecar.client.request_scope import ambient, current, flush_after_write, hook_tina4_request_start
from tina4_sidecar.client.sql_tables import OTHER, WRITE, SqlShape, analyze, dialect_of
from tina4_sidecar.config import QueryCacheSettings, load_settings

log = logging.getLogger(__name__)

_tina4_uncached: type | None = None


class _Off:
    """A data descriptor that reads False and ignores assignments."""

    def __get__(self, obj: object, owner: type | None = None) -> bool:
        return False

    def __set__(self, obj: object, value: object) -> None:
        return None


def _uncached_class() -> type:
    """Tina4's Database class with its own query cache switched off, created on first use.

    Tina4 decides in ``__init__`` from ``TINA4_AUTO_CACHING``/``TINA4_DB_CACHE`` and keeps the
    answer in three attributes that every cache path tests. Read-only False descriptors on the
    subclass win over those assignments, so Tina4 never builds its cache backend (no second Redis
    client, no ``tina4_cache`` table), never serves from it and never clears it on writes.
    """
    global _tina4_uncached
    if _tina4_uncached is None:
        from tina4_python.database.connection import Database as Tina4Database

        class Tina4WithoutQueryCache(Tina4Database):  # type: ignore[misc]
            _cache_enabled = _Off()
            _cache_persistent = _Off()
            _cache_request_scoped = _Off()

        _tina4_uncached = Tina4WithoutQueryCache
    return _tina4_uncached


def _bare_table(name: str) -> str:
    return name.split(".")[-1].strip().strip('"`[]').lower()


class Database:
    """A Tina4 database connection (a pool) with the request-scoped and persistent query caches.

    ``Database(url=None, username="", password="", pool=None, **kwargs)`` takes what Tina4's
    takes; without ``url`` it reads ``TINA4_DATABASE_URL``. Anything not defined here (``close``,
    ``get_last_id``, ``get_error``, ``get_tables``, ``get_columns``, ``table_exists``,
    ``get_next_id``, ``adapter``, ``pool``...) is Tina4's own.
    """

    def __init__(
        self,
        url: str | None = None,
        username: str = "",
        password: str = "",
        pool: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._db: Any = _uncached_class()(url, username=username, password=password, pool=pool, **kwargs)
        self.url: str = self._db.url
        settings = load_settings(QueryCacheSettings)  # per Database(), as Tina4 reads them
        self._request_layer = settings.auto_caching
        self._request_ttl = settings.auto_caching_ttl
        self._persistent = PersistentLayer(settings) if settings.db_cache else None
        self._engine = str(self._db.get_database_type())
        self._dialect = dialect_of(self._engine)
        try:
            path = str(self._db._connection_path())
        except Exception:
            path = self.url
        options = kwargs.get("options")
        self._ident = identity(self.url, self._engine, path, options if isinstance(options, str) else None)
        self._dbh = database_hash(self._ident)
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._pending: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        hook_tina4_request_start()

    def __getattr__(self, name: str) -> Any:
        if name == "_db":
            raise AttributeError(name)
        return getattr(self._db, name)

    def __repr__(self) -> str:
        return f"<tina4_sidecar Database {self._ident!r}>"

    # -- reads ------------------------------------------------------------------------------------

    def fetch(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int = 100,
        offset: int = 0,
        no_cache: bool = False,
    ) -> Any:
        """Rows ``offset``..``offset+limit`` as Tina4's ``DatabaseResult`` (``limit <= 0``: all)."""
        return self._read(
            FETCH,
            sql,
            params,
            limit,
            offset,
            no_cache,
            lambda: self._db.fetch(sql, params, limit, offset, no_cache=True),
        )

    def fetch_all(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int = 0,
        offset: int = 0,
        no_cache: bool = False,
    ) -> list[dict[str, Any]]:
        """All matching rows (``limit=0``) as a list of dicts."""
        found = self._read(
            FETCH,
            sql,
            params,
            limit,
            offset,
            no_cache,
            lambda: self._db.fetch(sql, params, limit, offset, no_cache=True),
            rows_only=True,
        )
        records: list[dict[str, Any]] = found if type(found) is list else found.records
        return records

    def fetch_one(self, sql: str, params: list[Any] | None = None, no_cache: bool = False) -> Any:
        """One row as a dict, or None."""
        return self._read(
            ONE, sql, params, None, None, no_cache, lambda: self._db.fetch_one(sql, params, no_cache=True)
        )

    def _read(
        self,
        kind: str,
        sql: str,
        params: Any,
        limit: int | None,
        offset: int | None,
        no_cache: bool,
        run: Callable[[], Any],
        rows_only: bool = False,
    ) -> Any:
        """``run()``'s result, or a copy of a cached one (with ``rows_only``, a hit answers just the
        rows: ``fetch_all`` needs no DatabaseResult)."""
        shape = analyze(sql, self._dialect)
        if shape.mutates:  # INSERT ... RETURNING through fetch, a function that may write...
            return self._write(shape, run)
        if no_cache or not shape.cacheable or self._held_borrow() is not None:
            return run()
        if not self._request_layer and self._persistent is None:
            return run()
        try:
            key = entry_key(self._ident, kind, sql, params, limit, offset)
        except Unencodable:
            return run()
        scope = current() if self._request_layer else None
        if scope is not None and (snap := scope.get(key)) is not None:
            return self._hit(snap, rows_only)
        tokens: dict[str, str | None] | None = None
        scopes: list[str] = []
        if self._persistent is not None:
            found, tokens, scopes = self._persistent_lookup(key, shape)
            if found is not None:  # the near cache keeps it: every hit is a copy
                if scope is not None:
                    scope.put(key, found, self._request_ttl)
                return self._hit(found, rows_only)
        result = run()
        with self._lock:
            self._misses += 1
        try:
            snap = snapshot(kind, result)
        except Unencodable as exc:
            log.debug("query cache: not caching %r: %s", sql[:80], exc)
            return result
        if scope is not None:
            scope.put(key, snap, self._request_ttl)
        if self._persistent is not None and tokens and all(t is not None for t in tokens.values()):
            self._persistent.save(key, snap, tokens, scopes)
        return result

    def _hit(self, snap: Snapshot, rows_only: bool = False) -> Any:
        with self._lock:
            self._hits += 1
        return snap.records() if rows_only and snap.kind == FETCH else snap.result(self._db)

    def _persistent_lookup(
        self, key: str, shape: SqlShape
    ) -> tuple[Snapshot | None, dict[str, str | None], list[str]]:
        assert self._persistent is not None
        facts = self._facts()
        scopes = read_scopes(self._dbh, shape, facts)
        entry, tokens = self._persistent.lookup(key, scopes)
        seen = tokens.get(db_scope(self._dbh))
        if seen is not None and seen != facts.token:  # DDL somewhere: what does this read depend on?
            facts = self._load_facts(seen)
            rescoped = read_scopes(self._dbh, shape, facts)
            if rescoped != scopes:
                scopes = rescoped
                entry, tokens = self._persistent.lookup(key, scopes)
        return entry, tokens, scopes

    def _facts(self) -> SchemaFacts:
        facts = cached_facts(self._ident)
        if facts is None:
            assert self._persistent is not None
            scope = db_scope(self._dbh)
            _, tokens = self._persistent.lookup(None, [scope])
            facts = self._load_facts(tokens.get(scope))
        return facts

    def _load_facts(self, token: str | None) -> SchemaFacts:
        facts = read_facts(self._db, self._engine, token)
        keep_facts(self._ident, facts)
        return facts

    # -- writes -----------------------------------------------------------------------------------

    def execute(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run a statement: True for a plain write, a DatabaseResult when it returns rows."""
        shape = analyze(sql, self._dialect)
        if not shape.mutates:
            return self._db.execute(sql, params)
        return self._write(shape, lambda: self._db.execute(sql, params))

    def execute_many(self, sql: str, params_list: list[list[Any]] | None = None) -> Any:
        shape = analyze(sql, self._dialect)
        if not shape.mutates:
            return self._db.execute_many(sql, params_list)
        return self._write(shape, lambda: self._db.execute_many(sql, params_list))

    def insert(self, table: str, data: dict[str, Any] | list[dict[str, Any]]) -> Any:
        return self._write(self._table_write(table), lambda: self._db.insert(table, data))

    def update(
        self,
        table: str,
        data: dict[str, Any],
        filter_sql: str | dict[str, Any] = "",
        params: list[Any] | None = None,
    ) -> Any:
        return self._write(self._table_write(table), lambda: self._db.update(table, data, filter_sql, params))

    def delete(
        self, table: str, filter_sql: str | dict[str, Any] | list[Any] = "", params: list[Any] | None = None
    ) -> Any:
        return self._write(self._table_write(table), lambda: self._db.delete(table, filter_sql, params))

    def truncate(self, table: str) -> Any:
        return self._write(self._table_write(table), lambda: self._db.truncate(table))

    @staticmethod
    def _table_write(table: str) -> SqlShape:
        return SqlShape(WRITE, frozenset({_bare_table(table)}))

    def _write(self, shape: SqlShape, run: Callable[[], Any]) -> Any:
        flush_after_write()
        try:
            return run()
        finally:
            flush_after_write()
            self._invalidate(shape)

    def _invalidate(self, shape: SqlShape) -> None:
        """Bump the scopes ``shape`` writes now, or at commit when a transaction holds them."""
        if self._persistent is None:
            return
        coarse = shape.kind == OTHER or shape.unattributed  # the scopes do not depend on the catalog
        scopes = write_scopes(self._dbh, shape, COARSE if coarse else self._facts())
        if shape.kind == OTHER:
            forget_facts(self._ident)  # DDL may have added views, triggers or foreign keys
        borrow = self._held_borrow()
        if borrow is not None:
            with self._lock:
                self._pending.setdefault(borrow, set()).update(scopes)
            return
        self._persistent.bump(scopes)

    # -- transactions -----------------------------------------------------------------------------

    def _held_borrow(self) -> Any:
        """The connection this context keeps across statements (a transaction, or a write pending
        commit with TINA4_AUTOCOMMIT=false), else None."""
        var = getattr(self._db, "_borrowed", None)
        borrow = var.get() if var is not None else None
        return borrow if borrow is not None and getattr(borrow, "sticky", False) else None

    def _settled(self, borrow: Any, committed: bool) -> list[str]:
        """The scopes a finished transaction must bump (none after a rollback)."""
        with self._lock:
            scopes = self._pending.pop(borrow, set()) if borrow is not None else set()
        return sorted(scopes) if committed else []

    def start_transaction(self) -> None:
        self._db.start_transaction()

    def commit(self) -> None:
        """Commit, then bump the tokens of every table the transaction wrote."""
        borrow = self._held_borrow()
        done = False
        try:
            self._db.commit()
            done = True
        finally:
            flush_after_write()
            # A failed commit may still have committed (the connection broke after): bump anyway.
            if borrow is not None and (not done or self._held_borrow() is not borrow):
                scopes = self._settled(borrow, committed=True)
                if scopes and self._persistent is not None:
                    self._persistent.bump(scopes)

    def rollback(self) -> None:
        borrow = self._held_borrow()
        try:
            self._db.rollback()
        finally:
            flush_after_write()
            if borrow is not None and self._held_borrow() is not borrow:
                self._settled(borrow, committed=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """``with db.transaction():`` commit on success, roll back on any error."""
        self.start_transaction()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    # -- the async twins (Tina4's ``*_async``: the sync method on a borrowed connection) ----------

    async def fetch_async(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int = 100,
        offset: int = 0,
        no_cache: bool = False,
    ) -> Any:
        return await self._db.run_async(self.fetch, sql, params, limit, offset, no_cache)

    async def fetch_all_async(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int = 0,
        offset: int = 0,
        no_cache: bool = False,
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self._db.run_async(
            self.fetch_all, sql, params, limit, offset, no_cache
        )
        return records

    async def fetch_one_async(self, sql: str, params: list[Any] | None = None, no_cache: bool = False) -> Any:
        return await self._db.run_async(self.fetch_one, sql, params, no_cache)

    async def _write_async(self, operation: Callable[..., Any], *args: Any) -> Any:
        write_async = getattr(self._db, "_write_async", None)  # keeps a manual-commit write's connection
        if write_async is not None:
            return await write_async(operation, *args)
        return await self._db.run_async(operation, *args)

    async def execute_async(self, sql: str, params: list[Any] | None = None) -> Any:
        return await self._write_async(self.execute, sql, params)

    async def execute_many_async(self, sql: str, params_list: list[list[Any]] | None = None) -> Any:
        return await self._write_async(self.execute_many, sql, params_list)

    async def insert_async(self, table: str, data: dict[str, Any] | list[dict[str, Any]]) -> Any:
        return await self._write_async(self.insert, table, data)

    async def update_async(
        self,
        table: str,
        data: dict[str, Any],
        filter_sql: str | dict[str, Any] = "",
        params: list[Any] | None = None,
    ) -> Any:
        return await self._write_async(self.update, table, data, filter_sql, params)

    async def delete_async(
        self, table: str, filter_sql: str | dict[str, Any] | list[Any] = "", params: list[Any] | None = None
    ) -> Any:
        return await self._write_async(self.delete, table, filter_sql, params)

    async def truncate_async(self, table: str) -> Any:
        return await self._write_async(self.truncate, table)

    async def start_transaction_async(self) -> None:
        await self._db.start_transaction_async()

    async def commit_async(self) -> None:
        borrow = self._held_borrow()
        done = False
        try:
            await self._db.commit_async()
            done = True
        finally:
            flush_after_write()
            if borrow is not None and (not done or self._held_borrow() is not borrow):
                scopes = self._settled(borrow, committed=True)
                if scopes and self._persistent is not None:
                    await asyncio.to_thread(self._persistent.bump, scopes)

    async def rollback_async(self) -> None:
        borrow = self._held_borrow()
        try:
            await self._db.rollback_async()
        finally:
            flush_after_write()
            if borrow is not None and self._held_borrow() is not borrow:
                self._settled(borrow, committed=False)

    @contextlib.asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[Database]:
        await self.start_transaction_async()
        try:
            yield self
        except BaseException:
            await self.rollback_async()
            raise
        await self.commit_async()

    # -- the chapter's cache API ------------------------------------------------------------------

    def cache_stats(self) -> dict[str, Any]:
        """Exactly ``enabled, mode, hits, misses, size, ttl, backend`` (the chapter's fields).

        ``mode`` is ``persistent`` when ``TINA4_DB_CACHE`` is on, else ``request`` when
        ``TINA4_AUTO_CACHING`` is, else ``off``; ``hits``/``misses`` count this object's reads
        (both layers); ``size`` is the persistent layer's entries (shared by every instance), or
        the current request's (outside a request: the process's) in request mode.
        """
        with self._lock:
            hits, misses = self._hits, self._misses
        if self._persistent is not None:
            layer = self._persistent
            size, backend = layer.size(), layer.backend_name()
            mode, ttl = "persistent", layer.ttl
        else:
            size = current().size() if self._request_layer else 0
            backend, ttl = "memory", self._request_ttl
            mode = "request" if self._request_layer else "off"
        return {
            "enabled": self._request_layer or self._persistent is not None,
            "mode": mode,
            "hits": hits,
            "misses": misses,
            "size": size,
            "ttl": ttl,
            "backend": backend,
        }

    def cache_clear(self) -> None:
        """Empty both layers for THIS database (every instance sharing the store sees the persistent
        layer's entries of it go; other databases' entries stay), and reset the counters."""
        current().flush()
        flush_after_write()
        if self._persistent is not None:
            self._persistent.bump([db_scope(self._dbh), any_scope(self._dbh)])
        with self._lock:
            self._hits = 0
            self._misses = 0

    def cache_new_request(self) -> None:
        """Tina4's request boundary for one connection: the request-scoped layer starts empty
        (ours is the request's, shared by every ``Database`` of it, so it is that scope that empties)."""
        current().flush()

    @classmethod
    def reset_request_caches(cls) -> None:
        """Tina4's request boundary (its dispatcher calls it on Tina4's class at every request; ours is
        hooked there, ``client/request_scope.py``): code calling it by hand empties the current
        request scope and the process-wide one."""
        current().flush()
        ambient().flush()
