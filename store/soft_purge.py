"""Soft purges: a scope's entries become stale at once instead of gone (Fastly's soft purge).

A soft purge writes a new token too (``store.invalidation``), marked soft and carrying the hard
token it replaced: ``~<base>~<random>``. An entry whose recorded token differs from the current
one only by soft purges (its own token, or its own token's base, is the current soft token's
base) is kept as stale: the next request fetches it again, and while the app is down
stale-if-error still serves it. A hard purge writes a plain token, so every entry recorded
before it is invalid, whatever soft purges came before or after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import new_token

SOFT = "~"


def base(token: str | None) -> str:
    """The hard token a token stands on: itself, or the one a soft token replaced."""
    if token is None:
        return ""
    if token.startswith(SOFT):
        return token[1:].partition(SOFT)[0]
    return token


def soft_purged(recorded: Mapping[str, str | None], current: Mapping[str, str | None]) -> bool:
    """Every changed token changed by soft purges only (an entry to keep, as stale)."""
    for name, token in recorded.items():
        now = current.get(name)
        if now == token:
            continue
        if now is None or not now.startswith(SOFT) or base(now) != base(token):
            return False
    return True


async def soft_bump(store: Store, scopes: Iterable[str]) -> bool:
    """Soft-purge each scope; False when the store could not be written."""
    ok = True
    for name in scopes:
        raw = await store.get(name)
        current = raw.decode("ascii", "replace") if raw is not None else None
        token = f"{SOFT}{base(current)}{SOFT}{new_token().decode()}"
        ok = await store.set(name, token.encode(), 0) and ok
    return ok
