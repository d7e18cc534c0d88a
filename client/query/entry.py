"""A persistent query-cache entry as the store holds it: msgpack ``[FORMAT, tokens, payload,
expires_at]``. ``tokens`` are the scopes' tokens read before the query ran; ``payload`` is the
encoded snapshot (``snapshot.encode_snapshot``); ``expires_at`` (epoch seconds, 0 = never) lets
a process that reads the entry keep its decoded copy (``near.py``) no longer than the store does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tina4_sidecar.client.codec import CorruptValue, pack, unpack
from tina4_sidecar.client.query.keys import FORMAT


class Entry(NamedTuple):
    payload: bytes
    recorded: dict[str, str]
    expires_at: float


def entry_blob(tokens: Mapping[str, str | None], payload: bytes, expires_at: float) -> bytes:
    return pack([FORMAT, dict(tokens), payload, expires_at])


def valid_entry(blob: bytes, current: Mapping[str, str | None]) -> Entry | None:
    """The entry in ``blob`` when every token it recorded is still current, else None.

    The recorded scopes must be exactly the scopes asked for now (the catalog may have changed
    what a statement depends on), and a recorded token is never None.
    """
    try:
        version, recorded, payload, expires_at = unpack(blob)
    except (CorruptValue, ValueError, TypeError):
        return None
    if version != FORMAT or not isinstance(recorded, dict) or recorded.keys() != current.keys():
        return None
    if any(token is None or current[name] != token for name, token in recorded.items()):
        return None
    if not isinstance(payload, bytes) or not isinstance(expires_at, int | float):
        return None
    return Entry(payload, recorded, float(expires_at))
