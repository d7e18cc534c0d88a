"""Which tables a SQL statement reads or writes, for table-granular query-cache invalidation.

``analyze(sql)`` answers a :class:`SqlShape`: a *read* (with the tables it reads and whether its
result may be cached), a *write* (with the tables it writes), or *other* (DDL, PRAGMA, several
statements...). The statement is parsed by sqlglot (a maintained SQL parser with dialects, rather
than a hand-written tokenizer), in the engine's dialect when the caller names it, else in the first
of PostgreSQL, MySQL, SQLite and T-SQL that parses it. The answer errs one way only: whenever it
cannot tell, it is the conservative one.

* A read is cacheable only when every table it names was found and every function it calls is
  known to be pure (``sql_functions``). ``SELECT ... FOR UPDATE`` (a lock), volatile functions
  (``random()``, ``now()``, ``nextval()``, ``datetime('now')``...), system catalogs and
  ``TABLESAMPLE`` make it uncacheable.
* A function that is neither known pure nor known volatile may be a user function with side
  effects (``SELECT create_user(...)``): the statement is uncacheable and ``unattributed``,
  which makes the caller bump the database-wide token, as for any write it cannot attribute.
* A write names its target tables (``INSERT INTO``, ``UPDATE``, ``DELETE FROM``, ``REPLACE``,
  ``UPSERT``, ``MERGE INTO``, ``TRUNCATE``); MySQL's multi-table forms name every table they
  touch. Data-modifying CTEs (``WITH x AS (DELETE ... RETURNING *) SELECT ...``) are writes.
* Everything else (DDL, several statements, what no dialect parses) is *other* and
  ``unattributed``, except a few statements known not to change data (``SHOW``, ``EXPLAIN``
  without ``ANALYZE``, SQLite's reading pragmas).

Names a CTE defines are not tables where the CTE is in scope (sqlglot's scope analysis, so
``WITH x AS (SELECT * FROM x)`` still reads the table ``x``). Table names are normalised to the bare,
lower-cased last part (``"Sales"."Order Items"`` -> ``order items``): two schemas' tables of one
name then share a token, which can only cause extra misses, never a stale hit.

The answer is cached per statement text (``analyze`` is an LRU cache), so the query cache's hot
path does not parse: a parse costs tens to hundreds of microseconds, a cached answer well under one.
"""

from __future__ import annotations

import functools
import logging
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from tina4_sidecar.client.sql_functions import (
    PURE,
    READ_PRAGMAS,
    SYSTEM_PREFIXES,
    SYSTEM_SCHEMAS,
    VOLATILE,
    VOLATILE_KINDS,
)
from tina4_sidecar.client.sql_shape import OTHER, READ, WRITE, SqlShape, other

__all__ = ["OTHER", "READ", "WRITE", "SqlShape", "analyze", "dialect_of"]

DIALECTS = ("postgres", "mysql", "sqlite", "tsql")
"""Tried in order when the caller names no dialect, or after it; the first that parses wins."""
_ENGINE_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql", "mssql": "tsql"}


def dialect_of(engine: str) -> str | None:
    """sqlglot's dialect for a Tina4 engine name (``Database.get_database_type()``); None for an
    engine sqlglot has no dialect for (Firebird), whose statements get the ``DIALECTS`` in turn:
    Tina4's portable SQL (``LIMIT``, which Tina4 translates for Firebird itself) is read, native
    ``SELECT FIRST n`` is not, and so is *other* (never cached, invalidates the database)."""
    return _ENGINE_DIALECTS.get(engine.lower())


_VOLATILE_CLASSES = tuple(getattr(exp, name) for name in sorted(VOLATILE_KINDS))
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.TruncateTable)
_READS = (exp.Query, exp.Values)
_HARMLESS_COMMANDS = frozenset({"SHOW", "DESCRIBE", "DESC"})
_ANALYZE = re.compile(r"\bANALY[SZ]E\b", re.I)
_SYNONYMS = re.compile(r"^\s*(?:(?:REPLACE|UPSERT)(?=\s+INTO\b)|UPDATE\s+OR\s+[A-Za-z]+\b)", re.I)
"""Statement heads sqlglot does not parse that write the table of the ``INSERT``/``UPDATE`` they
stand for: SQLite/MySQL ``REPLACE INTO``, CockroachDB ``UPSERT INTO``, SQLite ``UPDATE OR IGNORE``."""


