"""Sync twin of the memcached store: the async ``MemcachedStore``'s blocking helpers (pymemcache's
pooled, thread-safe clients, generations, chunked values), called in the caller's thread."""

from __future__ import annotations

from tina4_sidecar.store.backends.memcached import MemcachedStore
from tina4_sidecar.store.sync.contract import SyncStore


class SyncMemcachedStore(SyncStore):
    def __init__(self, spec: MemcachedStore) -> None:
        super().__init__(spec)
        self.mc = spec

    def _get(self, key: str) -> bytes | None:
        return self.mc._read_values([key])[0]

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return self.mc._read_values(keys)

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        self.mc._write_value(key, value, ttl)

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return self.mc._add_value(key, value, ttl)

    def _delete(self, key: str) -> bool:
        return self.mc._delete_value(key)

    def _clear(self) -> None:
        self.mc._advance_generation()

    def _size(self) -> int:
        return self.mc._read_count()

    def _ping(self) -> None:
        self.mc._ping_servers()

    def _open(self) -> None:
        self.mc._open_sync()

    def _close(self) -> None:
        client, self.mc._client = self.mc._client, None
        self.mc._servers, self.mc._ring = [], None
        if client is not None:
            client.close()
