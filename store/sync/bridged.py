"""A sync face for an async store that has no sync twin (Redis Cluster): its coroutines run on the
client's bridge loop (``client/runtime.py``). The one remaining thread hop, kept for a backend
whose cluster-aware sync client would duplicate the async one's slot and failover handling."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.sync.contract import SyncStore

type Runner = Callable[[Coroutine[Any, Any, Any]], Any]


class BridgedStore(SyncStore):
    def __init__(self, spec: Store, run: Runner) -> None:
        super().__init__(spec)
        self.run = run

    def _get(self, key: str) -> bytes | None:
        result: bytes | None = self.run(self.spec.get(key))
        return result

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        result: list[bytes | None] = self.run(self.spec.get_many(keys))
        return result

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        if not self.run(self.spec.set(key, value, ttl)):
            raise ConnectionError("the store did not take the value")

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self.run(self.spec.add(key, value, ttl)))

    def _delete(self, key: str) -> bool:
        return bool(self.run(self.spec.delete(key)))

    def _clear(self) -> None:
        if not self.run(self.spec.clear()):
            raise ConnectionError("the store could not be cleared")

    def _size(self) -> int:
        return int(self.run(self.spec.size()))

    def _ping(self) -> None:
        self.run(self.spec.ping())

    def _open(self) -> None:
        self.run(self.spec.open())

    def _close(self) -> None:
        self.run(self.spec.close())
