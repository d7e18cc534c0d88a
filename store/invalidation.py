"""Invalidation tokens: O(1) purges that reach every process sharing a store, without clocks.

Every *scope* that can be purged (everything, a route path, a URL, a tag, a database table)
has a token: a random string kept in the same store layer as the entries it governs, under a
key that no entry key can take (entry keys never start with ``~``). An entry records the
tokens of its scopes as they were read BEFORE its value was computed, and is valid only while
every recorded token is unchanged. Purging a scope writes a new random token:

* O(1) whatever the number of entries, and visible at once to every sidecar and app instance
  that shares the store;
* no wall clocks are compared, so hosts need not agree on the time;
* a value computed while a purge happened recorded the old token, so it is never served
  (django-cacheops' rule, which django-cachalot's timestamps miss);
* a token that the store lost (evicted, expired, cleared) reads as None, which differs from
  any recorded token: losing a token can only cause misses, never stale hits.

Tokens expire (``MARKER_TTL``), so that the markers of URLs, routes and tags purged once do not
pile up in a shared store. An entry that recorded "no token yet" (None: the scope had never been
purged) would match again once a purge's token expired, so a token must outlive every entry that
can have recorded it: ``MARKER_TTL`` is one day more than ``MAX_ENTRY_TTL``, the longest any
response (``proxy/http/freshness.MAX_STORAGE_TTL``) or tagged key/value entry is kept.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence

from tina4_sidecar.store.contract import Store

ALL = "all"

MAX_ENTRY_TTL = 365 * 24 * 3600
"""The longest an entry that records tokens is kept (responses; tagged key/value entries)."""

MARKER_TTL = MAX_ENTRY_TTL + 24 * 3600
"""TTL of every invalidation token: longer than any entry that can record it."""


def scope(kind: str, name: str = "") -> str:
    """The key of a scope's token: ``~tok:route:/api/products``."""
    return f"~tok:{kind}:{name}" if name else f"~tok:{kind}"


def all_scope() -> str:
    return scope(ALL)


def new_token() -> bytes:
    return secrets.token_hex(8).encode()


async def read_tokens(store: Store, scopes: Sequence[str]) -> dict[str, str | None]:
    """Current tokens of ``scopes`` in one round trip."""
    values = await store.get_many(list(scopes))
    return {name: _text(value) for name, value in zip(scopes, values, strict=True)}


async def bump(store: Store, scopes: Iterable[str]) -> bool:
    """Purge: give each scope a new token. False when the store could not be written."""
    ok = True
    for name in scopes:
        ok = await store.set(name, new_token(), MARKER_TTL) and ok
    return ok


def still_valid(recorded: Mapping[str, str | None], current: Mapping[str, str | None]) -> bool:
    """True when every token the entry recorded is still the current one."""
    return all(current.get(name) == token for name, token in recorded.items())


def tokens_from(values: Sequence[bytes | None], scopes: Sequence[str]) -> dict[str, str | None]:
    """Pair raw values read with ``get_many`` (e.g. after an entry key) with their scopes."""
    return {name: _text(value) for name, value in zip(scopes, values, strict=True)}


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return "?"  # not a token we wrote: treat as changed, never as a match
