"""Invalidation scopes of the query cache, and what the catalog says about how writes spread.

Per database identity (hashed, ``<dbh>``) there are three kinds of scope, each a token in the
store's ``meta`` layer (``store/invalidation.py``):

* ``~tok:qtable:<dbh>:<table>``: bumped by every write to ``<table>``; recorded by reads of it;
* ``~tok:qdb:<dbh>``: bumped by writes this library cannot attribute to tables (DDL, several
  statements, functions that may write, triggers and rules) and by that database's
  ``cache_clear()``; recorded by EVERY read of it;
* ``~tok:qany:<dbh>``: bumped by EVERY write; recorded by reads whose tables' writes cannot be
  seen by name: reads of views, and every read on an engine whose catalog is not read here
  (anything but SQLite and PostgreSQL), where invalidation is therefore per database.

What the catalog adds (``SchemaFacts``, read once per database and minute, and again whenever
the database-wide token moves): views; tables with triggers or rules (a write to them bumps the
database-wide token); foreign keys with ``ON DELETE/UPDATE CASCADE | SET NULL | SET DEFAULT`` and
PostgreSQL inheritance/partitions (a write to one table also bumps the tables it changes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tina4_sidecar.client import runtime
from tina4_sidecar.client.sql_tables import OTHER, SqlShape
from tina4_sidecar.store.invalidation import scope

log = logging.getLogger("tina4_sidecar.client.query")

FACTS_MAX_AGE = 60.0
"""Seconds before the catalog facts of a database are read again, DDL or not."""

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


runtime.on_reset(_facts.clear)
