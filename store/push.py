"""Push invalidation: what a change of the response layer announces, on which channel, in what format.

Sidecars keep HIT responses in an in-process near cache (``proxy/near/cache.py``). To trust those
copies without asking the store on every HIT, every process that changes the response layer of a
store with push (Redis, Valkey, Redis Cluster) announces the change on the namespace's channel,
``<namespace>:near-invalidate``, AFTER the store has applied it (in one pipeline with the write on
one node, right after it on a cluster). The announcing is done by the backend itself, so every
writer announces without knowing about it: the sidecar, the admin API and CLI, the client library
inside the app, and the fallback store's replay after an outage.

What a change announces (everything else, such as locks, announces nothing):

* a write or delete of an invalidation token (``~tok:…``, see ``store/invalidation.py``): that
  scope. A purge writes a new token rather than deleting entries, and every entry records the
  names of the tokens it depends on, so a receiver drops exactly the copies that record the scope;
* a write or delete of any other key not starting with ``~`` (an entry, a vary index, a variant):
  that key, so a copy never outlives a delete (RFC 9111 section 4.4) or a newer stored version;
* a clear of the layer: everything.

Messages are small JSON objects (``{"v":1,"keys":[…]}``, ``{"v":1,"scopes":[…]}``,
``{"v":1,"all":true}``); one a receiver cannot read counts as "everything".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

PUSH_LAYER = "resp"
"""The layer whose changes are announced: the one the near cache copies."""

CHANNEL_SUFFIX = "near-invalidate"
TOKEN_PREFIX = "~tok:"
"""Keys of invalidation tokens (``store.invalidation.scope``)."""
PRIVATE_PREFIX = "~"
"""Keys that are no entries (tokens, locks): entry keys never start with it."""
VERSION = 1


TOKENS_LAYER = "meta"
"""The layer of the key/value and query-cache tokens: announced too, for the app's near cache of
query results (``client/query/trust.py``), on a channel of its own."""


def channel(namespace: str) -> str:
    """The channel on which the response layer of ``namespace`` announces its changes."""
    return f"{namespace}:{CHANNEL_SUFFIX}"


def channel_of(namespace: str, layer: str) -> str | None:
    """Where ``layer`` of ``namespace`` announces its changes; None for the layers that do not."""
    if layer == PUSH_LAYER:
        return channel(namespace)
    if layer == TOKENS_LAYER:
        return f"{namespace}:{TOKENS_LAYER}:{CHANNEL_SUFFIX}"
    return None


@dataclass(frozen=True, slots=True)
class Change:
    """One announced change: entry keys written or deleted, token scopes changed, or everything."""

    keys: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    everything: bool = False

    def affects(self, key: str, scopes: frozenset[str]) -> bool:
        """True when a copy of the entry at ``key`` that records the tokens ``scopes`` may be wrong now."""
        return self.everything or key in self.keys or not self.scopes.isdisjoint(scopes)


EVERYTHING = Change(everything=True)


def announcement(key: str) -> Change | None:
    """What writing or deleting ``key`` announces: None for locks and the like."""
    if key.startswith(TOKEN_PREFIX):
        return Change(scopes=frozenset({key}))
    if key.startswith(PRIVATE_PREFIX):
        return None
    return Change(keys=frozenset({key}))


def encode(change: Change) -> bytes:
    if change.everything:
        body: dict[str, object] = {"v": VERSION, "all": True}
    elif change.scopes and not change.keys:
        body = {"v": VERSION, "scopes": sorted(change.scopes)}
    elif change.keys and not change.scopes:
        body = {"v": VERSION, "keys": sorted(change.keys)}
    else:
        body = {"v": VERSION, "keys": sorted(change.keys), "scopes": sorted(change.scopes)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> Change:
    """The change ``data`` announces; EVERYTHING when it cannot be read (dropping too much is safe)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return EVERYTHING
    if not isinstance(body, dict) or body.get("v") != VERSION or body.get("all") is True:
        return EVERYTHING
    keys, scopes = body.get("keys", []), body.get("scopes", [])
    if not _strings(keys) or not _strings(scopes) or not (keys or scopes):
        return EVERYTHING
    return Change(keys=frozenset(keys), scopes=frozenset(scopes))


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class SubscriptionLost(ConnectionError):
    """The subscription ended: its connection was lost or the server ended it."""


class Subscription(Protocol):
    """One subscription to a namespace's channel, on one connection of its own.

    ``open`` connects and subscribes, and returns once the server has confirmed: every change
    announced after that is delivered, in order. ``receive`` answers the next message, or None
    for the answer to a ``ping`` (which proves that everything announced before the ping was
    sent has been delivered). Both raise ``SubscriptionLost`` when the connection is lost, after
    which the subscription is not used again (messages may have been missed): ``close`` it and
    open a new one.
    """

    async def open(self) -> None: ...

    async def receive(self) -> bytes | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
