"""Which tables a SQL statement reads or writes, for table-granular query-cache invalidation.

``analyze(sql)`` answers a :class:`SqlShape`: a *read* (with the tables it reads and whether its
result may be cached), a *write* (with the tables it writes), or *other* (DDL, PRAGMA, several
statements...). It is a tokenizer plus a small recogniser, not a SQL parser, and it errs one way
only: whenever it cannot tell, the answer is the conservative one.

* A read is cacheable only when every table it names was found and every function it calls is
  known to be pure. ``SELECT ... FOR UPDATE`` (a lock), volatile functions (``random()``,
  ``now()``, ``nextval()``...), system catalogs and ``TABLESAMPLE`` make it uncacheable.
* A function that is neither known pure nor known volatile may be a user function with side
  effects (``SELECT create_user(...)``): the statement is uncacheable and ``unattributed``,
  which makes the caller bump the database-wide token, as for any write it cannot attribute.
* A write names its target tables (``INSERT INTO``, ``UPDATE``, ``DELETE FROM``, ``REPLACE``,
  ``UPSERT``, ``MERGE INTO``, ``TRUNCATE``); MySQL's multi-table forms name every table they
  touch. Data-modifying CTEs (``WITH x AS (DELETE ... RETURNING *) SELECT ...``) are writes.
* Everything else (DDL, several statements, a CTE or FROM clause it cannot follow, unterminated
  quotes) is *other* and ``unattributed``, except a few statements known not to change data
  (``SHOW``, ``EXPLAIN`` without ``ANALYZE``, ``PRAGMA name`` without ``=``).

Table names are normalised to the bare, lower-cased last part (``"Sales"."Order Items"`` ->
``order items``): two schemas' tables of one name then share a token, which can only cause
extra misses, never a stale hit.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

READ = "read"
WRITE = "write"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class SqlShape:
    """What a statement does to the cache."""

    kind: str
    """``read``, ``write`` or ``other``."""
    tables: frozenset[str] = field(default_factory=frozenset)
    """A read: the tables it reads. A write: the tables it writes."""
    cacheable: bool = False
    """A read whose result may be cached."""
    unattributed: bool = False
    """It may change data in tables that ``tables`` does not name: bump the database-wide token."""
    reason: str = ""
    """Why it is not cacheable, or why it is unattributed (for logs and tests)."""

    @property
    def mutates(self) -> bool:
        """True when the statement may change data (a write, or anything unattributed)."""
        return self.kind == WRITE or self.unattributed


# -- tokens ---------------------------------------------------------------------------------------

_WORD, _QID, _STR, _NUM, _PARAM, _OP = "word", "qid", "str", "num", "param", "op"

_SKIP = re.compile(r"\s+|--[^\n]*|/\*.*?\*/", re.S)
_TOKEN = re.compile(
    r"""
    (?P<estr>[Ee]'(?:[^'\\]|\\.|'')*')
   |(?P<str>(?:[NnBbXx]|[Uu]&)?'(?:[^']|'')*')
   |(?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$)
   |(?P<qid>(?:[Uu]&)?"(?:[^"]|"")*")
   |(?P<bq>`(?:[^`]|``)*`)
   |(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
   |(?P<cast>::)
   |(?P<param>\?\d*|%s|%\([A-Za-z_]\w*\)s|\$\d+|:[A-Za-z_]\w*|@@?[A-Za-z_]\w*)
   |(?P<word>[^\W\d]\w*(?:\$\w*)*)
   |(?P<op><>|!=|<=|>=|\|\||->>?|[-+*/%<>=~!&|^#.,;:@\\()\[\]{}])
    """,
    re.S | re.X,
)
_BRACKET_NAME = re.compile(r"\[([^\]]*)\]")
_BRACKET_AFTER = frozenset({"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "ONLY", ".", ","})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str  # words: upper-cased; quoted identifiers: the name unquoted; others: as written

    def is_word(self, *words: str) -> bool:
        return self.kind == _WORD and (not words or self.text in words)

    def is_op(self, op: str) -> bool:
        return self.kind == _OP and self.text == op


class _Unparsable(Exception):
    """The text does not tokenize (an unterminated quote or comment, a stray character)."""


def _tokenize(sql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos, end = 0, len(sql)
    while pos < end:
        skipped = _SKIP.match(sql, pos)
        if skipped:
            pos = skipped.end()
            continue
        if sql[pos] == "[" and tokens and (tokens[-1].text in _BRACKET_AFTER):
            bracket = _BRACKET_NAME.match(sql, pos)  # SQLite/MSSQL [quoted name] where a name goes
            if bracket:
                tokens.append(_Tok(_QID, bracket.group(1)))
                pos = bracket.end()
                continue
        match = _TOKEN.match(sql, pos)
        if match is None:
            raise _Unparsable(f"cannot read the SQL at offset {pos}")
        kind = match.lastgroup
        text = match.group()
        if kind == "word":
            tokens.append(_Tok(_WORD, text.upper()))
        elif kind == "qid":
            tokens.append(_Tok(_QID, text[text.index('"') + 1 : -1].replace('""', '"')))
        elif kind == "bq":
            tokens.append(_Tok(_QID, text[1:-1].replace("``", "`")))
        elif kind in ("str", "estr", "dollar"):
            tokens.append(_Tok(_STR, ""))
        elif kind == "num":
            tokens.append(_Tok(_NUM, text))
        elif kind == "param":
            tokens.append(_Tok(_PARAM, text))
        else:
            tokens.append(_Tok(_OP, text))
        pos = match.end()
    return tokens


