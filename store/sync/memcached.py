"""Sync twin of the memcached store: the async ``MemcachedStore``'s blocking helpers (generations,
chunked values), called in the caller's thread.

Reads of one server go through a plain pymemcache ``Client`` that the calling thread keeps
(``per_thread.py``) rather than the pooled, retrying client: the pool's checkout and the retry
wrapper cost about as much CPU as the ``get`` itself. The read is the same one (the generation
rides along with the value, so a clear made anywhere is seen at once). A kept connection that a
restarted server dropped is retried once on a new one, as the pooled client's retry does. Writes,
and every call on several servers (``HashClient``), keep the pooled client.
"""

from __future__ import annotations

from pymemcache.client.base import Client

from tina4_sidecar.store.backends.memcached import (
    _SERDE,
    _STALE_CONNECTION_ERRORS,
    MemcachedStore,
    _hash,
    _parse_generation,
)
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.per_thread import PerThread


class SyncMemcachedStore(SyncStore):
    def __init__(self, spec: MemcachedStore) -> None:
        super().__init__(spec)
        self.mc = spec
        self._conns: PerThread[Client] | None = None
        if len(spec.servers) == 1:
            self._conns = PerThread(self._connect, lambda client: client.close(), spec.threads)

    def _connect(self) -> Client:
        return Client(
            self.mc.servers[0],
            serde=_SERDE,
            connect_timeout=self.timeout,
            timeout=self.timeout,
            no_delay=True,
            default_noreply=False,
        )

    def _read(self, keys: list[str]) -> list[bytes | None]:
        conns = self._conns
        client = conns.get() if conns is not None else None
        if conns is None or client is None:
            return self.mc._read_values(keys)
        try:
            return self.mc._read_values(keys, client)
        except _STALE_CONNECTION_ERRORS:
            conns.discard()
        except BaseException:
            conns.discard()  # a reply may be left unread on it
            raise
        client = conns.get()
        return self.mc._read_values(keys, client) if client is not None else self.mc._read_values(keys)

    def _get(self, key: str) -> bytes | None:
        """One key: the generation and the item in one ``get_many``, as ``_read_values`` does, with
        its general steps (several keys, chunks, a generation that moved) left to it."""
        mc, conns, seen = self.mc, self._conns, self.mc._generation
        client = conns.get() if conns is not None and seen is not None else None
        if conns is None or client is None or seen is None:
            return self._read([key])[0]
        item_key = f"{mc.prefix}{seen[0]}:{_hash(key)}"
        try:
            found = client.get_many([mc._gen_key, item_key])
        except _STALE_CONNECTION_ERRORS:  # dropped by a restarted server: once more, afresh
            conns.discard()
            return self._read([key])[0]
        except BaseException:
            conns.discard()  # a reply may be left unread on it
            raise
        if _parse_generation(found.get(mc._gen_key)) != seen[0]:
            return self._read([key])[0]  # cleared, evicted or restarted meanwhile: the full read
        mc._remember(seen[0])
        hit = found.get(item_key)
        if hit is None:
            return None
        flags, payload = hit
        return payload if flags == 0 else self._read([key])[0]  # a chunk manifest: the full read

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return self._read(keys)

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
        if self._conns is not None:
            self._conns.close()
        client, self.mc._client = self.mc._client, None
        self.mc._servers, self.mc._ring = [], None
        if client is not None:
            client.close()
