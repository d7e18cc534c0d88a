"""The database query cache's machinery: settings, keys, result encoding, invalidation scopes and
the persistent layer in the shared store. ``client/database.py`` puts it together.

Persistent entries live in the store's ``query`` layer under ``q:<sha256>`` of the database's
identity, the fetch kind, the SQL, its parameters and limit/offset. Invalidation tokens
(``store/invalidation.py``) live in the ``meta`` layer, so that ``cache_stats()["size"]`` counts
entries only and ``cache_clear()`` leaves the tokens alone. Per database identity (hashed,
``<dbh>``) there are three kinds of scope:

* ``~tok:qtable:<dbh>:<table>``: bumped by every write to ``<table>``; recorded by reads of it;
* ``~tok:qdb:<dbh>``: bumped by writes this library cannot attribute to tables (DDL, several
  statements, functions that may write, triggers and rules); recorded by EVERY read;
* ``~tok:qany:<dbh>``: bumped by EVERY write; recorded by reads whose tables' writes cannot be
  seen by name: reads of views, and every read on an engine whose catalog is not read here
  (anything but SQLite and PostgreSQL), where invalidation is therefore per database.

What the catalog adds (``SchemaFacts``, read once per database and minute, and again whenever
the database-wide token moves): views; tables with triggers or rules (a write to them bumps the
database-wide token); foreign keys with ``ON DELETE/UPDATE CASCADE | SET NULL | SET DEFAULT`` and
PostgreSQL inheritance/partitions (a write to one table also bumps the tables it changes).

Values are JSON, never pickle: a header line with the recorded tokens, then the payload, whose
non-JSON values (bytes, bytearray, memoryview, Decimal, datetime, date, time, timedelta, UUID)
are written as JSON text and listed out of band, per column (``"xc": {"price": "dec"}``) where
a whole column holds one such type, else per value (``"x": [[path, tag], ...]``), so that a
JSON column holding ``{"$type": ...}`` can never be mistaken for a tagged value. A result
holding a type outside that list is not cached at all, in either layer.

In process, results are kept as :class:`Snapshot` objects (private rows), and each hit copies
them: a request-scoped hit costs a copy, not a parse.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tina4_sidecar.client import runtime
from tina4_sidecar.client.sql_tables import OTHER, SqlShape
from tina4_sidecar.config import Backend, QueryCacheSettings, load_settings
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import new_token, scope, tokens_from

log = logging.getLogger(__name__)

FORMAT = 2
FACTS_MAX_AGE = 60.0
"""Seconds before the catalog facts of a database are read again, DDL or not."""

FETCH, ONE = "fetch", "one"
"""Fetch kinds: ``fetch``/``fetch_all`` (a DatabaseResult) and ``fetch_one`` (a row or None)."""

# -- settings -------------------------------------------------------------------------------------

_settings: QueryCacheSettings | None = None
_settings_lock = threading.Lock()


def query_settings() -> QueryCacheSettings:
    """``TINA4_AUTO_CACHING*`` and ``TINA4_DB_CACHE*``, read once (again after ``runtime.reset()``)."""
    global _settings
    found = _settings
    if found is None:
        with _settings_lock:
            if _settings is None:
                _settings = load_settings(QueryCacheSettings)
            found = _settings
    return found


def _forget() -> None:
    global _settings
    with _settings_lock:
        _settings = None
    with _facts_lock:
        _facts.clear()


runtime.on_reset(_forget)

# -- identity and keys ----------------------------------------------------------------------------


def identity(url: str, engine: str, connection_path: str, options: str | None = None) -> str:
    """The database a result came from: ``engine://host:port/database[?options]``, no credentials.

    Like Tina4's, it leaves out user and password (a rotated password must not cold-start the
    cache, and keys must carry no secret), but it keeps libpq's ``options``, from the URL or
    from ``Database(url, options=...)`` (a ``search_path`` names other tables under the same
    names; Tina4 3.13 passes only the keyword on to the driver), and a SQLite file is its
    absolute path (two apps in different directories may both say ``sqlite:///data/app.db``).
    Each in-memory SQLite database is its own, so it gets a unique identity.
    """
    if engine == "sqlite":
        if connection_path == ":memory:":
            return f"sqlite::memory:{uuid.uuid4().hex}"
        import os

        return "sqlite:" + os.path.realpath(connection_path)
    try:
        from tina4_python.database.database_url import DatabaseUrl

        parsed = DatabaseUrl(url)
        base = f"{parsed.engine}://{parsed.host or ''}:{parsed.port or ''}/{parsed.database}"
    except Exception:  # an unparseable URL still needs a stable identity of its own
        return url
    found = [*parse_qs(urlsplit(url).query).get("options", []), *([options] if options else [])]
    return base + "".join("?options=" + option for option in found)


def database_hash(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def entry_key(
    ident: str, kind: str, sql: str, params: Any, limit: int | None = None, offset: int | None = None
) -> str:
    """``q:<sha256>`` of everything that decides the answer. Raises Unencodable for odd params."""
    material = json.dumps(
        [FORMAT, ident, kind, sql, encode_value(params), limit, offset], separators=(",", ":")
    )
    return "q:" + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


# -- encoding -------------------------------------------------------------------------------------


class Unencodable(Exception):
    """A value the JSON encoding does not carry faithfully: such a result is not cached."""


_NATIVE = frozenset({str, int, float, bool, type(None)})


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _aware_ok(value: dt.datetime | dt.time) -> bool:
    return value.tzinfo is None or type(value.tzinfo) is dt.timezone


def _encode_datetime(value: Any) -> str:
    if not _aware_ok(value):
        raise Unencodable(f"a datetime with tzinfo {type(value.tzinfo).__name__}")
    return str(value.isoformat())


_ENCODERS: dict[type, tuple[str, Any]] = {
    bytes: ("b", _b64),
    bytearray: ("ba", lambda v: _b64(bytes(v))),
    memoryview: ("mv", lambda v: _b64(bytes(v))),
    Decimal: ("dec", str),
    dt.datetime: ("dt", _encode_datetime),
    dt.date: ("d", lambda v: v.isoformat()),
    dt.time: ("t", _encode_datetime),
    dt.timedelta: ("td", lambda v: [v.days, v.seconds, v.microseconds]),
    uuid.UUID: ("u", str),
}

_DECODERS: dict[str, Any] = {
    "b": base64.b64decode,
    "ba": lambda v: bytearray(base64.b64decode(v)),
    "mv": lambda v: memoryview(base64.b64decode(v)),
    "dec": Decimal,
    "dt": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "t": dt.time.fromisoformat,
    "td": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "u": uuid.UUID,
}


def _walk(value: Any, path: list[Any], marks: list[list[Any]]) -> Any:
    kind = type(value)
    if kind in _NATIVE:
        return value
    if kind is list:
        return [_walk(item, [*path, i], marks) for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise Unencodable(f"a mapping key of type {type(key).__name__}")
            out[key] = _walk(item, [*path, key], marks)
        return out
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        raise Unencodable(f"a value of type {kind.__name__}")
    tag, encode = encoder
    marks.append([path, tag])
    return encode(value)


def encode_value(value: Any) -> Any:
    """``value`` as JSON-ready data with its marks: ``[data, marks]`` (params of keys)."""
    marks: list[list[Any]] = []
    if isinstance(value, tuple):
        value = list(value)
    return [_walk(value, [], marks), marks]


_IMMUTABLE_SPECIAL = frozenset({bytes, Decimal, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID})
_META = ("count", "limit", "offset", "affected_rows", "last_id", "error", "sql")


def _inspect(value: Any) -> bool:
    """True when ``value`` holds something mutable; Unencodable for a type the encoding lacks."""
    kind = type(value)
    if kind in _NATIVE or kind in _IMMUTABLE_SPECIAL:
        if kind is dt.datetime or kind is dt.time:
            _encode_datetime(value)  # raises for a tzinfo that JSON cannot bring back
        return False
    if kind is list:
        for item in value:
            _inspect(item)
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise Unencodable(f"a mapping key of type {type(key).__name__}")
            _inspect(item)
        return True
    if kind is bytearray or kind is memoryview:
        return True
    raise Unencodable(f"a value of type {kind.__name__}")


def _row_is_mutable(row: Any) -> bool:
    if type(row) is not dict:
        raise Unencodable(f"a row of type {type(row).__name__}")
    mutable = False
    for value in row.values():
        if type(value) not in _NATIVE:
            mutable = _inspect(value) or mutable
    return mutable


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _clone(item) for key, item in value.items()}
    if kind is list:
        return [_clone(item) for item in value]
    if kind is bytearray:
        return bytearray(value)
    if kind is memoryview:
        return memoryview(bytes(value))
    return value


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A query result as the cache keeps it: private rows that no caller ever holds.

    ``result()`` hands out a new copy each time: row dicts are copied, and so is every mutable
    value inside them (JSON objects and arrays, bytearray, memoryview); str, numbers, bytes,
    Decimal, dates and UUIDs are immutable and shared. A hit therefore costs a copy, not a parse.
    """

    kind: str
    rows: Any  # FETCH: list of row dicts; ONE: a row dict or None
    meta: tuple[Any, ...]  # FETCH: DatabaseResult's count, limit, offset, ... and returns_rows
    mutable: bool

    @property
    def weight(self) -> int:
        """Roughly the cells held (what a request scope bounds)."""
        if self.kind == ONE:
            return 1 + (len(self.rows) if self.rows else 0)
        return 1 + sum(len(row) for row in self.rows)

    def result(self, adapter: Any) -> Any:
        if self.kind == ONE:
            if self.rows is None:
                return None
            return _clone(self.rows) if self.mutable else dict(self.rows)
        records = [_clone(row) for row in self.rows] if self.mutable else [dict(row) for row in self.rows]
        count, limit, offset, affected, last_id, error, sql, returns_rows = self.meta
        result = _database_result()(
            records=records,
            count=count,
            limit=limit,
            offset=offset,
            affected_rows=affected,
            last_id=last_id,
            error=error,
            sql=sql,
            adapter=adapter,
        )
        if returns_rows:
            result.with_rows()
        return result


def _database_result() -> Any:
    from tina4_python.database.adapter import DatabaseResult

    return DatabaseResult


def snapshot(kind: str, result: Any) -> Snapshot:
    """A private copy of a fresh ``fetch`` (DatabaseResult) or ``fetch_one`` (row or None) result.

    Raises Unencodable when the result holds a type the JSON encoding cannot bring back, so that
    both layers cache the same results.
    """
    if kind == ONE:
        if result is None:
            return Snapshot(ONE, None, (), False)
        mutable = _row_is_mutable(result)
        return Snapshot(ONE, _clone(result) if mutable else dict(result), (), mutable)
    records = result.records
    if type(records) is not list:
        raise Unencodable(f"records of type {type(records).__name__}")
    mutable = False
    for row in records:
        mutable = _row_is_mutable(row) or mutable
    meta = tuple(getattr(result, name) for name in _META)
    for name, value in zip(_META, meta, strict=True):
        if type(value) not in _NATIVE:
            raise Unencodable(f"a result field {name} of type {type(value).__name__}")
    rows = [_clone(row) for row in records] if mutable else [dict(row) for row in records]
    return Snapshot(FETCH, rows, (*meta, bool(getattr(result, "_returns_rows", False))), mutable)


def _column_tags(rows: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """Columns whose values are all None or all of ONE immutable non-JSON type (a NUMERIC column,
    a timestamp column): encoded and decoded per column, without a mark per cell."""
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for name, value in row.items():
            kind = type(value)
            if kind is not str and kind is not int and kind is not float and kind is not bool:
                kinds.setdefault(name, set()).add(kind)
    tags = {}
    for name, found in kinds.items():
        special = found - {type(None)}
        if len(special) != 1:
            continue
        kind = next(iter(special))
        if kind in _IMMUTABLE_SPECIAL and all(
            name in row and (row[name] is None or type(row[name]) is kind) for row in rows
        ):
            tags[name] = _ENCODERS[kind]
    return tags


def encode_snapshot(snap: Snapshot) -> str:
    """JSON text of a snapshot. Non-JSON values are listed out of band (see the module doc): per
    column in ``xc`` where a whole column has one such type, else per value in ``x``."""
    marks: list[list[Any]] = []
    columns: dict[str, str] = {}
    if snap.kind == ONE:
        rows: Any = None if snap.rows is None else _walk(snap.rows, [], marks)
    elif not snap.mutable and all(type(v) in _NATIVE for row in snap.rows for v in row.values()):
        rows = snap.rows
    else:
        tags = _column_tags(snap.rows)
        columns = {name: tag for name, (tag, _) in tags.items()}
        rows = []
        for i, row in enumerate(snap.rows):
            out = {}
            for name, value in row.items():
                if type(value) in _NATIVE:
                    out[name] = value
                elif name in tags:
                    out[name] = tags[name][1](value)
                else:
                    out[name] = _walk(value, [i, name], marks)
            rows.append(out)
    data = {"k": snap.kind, "r": rows, "m": snap.meta, "u": snap.mutable, "x": marks, "xc": columns}
    return json.dumps(data, separators=(",", ":"))


def decode_snapshot(payload: str) -> Snapshot:
    data = json.loads(payload)
    rows = data["r"]
    for name, tag in data["xc"].items():
        decode = _DECODERS[tag]
        for row in rows:
            value = row[name]
            if value is not None:
                row[name] = decode(value)
    for path, tag in data["x"]:
        holder = rows
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = _DECODERS[tag](holder[path[-1]])
    return Snapshot(data["k"], rows, tuple(data["m"]), bool(data["u"]))


def encode_result(kind: str, result: Any) -> str:
    """The payload text of a fresh result (``snapshot`` then ``encode_snapshot``)."""
    return encode_snapshot(snapshot(kind, result))


def decode_result(kind: str, payload: str, adapter: Any) -> Any:
    """A result equal to the one ``encode_result`` was given, sharing nothing with the cache."""
    snap = decode_snapshot(payload)
    if snap.kind != kind:
        raise ValueError(f"a {snap.kind} entry read as {kind}")
    return snap.result(adapter)


def entry_blob(tokens: Mapping[str, str | None], payload: str) -> bytes:
    header = json.dumps({"v": FORMAT, "t": dict(tokens)}, separators=(",", ":"))
    return (header + "\n" + payload).encode("utf-8", "surrogatepass")


def entry_payload(blob: bytes, current: Mapping[str, str | None]) -> str | None:
    """The payload of a stored entry when every token it recorded is still current, else None.

    The recorded scopes must be exactly the scopes asked for now (the catalog may have changed
    what a statement depends on), and a recorded token is never None (see ``PersistentLayer``).
    """
    try:
        text = blob.decode("utf-8", "surrogatepass")
        header, _, payload = text.partition("\n")
        meta = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("v") != FORMAT:
        return None
    recorded = meta.get("t")
    if not isinstance(recorded, dict) or recorded.keys() != current.keys():
        return None
    if any(token is None or current[name] != token for name, token in recorded.items()):
        return None
    return payload


# -- invalidation scopes --------------------------------------------------------------------------


def db_scope(dbh: str) -> str:
    return scope("qdb", dbh)


def any_scope(dbh: str) -> str:
    return scope("qany", dbh)


def table_scope(dbh: str, table: str) -> str:
    return scope("qtable", f"{dbh}:{table}")


@dataclass(frozen=True)
class SchemaFacts:
    """What the catalog says about how writes spread beyond the table they name."""

    granular: bool
    """False: table names say nothing reliable here; every read depends on every write."""
    views: frozenset[str] = frozenset()
    triggered: frozenset[str] = frozenset()
    """Tables whose writes run triggers or rules, which may write any table."""
    linked: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """A write to the key may change these tables too (foreign-key actions, inheritance)."""
    token: str | None = None
    """The database-wide token seen before these facts were read."""
    loaded_at: float = 0.0

    def spread(self, tables: Iterable[str]) -> set[str]:
        reached = set(tables)
        pending = list(reached)
        while pending:
            for other in self.linked.get(pending.pop(), frozenset()):
                if other not in reached:
                    reached.add(other)
                    pending.append(other)
        return reached


COARSE = SchemaFacts(granular=False)


def read_scopes(dbh: str, shape: SqlShape, facts: SchemaFacts) -> list[str]:
    scopes = [db_scope(dbh)]
    if not facts.granular or shape.tables & facts.views:
        scopes.append(any_scope(dbh))
    scopes.extend(table_scope(dbh, t) for t in sorted(shape.tables))
    return scopes


def write_scopes(dbh: str, shape: SqlShape, facts: SchemaFacts) -> list[str]:
    if shape.kind == OTHER or shape.unattributed:
        return [db_scope(dbh), any_scope(dbh)]
    tables = facts.spread(shape.tables)
    scopes = [any_scope(dbh)]
    if tables & (facts.triggered | facts.views):
        scopes.append(db_scope(dbh))
    scopes.extend(table_scope(dbh, t) for t in sorted(tables))
    return scopes


_FK_ACTIONS = frozenset({"CASCADE", "SET NULL", "SET DEFAULT", "c", "n", "d"})

_SQLITE_FACTS = (
    "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('view', 'trigger')",
    'SELECT m.name AS child, f."table" AS parent, f.on_update, f.on_delete '
    "FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
)
_POSTGRES_FACTS = (
    "SELECT 'view' AS type, c.relname AS name, c.relname AS tbl_name FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "UNION SELECT 'trigger', t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE NOT t.tgisinternal "
    "UNION SELECT 'trigger', r.rulename, r.tablename FROM pg_rules r "
    "WHERE r.schemaname NOT IN ('pg_catalog', 'information_schema')",
    "SELECT c.relname AS child, p.relname AS parent, k.confupdtype AS on_update, "
    "k.confdeltype AS on_delete FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
    "JOIN pg_class p ON p.oid = k.confrelid WHERE k.contype = 'f' "
    "UNION ALL SELECT c.relname, p.relname, 'inherits', 'inherits' FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent",
)


def read_facts(db: Any, engine: str, token: str | None) -> SchemaFacts:
    """The catalog facts of ``db`` (a Tina4 Database whose own cache is off); COARSE when unknown."""
    queries = {"sqlite": _SQLITE_FACTS, "postgresql": _POSTGRES_FACTS}.get(engine)
    if queries is None:
        return SchemaFacts(granular=False, token=token, loaded_at=time.monotonic())
    try:
        objects = db.fetch(queries[0], limit=0).records
        keys = db.fetch(queries[1], limit=0).records
    except Exception as exc:
        log.warning("query cache: cannot read the catalog of %s (%s); invalidating per database", engine, exc)
        return SchemaFacts(granular=False, token=token, loaded_at=time.monotonic())
    linked: dict[str, set[str]] = {}
    for row in keys:
        child, parent = str(row["child"]).lower(), str(row["parent"]).lower()
        if row["on_update"] in _FK_ACTIONS or row["on_delete"] in _FK_ACTIONS:
            linked.setdefault(parent, set()).add(child)
        if row["on_update"] == "inherits":  # a child's rows are also its parent's rows
            linked.setdefault(parent, set()).add(child)
            linked.setdefault(child, set()).add(parent)
    return SchemaFacts(
        granular=True,
        views=frozenset(str(r["name"]).lower() for r in objects if r["type"] == "view"),
        triggered=frozenset(str(r["tbl_name"]).lower() for r in objects if r["type"] == "trigger"),
        linked={table: frozenset(others) for table, others in linked.items()},
        token=token,
        loaded_at=time.monotonic(),
    )


_facts: dict[str, SchemaFacts] = {}
_facts_lock = threading.Lock()


def cached_facts(ident: str) -> SchemaFacts | None:
    facts = _facts.get(ident)
    if facts is None or time.monotonic() - facts.loaded_at > FACTS_MAX_AGE:
        return None
    return facts


def keep_facts(ident: str, facts: SchemaFacts) -> None:
    with _facts_lock:
        _facts[ident] = facts


def forget_facts(ident: str) -> None:
    with _facts_lock:
        _facts.pop(ident, None)


# -- the persistent layer -------------------------------------------------------------------------


class PersistentLayer:
    """The ``query`` and ``meta`` layers of the store ``TINA4_DB_CACHE_BACKEND`` names.

    Its coroutines run on the client's bridge loop (``runtime.run_sync``). A store failure never
    fails a query (the store contract): a lookup then misses and a result is not stored.
    """

    def __init__(self, settings: QueryCacheSettings) -> None:
        self.backend: Backend = settings.db_cache_backend
        self.url = settings.db_cache_url
        self.ttl = settings.db_cache_ttl

    async def stores(self) -> tuple[Store, Store]:
        entries = await runtime.store_for("query", self.backend, self.url)
        meta = await runtime.store_for("meta", self.backend, self.url)
        return entries, meta

    async def lookup(
        self, key: str | None, scopes: Sequence[str]
    ) -> tuple[bytes | None, dict[str, str | None]]:
        """The stored entry of ``key`` and the current tokens of ``scopes``, in one round trip.

        A scope without a token gets one now, before the caller runs its query: an entry never
        records "no token", so a token that the store loses later (evicted, cleared) can only
        turn entries into misses. A token this call could not write stays None, and the caller
        then does not store its result.
        """
        entries, meta = await self.stores()
        if key is None:
            entry, values = None, await meta.get_many(list(scopes))
        else:
            entry, values = await asyncio.gather(entries.get(key), meta.get_many(list(scopes)))
        tokens = tokens_from(values, list(scopes))
        missing = [name for name, token in tokens.items() if token is None]
        if missing:
            fresh = {name: new_token() for name in missing}
            written = await asyncio.gather(*(meta.set(name, token, 0) for name, token in fresh.items()))
            for (name, token), ok in zip(fresh.items(), written, strict=True):
                tokens[name] = token.decode("ascii") if ok else None
        return entry, tokens

    async def save(self, key: str, blob: bytes) -> bool:
        entries, _ = await self.stores()
        return await entries.set(key, blob, self.ttl)

    async def bump(self, scopes: Sequence[str]) -> bool:
        """New tokens for ``scopes``: every entry that recorded one of them is a miss from now on."""
        _, meta = await self.stores()
        done = await asyncio.gather(*(meta.set(name, new_token(), 0) for name in scopes))
        if not all(done):
            log.warning(
                "query cache: could not invalidate %s; cached reads may stay stale for up to %ss",
                ", ".join(scopes),
                self.ttl,
            )
        return all(done)

    async def size(self) -> int:
        entries, _ = await self.stores()
        return await entries.size()

    async def clear(self) -> bool:
        entries, _ = await self.stores()
        return await entries.clear()

    async def backend_name(self) -> str:
        entries, _ = await self.stores()
        return str(entries.backend_name)
