"""The MongoDB store, over pymongo's asyncio client (``AsyncMongoClient``).

URL: ``mongodb://`` or ``mongodb+srv://`` (default ``mongodb://localhost:27017``); the database
is the URL's path (default ``tina4``), the collection is ``tina4_cache``, and
``TINA4_CACHE_USERNAME`` / ``TINA4_CACHE_PASSWORD`` apply only when the URL has no credentials.
A replica set or a sharded cluster is just another URL: the driver does the rest.

One document per entry::

    {_id: "<namespace>:<layer>:<key>", ns: "<namespace>:<layer>", value: Binary,
     expires_at: datetime (UTC) | None}

Indexes, created by ``open()`` unless an equivalent one exists (so that it is idempotent, and
tolerant of an index that another application made under another name):

* a TTL index on ``expires_at`` with ``expireAfterSeconds=0``: mongod deletes expired entries,
  but its TTL monitor runs only once a minute, so every read also drops expired documents
  itself (an expired entry is never returned); ``ttl=0`` stores ``expires_at: None``, which the
  TTL monitor never touches;
* ``(ns, expires_at)``: ``clear()`` is ``delete_many({ns})`` (our namespace and layer only, in
  O(entries purged)) and ``size()`` counts the live documents of ``ns``.

Writes: ``set`` is an ordered bulk of ``delete_one({_id})`` and ``insert_one(document)`` in one
round trip. A reader that falls between the two sees a miss, and of two concurrent writers one
may find the key re-inserted by the other: its write then counts as the earlier of the two. The
natural single calls, ``update_one(.., {$set}, upsert=True)`` and ``replace_one(.., upsert=True)``,
are atomic on MongoDB but not usable on nx-27017, the wire-compatible server our tests run
where no mongod is installed: on an existing document it stores a ``$set`` date as a string
(which the TTL index then ignores) and its replace fails to encode binary values.

``add`` (set if absent, the cross-process lock) is ``insert_one``: the unique ``_id`` index lets
exactly one of several concurrent inserts through, on mongod and on nx-27017 alike. A duplicate
key whose document has expired (by our clock; the TTL monitor may not have run yet) is deleted
with a filter on ``_id`` AND ``expires_at <= now`` -- never a live document that another process
has just written -- and the insert is tried once more; of several processes doing this at once,
still only one insert succeeds. A duplicate key whose delete finds nothing expired is taken.

Other documents in the collection (Tina4's own ``tina4:cache:*`` entries have no ``ns``) and
other collections are never touched. Values are limited by BSON's 16 MiB document size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import pymongo
from bson.binary import Binary
from pymongo import AsyncMongoClient, DeleteOne, InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from tina4_sidecar.store.contract import CLEAR_TIMEOUT, Store, StoreUnavailable

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

log = logging.getLogger(__name__)

COLLECTION = "tina4_cache"
DEFAULT_DATABASE = "tina4"
OPEN_TIMEOUT = 5.0
"""Seconds ``open()`` may spend on the indexes (``Store.open`` allows this much), e.g. on a first
index build; ``clear()`` gets the contract's CLEAR_TIMEOUT, every other call the store's timeout."""

_AUTH_FAILED = 18
_DUPLICATE_KEY = 11000
_Doc = dict[str, Any]


class MongoStore(Store):
    """One namespace and layer in the ``tina4_cache`` collection of a MongoDB database."""

    backend_name: ClassVar[str] = "mongodb"
    default_url: ClassVar[str] = "mongodb://localhost:27017"

    def __init__(
        self,
        namespace: str,
        layer: str,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``username``/``password`` are used only when ``url`` carries no credentials.

        ``clock`` (epoch seconds) decides what has expired; tests run one ahead of the server's.
        """
        super().__init__(namespace, layer, timeout)
        self.url = url or self.default_url
        parts = urlsplit(self.url.strip())
        if parts.scheme.lower() not in ("mongodb", "mongodb+srv"):
            raise ValueError(
                "the mongodb store needs a mongodb:// or mongodb+srv:// URL, "
                f"not {parts.scheme or 'one without a scheme'}://"
            )
        self.location = parts.netloc.rpartition("@")[2] + (parts.path or "/")  # never the password
        self._credentials: dict[str, Any] = {}
        if not (parts.username or parts.password) and username:
            self._credentials = {"username": username, "password": password or ""}
        self.ns = f"{namespace}:{layer}"
        self._clock = clock
        self._client: AsyncMongoClient[_Doc] | None = None
        self._cache: AsyncCollection[_Doc] | None = None

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> MongoStore:
        password = settings.cache_password.get_secret_value() if settings.cache_password else None
        return cls(
            settings.cache_namespace,
            layer,
            url or settings.cache_url,
            username=settings.cache_username,
            password=password,
            timeout=settings.cache_timeout,
        )

    # -- the contract ---------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        return (await self._get_many([key]))[0]

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        ids = [self.full_key(key) for key in keys]
        now = self._now()
        found: dict[str, bytes] = {}
        # expiry is checked here rather than in the query: one obviously right place, and the
        # documents that the TTL monitor has yet to delete are few and short-lived
        cursor = self._collection().find({"_id": {"$in": list(set(ids))}}, {"value": 1, "expires_at": 1})
        async for doc in cursor:
            if _live(doc, now):
                found[doc["_id"]] = bytes(doc["value"])
        return [found.get(id_) for id_ in ids]

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        full_key = self.full_key(key)
        document = self._document(full_key, value, ttl, self._clock())
        # Delete and insert in one ordered bulk (one round trip), rather than an upsert: see
        # "Writes" in the module docstring.
        try:
            await self._collection().bulk_write(
                [DeleteOne({"_id": full_key}), InsertOne(document)], ordered=True
            )
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            # a concurrent set inserted between our delete and our insert: ours counts as the
            # earlier of two concurrent writes, and theirs is the value that stays

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        full_key = self.full_key(key)
        clock = self._clock()
        document = self._document(full_key, value, ttl, clock)
        collection = self._collection()
        try:
            await collection.insert_one(document)
            return True
        except DuplicateKeyError:
            pass
        # Taken, unless the holder has expired: remove it only if it still has, so that a live
        # value written meanwhile by another process survives, then try once more.
        expired = {"_id": full_key, "expires_at": {"$lte": datetime.fromtimestamp(clock, UTC)}}
        if (await collection.delete_one(expired)).deleted_count == 0:
            return False
        try:
            await collection.insert_one(document)
            return True
        except DuplicateKeyError:
            return False  # another process got in between our delete and our insert

    async def _delete(self, key: str) -> bool:
        now = self._now()
        doc = await self._collection().find_one_and_delete(
            {"_id": self.full_key(key)}, projection={"expires_at": 1}
        )
        return doc is not None and _live(doc, now)  # an expired leftover did not exist

    async def _clear(self) -> None:
        # Many documents may go: the contract gives clear() longer than one call's timeout. A
        # pymongo.timeout() block also stretches server selection, so a ping bounded by the
        # store's timeout comes first: a dead server must fail fast, not after CLEAR_TIMEOUT.
        await self._ping()
        with pymongo.timeout(max(self.timeout, CLEAR_TIMEOUT)):
            await self._collection().delete_many({"ns": self.ns})

    async def _size(self) -> int:
        # $nor of "expired" keeps both live dates and None (a date comparison never matches null)
        live = {"ns": self.ns, "$nor": [{"expires_at": {"$lte": self._now()}}]}
        return await self._collection().count_documents(live)

    async def _ping(self) -> None:
        await self._mongo().admin.command("ping")

    async def _open(self) -> None:
        try:
            await self._mongo().admin.command("ping")  # a dead server fails within the timeout
            with pymongo.timeout(max(self.timeout, OPEN_TIMEOUT)):
                await self._ensure_indexes()
        except OperationFailure as exc:
            if exc.code == _AUTH_FAILED:
                who = self._credentials.get("username") or "the URL's user"
                raise StoreUnavailable(
                    f"mongodb at {self.location} refused the credentials of {who}: {exc}"
                ) from exc
            raise StoreUnavailable(f"mongodb at {self.location} refused us: {exc}") from exc

    async def _close(self) -> None:
        client, self._client, self._cache = self._client, None, None
        if client is not None:
            await client.close()

    # -- helpers ------------------------------------------------------------------------------

    async def _ensure_indexes(self) -> None:
        collection = self._collection()
        specs = await collection.index_information()
        fields = {name: [field for field, _ in spec["key"]] for name, spec in specs.items()}
        ttl = [specs[name] for name, keys in fields.items() if keys == ["expires_at"]]
        if not ttl:
            await collection.create_index(
                [("expires_at", pymongo.ASCENDING)], name="tina4_expires_at_ttl", expireAfterSeconds=0
            )
        elif ttl[0].get("expireAfterSeconds") != 0:
            log.warning(
                "the index on %s.expires_at is not a TTL index with expireAfterSeconds=0: expired "
                "entries stay in the collection longer (they are never served)",
                COLLECTION,
            )
        if not any(keys[:1] == ["ns"] for keys in fields.values()):
            await collection.create_index(
                [("ns", pymongo.ASCENDING), ("expires_at", pymongo.ASCENDING)], name="tina4_ns_expires_at"
            )

    def _document(self, full_key: str, value: bytes, ttl: int, clock: float) -> _Doc:
        expires = self.expires_at(ttl, clock)
        return {
            "_id": full_key,
            "ns": self.ns,
            "value": Binary(value),
            "expires_at": None if expires is None else datetime.fromtimestamp(expires, UTC),
        }

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _collection(self) -> AsyncCollection[_Doc]:
        if self._cache is None:
            self._cache = self._mongo().get_default_database(DEFAULT_DATABASE)[COLLECTION]
        return self._cache

    def _mongo(self) -> AsyncMongoClient[_Doc]:
        """The client, created on first use (inside the event loop, which its pool belongs to)."""
        if self._client is None:
            ms = int(self.timeout * 1000)
            self._client = AsyncMongoClient(
                self.url,
                serverSelectionTimeoutMS=ms,
                connectTimeoutMS=ms,
                socketTimeoutMS=ms,
                tz_aware=True,
                appname="tina4-sidecar",
                **self._credentials,
            )
        return self._client


def _live(doc: _Doc, now: datetime) -> bool:
    """Not expired; an expiry that is not a date (a document we did not write) is not served."""
    expires = doc.get("expires_at")
    return expires is None or (isinstance(expires, datetime) and expires > now)
