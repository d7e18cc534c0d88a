"""The value codec of the key/value API: JSON data or bytes behind a one-byte type tag; never pickle.

A stored value is one of::

    b"J" + JSON (UTF-8)            dict, list, str, int, float, bool, None
    b"B" + the bytes               bytes (bytearray and memoryview are stored as bytes)
    b"T" + JSON header + b"\\n" + one of the above
                                   a tagged value: the header maps each tag to the invalidation
                                   token it had when the value was computed

What comes back is what JSON gives back: tuples become lists, and dict keys that are int, float,
bool or None become strings (as ``json.dumps`` makes them). Anything else (sets, datetimes,
Decimals, objects, bytes nested inside a container) is refused with a TypeError that names the
type, so that nothing is silently stringified the way Tina4's ``default=str`` does. Values come
from our own store, but another application or version may share it: anything unreadable is
a ``CorruptValue``, which callers treat as a miss.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

JSON = b"J"
BYTES = b"B"
TAGGED = b"T"

_ENCODING = ("utf-8", "surrogatepass")  # any str round-trips, even a lone surrogate
_HINTS: dict[type, str] = {
    datetime.datetime: "store value.isoformat() and parse it back with datetime.fromisoformat()",
    datetime.date: "store value.isoformat() and parse it back with date.fromisoformat()",
    datetime.time: "store value.isoformat() and parse it back with time.fromisoformat()",
    datetime.timedelta: "store value.total_seconds()",
    decimal.Decimal: "store str(value) (exact) or float(value)",
    set: "store a sorted list",
    frozenset: "store a sorted list",
    bytes: "bytes are stored only as the whole value; inside a dict or list, store base64 text",
    bytearray: "bytes are stored only as the whole value; inside a dict or list, store base64 text",
}


class CorruptValue(ValueError):
    """Stored bytes that are not a value this codec wrote."""


class Unwrapped(NamedTuple):
    """A stored value split into its payload (``J``/``B``) and the tag tokens it recorded."""

    payload: bytes
    tags: dict[str, str | None]


def encode(value: Any) -> bytes:
    """The payload of ``value``; TypeError naming the type for anything but JSON data and bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES + bytes(value)
    try:
        text = _ENCODER.encode(value)
    except TypeError as exc:  # a nested value of another type: say which and where it came from
        raise TypeError(f"cache values must be JSON data or bytes: {exc}") from None
    return JSON + text.encode(*_ENCODING)


def decode(payload: bytes) -> Any:
    """The value of a ``J`` or ``B`` payload; CorruptValue for anything else."""
    kind = payload[:1]
    if kind == BYTES:
        return payload[1:]
    if kind == JSON:
        try:
            return json.loads(payload[1:].decode(*_ENCODING))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise CorruptValue(f"unreadable JSON value: {exc}") from None
    raise CorruptValue(f"unknown value type {kind!r}")


def wrap(payload: bytes, tokens: Mapping[str, str | None]) -> bytes:
    """``payload`` with the tokens of its tags; an untagged value is stored as its payload."""
    if not tokens:
        return payload
    header = json.dumps(dict(tokens), ensure_ascii=True, separators=(",", ":"))  # never a raw "\n"
    return TAGGED + header.encode("ascii") + b"\n" + payload


def unwrap(stored: bytes) -> Unwrapped:
    """Split what the store holds into payload and tag tokens; CorruptValue when unreadable."""
    if stored[:1] != TAGGED:
        if stored[:1] not in (JSON, BYTES):
            raise CorruptValue(f"unknown value type {stored[:1]!r}")
        return Unwrapped(stored, {})
    header, newline, payload = stored[1:].partition(b"\n")
    try:
        tags = json.loads(header) if newline else None
    except ValueError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(t, str | None) for t in tags.values()):
        raise CorruptValue("unreadable tag header")
    return Unwrapped(payload, tags)


def _refuse(value: Any) -> Any:
    """``json``'s ``default`` hook: every type it cannot encode ends here."""
    kind = type(value)
    hint = next((text for base, text in _HINTS.items() if isinstance(value, base)), None)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    raise TypeError(f"not {name}" + (f"; {hint}" if hint else ""))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_refuse)