class _CommandFallback(logging.Filter):
    """sqlglot logs a warning for each statement it keeps as an opaque command (``SHOW x``); here
    that is an answer (*other*), not a problem worth a line in the app's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_CommandFallback())


@functools.lru_cache(maxsize=4096)
def analyze(sql: str, dialect: str | None = None) -> SqlShape:
    """What ``sql`` reads or writes. Never raises: what it cannot read is *other*, unattributed."""
    statements = _parse(_SYNONYMS.sub(_synonym, sql, count=1), dialect)
    if statements is None:
        return other("no SQL dialect parses this statement")
    if not statements:
        return other("an empty statement", mutates=False)
    if len(statements) > 1:
        return other("several statements in one call")
    return _shape(statements[0])


def _synonym(match: re.Match[str]) -> str:
    return "UPDATE" if match.group().lstrip()[:6].upper() == "UPDATE" else "INSERT"


def _parse(sql: str, dialect: str | None) -> list[exp.Expr] | None:
    for name in (dialect, *DIALECTS) if dialect else DIALECTS:
        try:
            return [statement for statement in sqlglot.parse(sql, read=name) if statement is not None]
        except SqlglotError:
            continue
    return None


def _shape(node: exp.Expr) -> SqlShape:
    if isinstance(node, exp.Command):
        verb = str(node.this).upper()
        if verb in _HARMLESS_COMMANDS:
            return other(f"{verb} is not cached", mutates=False)
        if verb == "EXPLAIN":
            runs = _ANALYZE.search(node.sql()) is not None
            return other("EXPLAIN ANALYZE runs the statement" if runs else "EXPLAIN is not cached", runs)
        return other(f"{verb or 'this statement'} may change the schema or the data")
    if isinstance(node, exp.Describe):
        runs = str(node.args.get("style") or "").upper() in ("ANALYZE", "ANALYSE")
        return other("EXPLAIN ANALYZE runs the statement" if runs else "EXPLAIN is not cached", runs)
    if isinstance(node, exp.Pragma):
        called = node.this.this if isinstance(node.this, exp.EQ) else node.this
        reads = str(called.name).lower() in READ_PRAGMAS  # table_info(t), not foreign_keys = ON
        return other("PRAGMA is not cached", mutates=not reads)
    if any(True for _ in node.find_all(*_WRITES)):
        return _write(node)
    if isinstance(node, _READS):
        return _read(node)
    return other(f"{type(node).__name__.upper()} may change the schema or the data")


def _read(node: exp.Expr) -> SqlShape:
    if node.find(exp.Into) is not None:
        return other("SELECT INTO creates a table")
    unknown, volatile = _calls(node)
    if unknown:
        return SqlShape(READ, frozenset(), False, True, f"{unknown}() may change data")
    tables, system = _tables_read(node)
    if volatile:
        reason = f"{volatile}() is volatile"
    elif any(select.args.get("locks") for select in node.find_all(exp.Select)):
        reason = "a locking read"
    elif node.find(exp.TableSample):
        reason = "TABLESAMPLE reads random rows"
    elif system:
        reason = f"{system} is a system catalog"
    else:
        return SqlShape(READ, tables, True)
    return SqlShape(READ, tables, False, False, reason)


def _write(node: exp.Expr) -> SqlShape:
    written: set[str] = set()
    unattributed = ""
    for dml in node.find_all(*_WRITES):
        if dml.find_ancestor(exp.Merge) is not None:
            continue  # WHEN MATCHED THEN UPDATE: the MERGE's own target
        for target in _targets(dml):
            name = _table_name(target)
            if name is None:
                unattributed = unattributed or "a write whose table cannot be named"
            else:
                written.add(name)
        if isinstance(dml, exp.TruncateTable) and str(dml.args.get("option") or "").upper() == "CASCADE":
            unattributed = unattributed or "TRUNCATE ... CASCADE empties the tables that refer to it"
    unknown, _ = _calls(node)
    if unknown:
        unattributed = unattributed or f"{unknown}() may change data"
    return SqlShape(WRITE, frozenset(written), False, bool(unattributed), unattributed)


def _targets(dml: exp.Expr) -> list[exp.Expr]:
    """The tables a write changes: ``INSERT INTO t``, MySQL's ``UPDATE a JOIN b`` and
    ``DELETE t1, t2 FROM ...``, every table of a ``TRUNCATE``."""
    if isinstance(dml, exp.TruncateTable):
        return list(dml.expressions)
    if isinstance(dml, exp.Delete) and dml.args.get("tables"):
        return list(dml.args["tables"])
    target = dml.this
    if isinstance(target, exp.Schema):  # INSERT INTO t (a, b)
        target = target.this
    found = [target]
    if isinstance(dml, exp.Update) and isinstance(target, exp.Table):
        found += [join.this for join in target.args.get("joins") or []]
    return found


def _table_name(node: exp.Expr | None) -> str | None:
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        return str(node.name).lower()
    return None


def _tables_read(node: exp.Expr) -> tuple[frozenset[str], str]:
    """The real tables ``node`` reads (not the CTEs and subqueries in scope), and the first system
    catalog among them ("" when none)."""
    tables: list[exp.Table] = []
    try:
        for scope in traverse_scope(node):
            tables += [t for t in scope.tables if not isinstance(scope.sources.get(t.alias_or_name), Scope)]
    except SqlglotError:  # what scope analysis cannot follow: every table node, CTE names too
        tables = list(node.find_all(exp.Table))
    names: set[str] = set()
    system = ""
    for table in tables:
        name = _table_name(table)
        if name is None:
            continue  # a table function (generate_series): judged by _calls
        names.add(name)
        if not system and (str(table.db).lower() in SYSTEM_SCHEMAS or name.startswith(SYSTEM_PREFIXES)):
            system = name
    return frozenset(names), system


def _calls(node: exp.Expr) -> tuple[str, str]:
    """The first call of a function not known to be pure or volatile (a user function, which may
    write), and the first volatile call; "" where there is none."""
    unknown = volatile = ""
    for call in node.find_all(exp.Func):
        if isinstance(call, exp.Anonymous):
            name = str(call.name)
            if name.lower() in VOLATILE or _asks_for_now(call):
                volatile = volatile or name
            elif name.lower() not in PURE or (name != name.lower() and _quoted(call)):
                unknown = unknown or name
        elif isinstance(call, _VOLATILE_CLASSES) or _asks_for_now(call):
            volatile = volatile or call.sql_name().lower()
    return unknown, volatile


def _quoted(call: exp.Anonymous) -> bool:
    return isinstance(call.this, exp.Identifier) and bool(call.this.quoted)


def _asks_for_now(call: exp.Func) -> bool:
    return any(
        isinstance(arg, exp.Literal) and arg.is_string and str(arg.this).strip().lower() == "now"
        for arg in call.iter_expressions()
    )
