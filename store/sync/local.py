"""Sync twins of the stores without a server: memory (the same process-wide shards as the async
``MemoryStore``, so both paths of one process see one cache) and file (the async ``FileStore``'s
own blocking helpers, run in the caller's thread instead of a worker thread)."""

from __future__ import annotations

import time

from tina4_sidecar.store.backends.file import FileStore, encode_entry
from tina4_sidecar.store.backends.memory import MemoryStore
from tina4_sidecar.store.sync.contract import SyncStore


class SyncMemoryStore(SyncStore):
    """No I/O, no timeout: the hot path of ``cache_get`` on the default backend."""

    in_process = True

    def __init__(self, spec: MemoryStore) -> None:
        super().__init__(spec)
        self.shard = spec.shard

    def get(self, key: str) -> bytes | None:  # the contract's guard costs more than the lookup
        value = self.shard.get(key, time.monotonic())
        if value is None:
            self.counters.misses += 1
        else:
            self.counters.hits += 1
        return value

    def _get(self, key: str) -> bytes | None:
        return self.shard.get(key, time.monotonic())

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        now = time.monotonic()
        return [self.shard.get(key, now) for key in keys]

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        now = time.monotonic()
        self.shard.set(key, value, now + ttl if ttl else 0.0, now)

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        now = time.monotonic()
        return self.shard.add(key, value, now + ttl if ttl else 0.0, now)

    def _delete(self, key: str) -> bool:
        return self.shard.delete(key, time.monotonic())

    def _clear(self) -> None:
        self.shard.clear()

    def _size(self) -> int:
        return self.shard.live_size(time.monotonic())

    def _sweep(self) -> int:
        before = len(self.shard)
        return before - self.shard.live_size(time.monotonic())

    def _ping(self) -> None:
        return None


class SyncFileStore(SyncStore):
    """The file store's format and atomic replace, from the caller's thread."""

    def __init__(self, spec: FileStore) -> None:
        super().__init__(spec)
        self.files = spec

    def _get(self, key: str) -> bytes | None:
        return self.files._read_live(key, time.time())

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return self.files._read_many(keys, time.time())

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        content = encode_entry(self.full_key(key), value, self.files.expires_at(ttl) or 0.0)
        self.files._write_announced(key, content)

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        content = encode_entry(self.full_key(key), value, self.files.expires_at(ttl) or 0.0)
        return self.files._add_sync(key, content, time.time())

    def _delete(self, key: str) -> bool:
        return self.files._delete_sync(key, time.time())

    def _clear(self) -> None:
        self.files._clear_sync()

    def _size(self) -> int:
        return self.files._count_files()

    def _sweep(self) -> int:
        return self.files._sweep_sync(100_000, time.time())

    def _ping(self) -> None:
        self.files.directory.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        self.files._open_sync()