# -- vocabulary -----------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DML = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT"})
_READ_START = frozenset({"SELECT", "VALUES", "TABLE"})
_HARMLESS_OTHER = frozenset({"SHOW", "DESCRIBE", "DESC"})

# Words that may follow a table name without being its alias.
_NOT_ALIAS = _words(
    """WHERE JOIN INNER LEFT RIGHT FULL OUTER CROSS NATURAL ON USING GROUP ORDER HAVING LIMIT OFFSET
    UNION INTERSECT EXCEPT WINDOW FOR FETCH RETURNING SET VALUES SELECT FROM AS LATERAL WITH
    TABLESAMPLE INDEXED NOT DO OUTPUT WHEN THEN ELSE END AND OR INTO DEFAULT QUALIFY STRAIGHT_JOIN
    PARTITION USE FORCE IGNORE LOCK CONNECT START MINUS ROWS FIRST NEXT OPTION"""
)

# Words followed by "(" that are syntax, not function calls.
_NOT_FUNCTION = _words(
    """IN EXISTS ANY ALL SOME VALUES AS OVER FILTER WITHIN USING ON AND OR NOT WHEN THEN ELSE CASE
    FROM JOIN SELECT WHERE LIKE ILIKE GLOB REGEXP MATCH BETWEEN IS ROW ARRAY SET INTO TABLE LATERAL
    RETURNING GROUP BY ORDER PARTITION RANGE ROWS GROUPS CUBE ROLLUP GROUPING SETS HAVING WINDOW
    WITH UNION INTERSECT EXCEPT LIMIT OFFSET DISTINCT FOR KEY REFERENCES CHECK PRIMARY UNIQUE
    FOREIGN CONSTRAINT DEFAULT COLLATE ESCAPE MATERIALIZED RECURSIVE CONFLICT DO UPDATE NOTHING
    RETURN IF ELSIF ELSEIF BERNOULLI SYSTEM REPEATABLE TABLESAMPLE INTERVAL DUPLICATE OF WITHOUT
    ZONE LOCAL INNER LEFT RIGHT FULL OUTER CROSS NATURAL"""
)

