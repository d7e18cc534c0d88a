"""Sync twin of the MongoDB store: pymongo's blocking ``MongoClient`` (thread-safe, pooled) on the
async ``MongoStore``'s collection, document shape and expiry rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import DeleteOne, InsertOne, MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tina4_sidecar.store.backends.mongodb import COLLECTION, DEFAULT_DATABASE, MongoStore, _live
from tina4_sidecar.store.contract import CLEAR_TIMEOUT
from tina4_sidecar.store.sync.contract import SyncStore

_DUPLICATE_KEY = 11000


class SyncMongoStore(SyncStore):
    def __init__(self, spec: MongoStore) -> None:
        super().__init__(spec)
        self.mongo_spec = spec
        self._client: MongoClient[dict[str, Any]] | None = None
        self._coll: Any = None  # the collection object, built once (not per call)

    def _collection(self) -> Any:
        coll = self._coll
        if coll is not None:
            return coll
        if self._client is None:
            ms = int(self.timeout * 1000)
            self._client = MongoClient(
                self.mongo_spec.url,
                serverSelectionTimeoutMS=ms,
                connectTimeoutMS=ms,
                socketTimeoutMS=ms,
                tz_aware=True,
                appname="tina4-sidecar",
                **self.mongo_spec._credentials,
            )
        self._coll = self._client.get_default_database(DEFAULT_DATABASE)[COLLECTION]
        return self._coll

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.mongo_spec._clock(), UTC)

    def _get(self, key: str) -> bytes | None:
        doc = self._collection().find_one({"_id": self.prefix + key}, {"value": 1, "expires_at": 1})
        return bytes(doc["value"]) if doc is not None and _live(doc, self._now()) else None

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        ids = [self.prefix + key for key in keys]
        now = self._now()
        found = {
            doc["_id"]: bytes(doc["value"])
            for doc in self._collection().find(
                {"_id": {"$in": list(set(ids))}}, {"value": 1, "expires_at": 1}
            )
            if _live(doc, now)
        }
        return [found.get(id_) for id_ in ids]

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        full_key = self.prefix + key
        document = self.mongo_spec._document(full_key, value, ttl, self.mongo_spec._clock())
        try:
            self._collection().bulk_write([DeleteOne({"_id": full_key}), InsertOne(document)], ordered=True)
        except BulkWriteError as exc:  # a concurrent set won between our delete and insert: theirs stays
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        full_key = self.prefix + key
        clock = self.mongo_spec._clock()
        document = self.mongo_spec._document(full_key, value, ttl, clock)
        collection = self._collection()
        try:
            collection.insert_one(document)
            return True
        except DuplicateKeyError:
            pass
        expired = {"_id": full_key, "expires_at": {"$lte": datetime.fromtimestamp(clock, UTC)}}
        if collection.delete_one(expired).deleted_count == 0:
            return False
        try:
            collection.insert_one(document)
            return True
        except DuplicateKeyError:
            return False

    def _delete(self, key: str) -> bool:
        now = self._now()
        doc = self._collection().find_one_and_delete({"_id": self.prefix + key}, projection={"expires_at": 1})
        return doc is not None and _live(doc, now)

    def _clear(self) -> None:
        self._ping()
        with pymongo.timeout(max(self.timeout, CLEAR_TIMEOUT)):
            self._collection().delete_many({"ns": self.mongo_spec.ns})

    def _size(self) -> int:
        live = {"ns": self.mongo_spec.ns, "$nor": [{"expires_at": {"$lte": self._now()}}]}
        return int(self._collection().count_documents(live))

    def _ping(self) -> None:
        self._collection()
        assert self._client is not None
        self._client.admin.command("ping")

    def _close(self) -> None:
        client, self._client, self._coll = self._client, None, None
        if client is not None:
            client.close()
