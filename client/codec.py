"""The codec of cached values and query results: msgpack, with ext type tags for what msgpack lacks.

msgpack (a well-kept C extension) instead of a hand-written typed JSON walk: it packs and
unpacks a small dict in well under a microsecond, carries bytes and non-str dict keys natively,
and its ``default``/``ext_hook`` hooks give the types a database row holds a tag of their own,
so that they come back as the same types, not as strings (Tina4's file and network stores write
``json.dumps(value, default=str)``, so a ``Decimal`` comes back as ``"79.99"``):

    ext 1 Decimal (its exact text)     ext 2 datetime (ISO 8601, offset kept)   ext 3 date
    ext 4 time                         ext 5 timedelta (days, seconds, µs)      ext 6 UUID (16 bytes)
    ext 8 set                          ext 9 frozenset
    ext 11 int beyond 64 bits (text)

``bytearray`` and ``memoryview`` come back as bytes; a tuple comes back as a list (as from JSON,
and from Tina4's network stores). A datetime with a named zone (``ZoneInfo``) comes back with
its fixed offset at that instant (equal, same type, another ``tzinfo``). Any other type (an
object, a class, a function) is refused with a TypeError that names it: nothing is pickled and
nothing is silently turned into text. Every decode builds new objects, so each caller gets an
isolated copy. Bytes that are not ours raise :class:`CorruptValue` (callers treat it as a miss).
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal
from typing import Any

import msgpack

_TD = struct.Struct(">qii")


class CorruptValue(ValueError):
    """Stored bytes that this codec did not write (another application or release)."""


def _text(value: Any) -> bytes:
    return str(value).encode()


def _iso(value: dt.datetime | dt.time) -> bytes:
    return value.isoformat().encode()


def _default(value: Any) -> Any:
    kind = type(value)
    if kind is Decimal:
        return msgpack.ExtType(1, _text(value))
    if kind is dt.datetime:
        if value.tzinfo is not None and not isinstance(value.tzinfo, dt.timezone):
            offset = value.utcoffset()
            value = value.replace(tzinfo=dt.timezone(offset) if offset is not None else None)
        return msgpack.ExtType(2, _iso(value))
    if kind is dt.date:
        return msgpack.ExtType(3, value.isoformat().encode())
    if kind is dt.time:
        return msgpack.ExtType(4, _iso(value))
    if kind is dt.timedelta:
        return msgpack.ExtType(5, _TD.pack(value.days, value.seconds, value.microseconds))
    if kind is uuid.UUID:
        return msgpack.ExtType(6, value.bytes)
    if kind is memoryview:
        return bytes(value)
    if kind is set or kind is frozenset:
        return msgpack.ExtType(8 if kind is set else 9, pack(list(value)))
    if kind is int:
        return msgpack.ExtType(11, _text(value))
    return _refuse(kind)


def _refuse(kind: type) -> Any:
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    raise TypeError(
        f"cannot cache a value of type {name}: cache values are None, bool, int, float, str, bytes, "
        "list, tuple, dict, set, Decimal, datetime, date, time, timedelta or UUID (nested freely)"
    )


def _ext(code: int, data: bytes) -> Any:
    if code == 1:
        return Decimal(data.decode())
    if code == 2:
        return dt.datetime.fromisoformat(data.decode())
    if code == 3:
        return dt.date.fromisoformat(data.decode())
    if code == 4:
        return dt.time.fromisoformat(data.decode())
    if code == 5:
        days, seconds, micros = _TD.unpack(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == 6:
        return uuid.UUID(bytes=data)
    if code == 8:
        return set(unpack(data))
    if code == 9:
        return frozenset(unpack(data))
    if code == 11:
        return int(data.decode())
    raise CorruptValue(f"unknown ext type {code}")


def pack(value: Any) -> bytes:
    """``value`` as msgpack; TypeError naming a type the codec does not carry."""
    packed: bytes = msgpack.packb(value, default=_default, use_bin_type=True, unicode_errors="surrogatepass")
    return packed


def unpack(data: bytes) -> Any:
    """The value ``pack`` was given, as new objects; CorruptValue for bytes it did not write."""
    try:
        return msgpack.unpackb(
            data, ext_hook=_ext, raw=False, strict_map_key=False, unicode_errors="surrogatepass"
        )
    except CorruptValue:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptValue(f"unreadable value: {exc}") from None