# Functions whose result depends only on their arguments (and the rows read): safe to cache.
_PURE = _words(
    """count sum avg min max total group_concat string_agg array_agg json_agg jsonb_agg
    json_object_agg jsonb_object_agg json_group_array json_group_object bool_and bool_or every
    bit_and bit_or stddev stddev_pop stddev_samp variance var_pop var_samp median mode
    percentile_cont percentile_disc corr covar_pop covar_samp regr_slope regr_intercept
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    coalesce nullif ifnull iif if isnull nvl greatest least cast try_cast convert extract
    date_part date_trunc substring substr trim ltrim rtrim btrim position overlay lower upper length
    char_length character_length octet_length bit_length concat concat_ws replace reverse repeat lpad
    rpad left right split_part strpos instr printf format quote quote_ident quote_literal
    quote_nullable translate initcap ascii chr char unicode hex unhex md5 sha1 sha224 sha256 sha384
    sha512 encode decode to_hex regexp_replace regexp_match regexp_matches regexp_split_to_array
    regexp_split_to_table regexp_like regexp_substr regexp_count starts_with like glob soundex
    abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 log2 mod div pi
    degrees radians sin cos tan asin acos atan atan2 sinh cosh tanh width_bucket gcd lcm factorial
    to_char to_date to_number to_timestamp make_date make_time make_timestamp make_timestamptz
    make_interval age justify_days justify_hours justify_interval isfinite date time datetime
    julianday strftime unixepoch timediff timezone typeof zeroblob likelihood likely unlikely
    json jsonb json_extract json_array json_object json_array_length json_type json_valid json_quote
    json_insert json_replace json_set json_remove json_patch json_each json_tree jsonb_each
    jsonb_array_elements json_array_elements jsonb_array_elements_text json_array_elements_text
    jsonb_object_keys json_object_keys json_build_object jsonb_build_object json_build_array
    jsonb_build_array to_json to_jsonb row_to_json array_to_json jsonb_set jsonb_insert
    jsonb_strip_nulls jsonb_pretty jsonb_typeof json_typeof jsonb_extract_path
    jsonb_extract_path_text json_extract_path json_extract_path_text jsonb_path_query
    jsonb_path_exists jsonb_path_match json_strip_nulls json_populate_record jsonb_populate_record
    array_length array_position array_positions array_remove array_replace array_cat array_append
    array_prepend array_dims array_lower array_upper array_ndims array_to_string string_to_array
    unnest cardinality generate_series generate_subscripts range_merge lower_inc upper_inc isempty
    numeric decimal varchar char nchar nvarchar character float double real int integer bigint
    smallint timestamp timestamptz interval bit varbit text bytea boolean uuid"""
)

# Functions that change nothing in tables but whose result must not be cached.
_VOLATILE = _words(
    """random randomblob rand uuid gen_random_uuid uuid_generate_v1 uuid_generate_v4 newid
    now clock_timestamp statement_timestamp transaction_timestamp timeofday localtime localtimestamp
    current_timestamp current_date current_time sysdate getdate utc_timestamp
    nextval setval currval lastval last_insert_rowid last_insert_id changes total_changes
    txid_current txid_current_if_assigned pg_current_xact_id pg_backend_pid inet_client_addr
    inet_client_port current_setting pg_sleep sleep pg_advisory_lock pg_advisory_xact_lock
    pg_advisory_unlock pg_advisory_unlock_all pg_try_advisory_lock pg_try_advisory_xact_lock
    pg_advisory_lock_shared pg_try_advisory_lock_shared pg_advisory_xact_lock_shared
    pg_try_advisory_xact_lock_shared pg_advisory_unlock_shared setseed sqlite_version version
    current_user session_user user current_database current_schema current_schemas
    pg_postmaster_start_time"""
)

# Parentheses whose FROM is not a FROM clause.
_FROM_INSIDE = frozenset({"EXTRACT", "SUBSTRING", "TRIM", "OVERLAY", "POSITION", "SUBSTR"})
_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "sys", "mysql", "performance_schema"})
_SYSTEM_PREFIXES = ("pg_", "sqlite_")
_LOCK_AFTER_FOR = frozenset({"UPDATE", "SHARE", "NO", "KEY"})
_CLOCK_WORDS = frozenset({"CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIMESTAMP", "LOCALTIME"})
_READ_PRAGMAS = _words(
    """table_info table_xinfo table_list index_list index_info index_xinfo foreign_key_list
    database_list collation_list compile_options function_list module_list pragma_list
    integrity_check quick_check foreign_key_check"""
)
_JOIN_WORDS = frozenset({"JOIN", "STRAIGHT_JOIN"})
_FROM_ENDS = _words(
    """WHERE GROUP ORDER HAVING LIMIT OFFSET UNION INTERSECT EXCEPT MINUS WINDOW FOR FETCH RETURNING
    QUALIFY SET WHEN VALUES SELECT"""
)


