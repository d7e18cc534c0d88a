"""Memo tables that a client can grow, bounded in entries and in bytes.

Request targets and header blocks are the client's to choose, so a table keyed by them (the
canonical key per target, the fast path's decisions per header block, hit-for-miss markers)
must never pin more memory than a fixed budget, however long the keys: 10,000 targets of 58 KB
once pinned 1.3 GB. When either bound would be passed the table starts over empty, which costs
a few recomputations and keeps every operation O(1).
"""

from __future__ import annotations


class BoundedDict[K, V]:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: dict[K, V] = {}
        self._bytes = 0
        self.get = self._items.get  # the dict's own method: a lookup is on the HIT path

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` under ``key``; ``size``: what the pair costs, in bytes (about)."""
        if size > self.max_bytes // 16:
            return  # one key must not take a sixteenth of the budget: not worth remembering
        if len(self._items) >= self.max_entries or self._bytes + size > self.max_bytes:
            self.clear()
        if key not in self._items:
            self._bytes += size
        self._items[key] = value

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)  # its bytes stay counted until the next clear

    def clear(self) -> None:
        self._items.clear()  # the same dict object: ``get`` stays bound to it
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
