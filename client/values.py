"""How a key/value entry is stored: a one-byte kind, then the value's msgpack (``client/codec.py``).

A stored value is one of::

    b"M" + msgpack of the value        an untagged value
    b"T" + msgpack [tokens, payload]   a tagged value: ``tokens`` maps each tag to the invalidation
                                       token it had when the value was computed; ``payload`` is
                                       the ``M`` form above

The sidecar, the sync and the async paths of the client all read and write this one format.
Values come from our own store, but another application or release may share it: anything
unreadable (an older release's ``J``/``B`` values too) is a ``CorruptValue``, which callers
treat as a miss, and the next ``cache_set`` overwrites it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from tina4_sidecar.client.codec import CorruptValue, pack, unpack

MSGPACK = b"M"
TAGGED = b"T"
_M = MSGPACK[0]
_T = TAGGED[0]

__all__ = ["CorruptValue", "Unwrapped", "decode", "encode", "unwrap", "wrap"]


class Unwrapped(NamedTuple):
    """A stored value split into its payload (``M``) and the tag tokens it recorded."""

    payload: bytes
    tags: dict[str, str | None]


def encode(value: Any) -> bytes:
    """The payload of ``value``; TypeError naming a type the codec does not carry."""
    return MSGPACK + pack(value)


def decode(payload: bytes) -> Any:
    """The value of an ``M`` payload, as new objects; CorruptValue for anything else."""
    if not payload or payload[0] != _M:
        raise CorruptValue(f"unknown value kind {payload[:1]!r}")
    return unpack(payload[1:])


def wrap(payload: bytes, tokens: Mapping[str, str | None]) -> bytes:
    """``payload`` with the tokens of its tags; an untagged value is stored as its payload."""
    if not tokens:
        return payload
    return TAGGED + pack([dict(tokens), payload])


def unwrap(stored: bytes) -> Unwrapped:
    """Split what the store holds into payload and tag tokens; CorruptValue when unreadable."""
    kind = stored[0] if stored else -1
    if kind == _M:
        return Unwrapped(stored, {})
    if kind != _T:
        raise CorruptValue(f"unknown value kind {stored[:1]!r}")
    parts = unpack(stored[1:])
    if (
        not isinstance(parts, list)
        or len(parts) != 2
        or not isinstance(parts[0], dict)
        or not isinstance(parts[1], bytes)
        or not all(isinstance(t, str) and isinstance(v, str | None) for t, v in parts[0].items())
    ):
        raise CorruptValue("unreadable tag header")
    return Unwrapped(parts[1], parts[0])