def _name(tok: _Tok) -> str:
    return tok.text.lower()


def _is_name(tok: _Tok | None) -> bool:
    return tok is not None and tok.kind in (_WORD, _QID)


@dataclass
class _Scan:
    """What one pass over a statement's tokens found."""

    tables: set[str] = field(default_factory=set)
    uncacheable: str = ""
    unattributed: str = ""
    name_positions: set[int] = field(default_factory=set)

    def no_cache(self, reason: str) -> None:
        self.uncacheable = self.uncacheable or reason

    def unknown(self, reason: str) -> None:
        self.unattributed = self.unattributed or reason


class _Statement:
    """One statement's tokens, with the helpers that walk them."""

    def __init__(self, tokens: list[_Tok], ctes: frozenset[str]) -> None:
        self.t = tokens
        self.n = len(tokens)
        self.ctes = ctes

    def at(self, i: int) -> _Tok | None:
        return self.t[i] if 0 <= i < self.n else None

    def word_at(self, i: int, *words: str) -> bool:
        tok = self.at(i)
        return tok is not None and tok.is_word(*words)

    def op_at(self, i: int, op: str) -> bool:
        tok = self.at(i)
        return tok is not None and tok.is_op(op)

    def close_paren(self, i: int) -> int:
        """Index just after the ``)`` that closes the ``(`` at ``i``; -1 when unbalanced."""
        depth = 0
        for j in range(i, self.n):
            if self.t[j].is_op("("):
                depth += 1
            elif self.t[j].is_op(")"):
                depth -= 1
                if depth == 0:
                    return j + 1
        return -1

    def qualified_name(self, i: int, scan: _Scan) -> tuple[list[str], int]:
        """``a.b.c`` at ``i``: its parts (lower-cased) and the index after it; [] when none."""
        parts: list[str] = []
        while _is_name(self.at(i)):
            tok = self.t[i]
            if tok.kind == _WORD and tok.text in _NOT_ALIAS and not parts:
                break
            parts.append(_name(tok))
            scan.name_positions.add(i)
            if self.op_at(i + 1, ".") and _is_name(self.at(i + 2)):
                i += 2
                continue
            i += 1
            break
        return parts, i

    def skip_alias(self, i: int, scan: _Scan) -> int:
        """Skip ``[AS] alias [(columns)]`` after a table reference."""
        if self.word_at(i, "AS"):
            i += 1
            if _is_name(self.at(i)):
                scan.name_positions.add(i)
                i += 1
        elif (tok := self.at(i)) is not None and (
            tok.kind == _QID or (tok.kind == _WORD and tok.text not in _NOT_ALIAS)
        ):
            scan.name_positions.add(i)
            i += 1
        else:
            return i
        if self.op_at(i, "("):
            i = self.close_paren(i)
        return i

    def table_ref(self, i: int, scan: _Scan, record: set[str]) -> int:
        """One item of a FROM list or a JOIN at ``i``; records its table; returns the index after."""
        while self.word_at(i, "ONLY", "LATERAL"):
            i += 1
        tok = self.at(i)
        if tok is None:
            scan.no_cache("a FROM clause without a table")
            return i
        if tok.is_op("("):  # a subquery or a parenthesised join: its FROMs are scanned on their own
            return self.skip_alias(self.close_paren(i), scan)
        parts, after = self.qualified_name(i, scan)
        if not parts:
            scan.no_cache(f"cannot read the table name at {tok.text!r}")
            return i + 1
        if self.op_at(after, "("):  # a table function: judged as a function call
            for j in range(i, after):
                scan.name_positions.discard(j)
            return self.skip_alias(self.close_paren(after), scan)
        if self.op_at(after, "*"):  # PostgreSQL's "t*" (with inheritance children)
            after += 1
        table = parts[-1]
        if len(parts) == 1 and table in self.ctes:
            return self.skip_alias(after, scan)
        if (len(parts) > 1 and parts[-2] in _SYSTEM_SCHEMAS) or table.startswith(_SYSTEM_PREFIXES):
            scan.no_cache(f"reads the system catalog {'.'.join(parts)}")
        record.add(table)
        return self.skip_alias(after, scan)

    def from_list(self, i: int, scan: _Scan, record: set[str]) -> None:
        """Every comma-separated item of the FROM clause at ``i``, also after ``JOIN ... ON ...``."""
        while True:
            i = self.table_ref(i, scan, record)
            depth = 0
            while 0 <= i < self.n:  # on to the next top-level comma, or to the clause's end
                tok = self.t[i]
                if tok.is_op("("):
                    depth += 1
                elif tok.is_op(")"):
                    depth -= 1
                    if depth < 0:
                        return
                elif depth == 0 and (tok.is_op(",") or tok.is_op(";") or tok.text in _FROM_ENDS):
                    break
                i += 1
            if not self.op_at(i, ","):
                return
            i += 1

    def scan(self, scan: _Scan, reads: set[str]) -> None:
        """Every FROM/JOIN table (at any depth) into ``reads``; functions and locks into ``scan``."""
        owners: list[str | None] = []
        for i, tok in enumerate(self.t):
            if tok.kind == _OP:
                if tok.text == "(":
                    prev = self.at(i - 1)
                    owners.append(prev.text if prev is not None and prev.kind == _WORD else None)
                elif tok.text == ")" and owners:
                    owners.pop()
                continue
            if tok.kind not in (_WORD, _QID):
                continue
            if tok.kind == _WORD:
                if tok.text == "FROM":
                    inside = owners[-1] if owners else None
                    if inside not in _FROM_INSIDE and not self.word_at(i - 1, "DISTINCT"):
                        self.from_list(i + 1, scan, reads)
                    continue
                if tok.text in _JOIN_WORDS:
                    self.table_ref(i + 1, scan, reads)
                    continue
                if tok.text == "FOR" and (nxt := self.at(i + 1)) is not None and nxt.text in _LOCK_AFTER_FOR:
                    scan.no_cache("SELECT ... FOR UPDATE/SHARE takes row locks")
                    continue
                if tok.text == "TABLESAMPLE":
                    scan.no_cache("TABLESAMPLE answers differently each time")
                    continue
                if tok.text in _CLOCK_WORDS:
                    scan.no_cache(f"reads the clock ({tok.text})")
                    continue
            if self.op_at(i + 1, "(") and i not in scan.name_positions:
                if tok.kind == _WORD and tok.text in _NOT_FUNCTION:
                    continue
                self.function(i, tok, scan)

    def function(self, i: int, tok: _Tok, scan: _Scan) -> None:
        name = _name(tok)
        qualified = self.op_at(i - 1, ".")
        schema = _name(self.t[i - 2]) if qualified and _is_name(self.at(i - 2)) else None
        if qualified and schema not in ("pg_catalog", "main"):
            scan.no_cache(f"calls {schema}.{name}()")
            scan.unknown(f"calls the function {schema}.{name}(), which may write")
        elif name in _PURE and tok.kind == _WORD:
            return
        elif name in _VOLATILE:
            scan.no_cache(f"calls the volatile function {name}()")
        else:
            scan.no_cache(f"calls {name}()")
            scan.unknown(f"calls the function {name}(), which may write")


