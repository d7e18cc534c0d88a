"""Query results as the cache keeps them: private rows (``Snapshot``), copied on every hit, and
their stored form, msgpack (``client/codec.py``) with the tokens the entry recorded.

A result holds only types that come back as themselves: str, int, float, bool, None, bytes,
bytearray, memoryview, Decimal, datetime and time (naive or with a fixed offset), date,
timedelta, UUID, and lists and str-keyed dicts of those (JSON columns). Anything else is not
cached, in either layer (``Unencodable``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tina4_sidecar.client.codec import pack, unpack
from tina4_sidecar.client.query.keys import Unencodable

FETCH, ONE = "fetch", "one"
"""Fetch kinds: ``fetch``/``fetch_all`` (a DatabaseResult) and ``fetch_one`` (a row or None)."""

_NATIVE = frozenset({str, int, float, bool, type(None)})


def _aware_ok(value: dt.datetime | dt.time) -> bool:
    return value.tzinfo is None or type(value.tzinfo) is dt.timezone


def _encode_datetime(value: Any) -> str:
    if not _aware_ok(value):
        raise Unencodable(f"a datetime with tzinfo {type(value.tzinfo).__name__}")
    return str(value.isoformat())


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

    def records(self) -> list[dict[str, Any]]:
        """A copy of a FETCH snapshot's rows (what ``fetch_all`` returns)."""
        if self.mutable:
            return [_clone(row) for row in self.rows]
        return list(map(dict.copy, self.rows))

    def result(self, adapter: Any, copy: bool = True) -> Any:
        """A result for a caller: copies of the rows (``copy=False``: these rows, for a snapshot
        that was just decoded and that nobody else holds)."""
        if self.kind == ONE:
            if self.rows is None or not copy:
                return self.rows
            return _clone(self.rows) if self.mutable else self.rows.copy()
        records = self.records() if copy else self.rows
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


def encode_snapshot(snap: Snapshot) -> bytes:
    """The stored form of a snapshot (msgpack; bytearray and memoryview are tagged to come back)."""
    return pack(
        [snap.kind, _tag_buffers(snap.rows) if snap.mutable else snap.rows, list(snap.meta), snap.mutable]
    )


def decode_snapshot(payload: bytes) -> Snapshot:
    kind, rows, meta, mutable = unpack(payload)
    return Snapshot(kind, _untag_buffers(rows) if mutable else rows, tuple(meta), bool(mutable))


_BUFFER = "\x00tina4:buffer"


def _tag_buffers(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _tag_buffers(item) for key, item in value.items()}
    if kind is list:
        return [_tag_buffers(item) for item in value]
    if kind is bytearray or kind is memoryview:
        return {_BUFFER: "ba" if kind is bytearray else "mv", "b": bytes(value)}
    return value


def _untag_buffers(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        tag = value.get(_BUFFER)
        if tag is not None and len(value) == 2:
            return bytearray(value["b"]) if tag == "ba" else memoryview(value["b"])
        return {key: _untag_buffers(item) for key, item in value.items()}
    if kind is list:
        return [_untag_buffers(item) for item in value]
    return value


def encode_result(kind: str, result: Any) -> bytes:
    """The stored form of a fresh result (``snapshot`` then ``encode_snapshot``)."""
    return encode_snapshot(snapshot(kind, result))


def decode_result(kind: str, payload: bytes, adapter: Any) -> Any:
    """A result equal to the one ``encode_result`` was given, sharing nothing with the cache."""
    snap = decode_snapshot(payload)
    if snap.kind != kind:
        raise ValueError(f"a {snap.kind} entry read as {kind}")
    return snap.result(adapter)
