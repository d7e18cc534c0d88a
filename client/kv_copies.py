"""Decoded copies of memory-store values, so that a ``cache_get`` there copies instead of decoding.

On the memory store the stored bytes live in this process. The first ``cache_get`` of a value
decodes them (``client/values.py``) and, when the value is *plain*, keeps the decoded value as
a template beside the very bytes object it came from. Later gets of the same bytes hand out a
shallow copy of the template, which for plain values is as isolated as a fresh decode:

* an immutable scalar (None, bool, int, float, str, bytes, Decimal, dates and times, UUID)
  is handed out as it is;
* a dict or a list of immutable scalars is copied with ``dict.copy``/``list.copy``;
* a list of such dicts (rows) is copied row by row.

Anything else (nested containers, sets, bytearray) is decoded each time. The template is
trusted only while the store holds the same bytes object (``is``): a ``cache_set`` from any
path, an eviction, an expiry or a clear replaces or drops the bytes, and the template with
them. The table is bounded (``LIMIT`` values, each at most ``MAX_BYTES`` stored).

Measured (``bench/client_costs.py``): a memory ``cache_get`` of a 4-field dict drops from about
2.2 µs (store read, locked counter, msgpack decode) to within 2x of Tina4's own, which returns
its stored object itself, uncopied.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from tina4_sidecar.client import runtime
from tina4_sidecar.client.values import CorruptValue, decode

LIMIT: Final = 4096
MAX_BYTES: Final = 64 * 1024

_SCALARS: Final = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        Decimal,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        uuid.UUID,
    }
)

type Copier = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _rows(value: list[dict[Any, Any]]) -> list[dict[Any, Any]]:
    return [row.copy() for row in value]


def _flat_dict(value: dict[Any, Any]) -> bool:
    scalars = _SCALARS
    return all(type(item) in scalars for item in value.values())


def copier(value: Any) -> Copier | None:
    """How to copy ``value`` as faithfully as a decode would, or None when only a decode will do."""
    kind = type(value)
    if kind in _SCALARS:
        return _same
    if kind is dict:
        return dict.copy if _flat_dict(value) else None
    if kind is list:
        scalars = _SCALARS
        if all(type(item) in scalars for item in value):
            return list.copy
        if all(type(item) is dict and _flat_dict(item) for item in value):
            return _rows
    return None


_templates: dict[str, tuple[bytes, Copier, Any]] = {}


def value_of(key: str, stored: bytes) -> Any:
    """The value of the untagged ``stored`` bytes of ``key``, as the caller's own copy.

    Raises CorruptValue for bytes that are not a value of ours.
    """
    held = _templates.get(key)
    if held is not None and held[0] is stored:
        return held[1](held[2])
    value = decode(stored)
    if len(stored) <= MAX_BYTES:
        copy = copier(value)
        if copy is not None:
            if len(_templates) >= LIMIT:
                _templates.pop(next(iter(_templates)), None)
            _templates[key] = (stored, copy, value)
            return copy(value)
    return value


def forget() -> None:
    _templates.clear()


runtime.on_reset(forget)

__all__ = ["CorruptValue", "copier", "forget", "value_of"]