# -- statements -----------------------------------------------------------------------------------


def _split(tokens: list[_Tok]) -> list[list[_Tok]]:
    statements: list[list[_Tok]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.kind == _OP and tok.text in "([{":
            depth += 1
        elif tok.kind == _OP and tok.text in ")]}":
            depth -= 1
        if depth == 0 and tok.is_op(";"):
            statements.append([])
        else:
            statements[-1].append(tok)
    return [s for s in statements if s]


def _first_word(tokens: list[_Tok]) -> tuple[str, int]:
    i = 0
    while i < len(tokens) and tokens[i].is_op("("):
        i += 1
    if i < len(tokens) and tokens[i].kind == _WORD:
        return tokens[i].text, i
    return "", i


def _other(reason: str, mutates: bool = True) -> SqlShape:
    return SqlShape(OTHER, frozenset(), False, mutates, reason)


def _statement(tokens: list[_Tok], ctes: frozenset[str]) -> SqlShape:
    verb, start = _first_word(tokens)
    if verb == "WITH":
        return _with(tokens, start, ctes)
    stmt = _Statement(tokens, ctes)
    if verb in _READ_START:
        return _read(stmt, verb, start)
    if verb in _DML:
        return _write(stmt, verb, start)
    if verb in _HARMLESS_OTHER:
        return _other(f"{verb} is not cached", mutates=False)
    if verb == "EXPLAIN":
        analyze = any(t.is_word("ANALYZE", "ANALYSE") for t in tokens[start + 1 : start + 4])
        return _other("EXPLAIN ANALYZE runs the statement" if analyze else "EXPLAIN is not cached", analyze)
    if verb == "PRAGMA":
        called = next((t.text.lower() for t in tokens[start + 1 :] if t.kind == _WORD), "")
        sets = any(t.is_op("=") for t in tokens) or (
            any(t.is_op("(") for t in tokens) and called not in _READ_PRAGMAS
        )
        return _other("PRAGMA is not cached", mutates=sets)
    return _other(f"{verb or 'this statement'} may change the schema or the data")


def _read(stmt: _Statement, verb: str, start: int) -> SqlShape:
    scan = _Scan()
    reads: set[str] = set()
    if verb == "TABLE":
        stmt.table_ref(start + 1, scan, reads)
    stmt.scan(scan, reads)
    if any(t.is_word("INTO") for t in stmt.t):
        return _other("SELECT ... INTO writes a table or variables")
    return SqlShape(
        READ,
        frozenset(reads),
        cacheable=not scan.uncacheable and not scan.unattributed,
        unattributed=bool(scan.unattributed),
        reason=scan.unattributed or scan.uncacheable,
    )


_INSERT_MODIFIERS = frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"})


def _write(stmt: _Statement, verb: str, start: int) -> SqlShape:
    scan = _Scan()
    written: set[str] = set()
    i = start + 1
    if verb in ("INSERT", "REPLACE", "UPSERT"):
        if stmt.word_at(i, "OR") and stmt.at(i + 1) is not None:
            i += 2
        while stmt.word_at(i, *_INSERT_MODIFIERS):
            i += 1
        if stmt.word_at(i, "INTO"):
            i += 1
        _target(stmt, i, scan, written)
    elif verb == "MERGE":
        if stmt.word_at(i, "INTO"):
            i += 1
        _target(stmt, i, scan, written)
    elif verb == "UPDATE":
        if stmt.word_at(i, "OR") and stmt.at(i + 1) is not None:
            i += 2
        while stmt.word_at(i, "LOW_PRIORITY", "IGNORE"):
            i += 1
        # Every table between UPDATE and SET may be written (MySQL's multi-table UPDATE).
        end = next((j for j in range(i, stmt.n) if stmt.t[j].is_word("SET")), stmt.n)
        head = _Statement(stmt.t[i:end], stmt.ctes)
        head_scan = _Scan()
        head.from_list(0, head_scan, written)
        head.scan(head_scan, written)
        if head_scan.uncacheable and not written:
            scan.unknown(head_scan.uncacheable)
    elif verb == "DELETE":
        if stmt.word_at(i, "FROM"):
            # PostgreSQL's "DELETE FROM t USING other" deletes from t only; MySQL's
            # "DELETE FROM t1, t2 USING ..." from every table of the list.
            if stmt.op_at(_target(stmt, i + 1, scan, written), ","):
                stmt.from_list(i + 1, scan, written)
        else:  # MySQL: DELETE t1, t2 FROM t1 JOIN t2 ... -- every table named may lose rows
            scan_all = _Scan()
            stmt.scan(scan_all, written)
            if not written:
                scan.unknown("cannot tell which tables this DELETE writes")
    if not written and not scan.unattributed:
        scan.unknown(f"cannot tell which table this {verb} writes")
    reads: set[str] = set()
    stmt.scan(scan, reads)
    return SqlShape(WRITE, frozenset(written), False, bool(scan.unattributed), scan.unattributed)


def _target(stmt: _Statement, i: int, scan: _Scan, written: set[str]) -> int:
    while stmt.word_at(i, "ONLY", "TABLE"):
        i += 1
    parts, after = stmt.qualified_name(i, scan)
    if not parts:
        scan.unknown("cannot read the written table's name")
        return i
    written.add(parts[-1])
    return stmt.skip_alias(after, scan) if not stmt.op_at(after, "(") else after


def _truncate(tokens: list[_Tok], ctes: frozenset[str]) -> SqlShape:
    stmt = _Statement(tokens, ctes)
    scan = _Scan()
    written: set[str] = set()
    i = 1
    while True:
        while stmt.word_at(i, "TABLE", "ONLY"):
            i += 1
        parts, i = stmt.qualified_name(i, scan)
        if not parts:
            break
        written.add(parts[-1])
        if stmt.op_at(i, "*"):
            i += 1
        if not stmt.op_at(i, ","):
            break
        i += 1
    if not written:
        return _other("cannot tell which tables TRUNCATE empties")
    if any(t.is_word("CASCADE") for t in tokens):
        return SqlShape(WRITE, frozenset(written), False, True, "TRUNCATE ... CASCADE empties other tables")
    return SqlShape(WRITE, frozenset(written))


def _with(tokens: list[_Tok], start: int, outer: frozenset[str]) -> SqlShape:
    """``WITH [RECURSIVE] a [(cols)] AS [NOT] [MATERIALIZED] (body), ... main``."""
    stmt = _Statement(tokens, outer)
    names = set(outer)
    bodies: list[list[_Tok]] = []
    i = start + 1
    if stmt.word_at(i, "RECURSIVE"):
        i += 1
    while True:
        if not _is_name(stmt.at(i)):
            return _other("a WITH clause this reader cannot follow")
        names.add(_name(stmt.t[i]))
        i += 1
        if stmt.op_at(i, "("):
            i = stmt.close_paren(i)
            if i < 0:
                return _other("a WITH clause this reader cannot follow")
        if not stmt.word_at(i, "AS"):
            return _other("a WITH clause this reader cannot follow")
        i += 1
        if stmt.word_at(i, "NOT"):
            i += 1
        if stmt.word_at(i, "MATERIALIZED"):
            i += 1
        if not stmt.op_at(i, "("):
            return _other("a WITH clause this reader cannot follow")
        end = stmt.close_paren(i)
        if end < 0:
            return _other("a WITH clause this reader cannot follow")
        bodies.append(tokens[i + 1 : end - 1])
        i = end
        if stmt.op_at(i, ","):
            i += 1
            continue
        break
    ctes = frozenset(names)
    parts = [_statement(body, ctes) for body in bodies]
    parts.append(_statement(tokens[i:], ctes) if i < len(tokens) else _other("WITH without a statement"))
    return _merge(parts)


def _merge(parts: list[SqlShape]) -> SqlShape:
    if any(p.kind == OTHER for p in parts):
        other = next(p for p in parts if p.kind == OTHER)
        return _other(other.reason or "a part of this statement is not a read or a write", other.mutates)
    unattributed = next((p.reason for p in parts if p.unattributed), "")
    if any(p.kind == WRITE for p in parts):
        written = frozenset().union(*(p.tables for p in parts if p.kind == WRITE))
        return SqlShape(WRITE, written, False, bool(unattributed), unattributed)
    reads = frozenset().union(*(p.tables for p in parts))
    uncacheable = next((p.reason for p in parts if not p.cacheable), "")
    return SqlShape(READ, reads, not uncacheable, bool(unattributed), uncacheable)


@functools.lru_cache(maxsize=2048)
def analyze(sql: str) -> SqlShape:
    """What ``sql`` reads or writes. Never raises: what it cannot read is *other*, unattributed."""
    try:
        tokens = _tokenize(sql)
    except _Unparsable as exc:
        return _other(str(exc))
    statements = _split(tokens)
    if not statements:
        return _other("an empty statement", mutates=False)
    if len(statements) > 1:
        return _other("several statements in one call")
    only = statements[0]
    verb, _ = _first_word(only)
    if verb == "TRUNCATE":
        return _truncate(only, frozenset())
    return _statement(only, frozenset())
