"""The Redis and Valkey stores, over redis-py's asyncio client with one connection pool per store.

Keys are ``<namespace>:<layer>:<key>`` holding the raw value bytes, with ``SET .. EX ttl``
(no EX for ttl 0); ``add()`` is ``SET .. NX``, atomic for every client of the server.
``clear()`` and ``size()`` walk only our prefix with ``SCAN MATCH`` (the prefix's glob
characters escaped) and never use FLUSHDB or FLUSHALL, so a shared database, another
application's namespace and Tina4's own ``tina4:cache:*`` keys are safe. SCAN visits every
key of the database, so both cost O(keys in the database), bounded by the call timeout:
fine for a stats endpoint, not for a request path.

URLs: ``redis://``, ``rediss://`` (TLS), ``valkey://``, ``valkeys://`` (TLS) and ``unix://``;
a cluster URL (``redis+cluster://host:port,...`` and its variants) makes ``from_settings`` build
the cluster store of ``store/backends/redis_cluster.py`` instead;
``[user:pass@]`` and the database number (``/2``) come from the URL, and
``TINA4_CACHE_USERNAME`` / ``TINA4_CACHE_PASSWORD`` apply only when the URL has no credentials;
``?protocol=3`` in the URL speaks RESP3.

Push invalidation (``store/push.py``): the response layer announces its token writes, entry
writes and deletes, and clears on ``<namespace>:near-invalidate``, with a PUBLISH sent in one
pipeline after the write (one round trip; the server applies the write before it publishes), and
``changes()`` subscribes to that channel (``store/backends/redis_push.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import SplitResult, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tina4_sidecar.store import push
from tina4_sidecar.store.backends.redis_push import RedisSubscription
from tina4_sidecar.store.contract import Store, StoreUnavailable

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings
    from tina4_sidecar.store.push import Subscription

SCAN_BATCH = 1000
"""Keys asked for per SCAN call, and the most keys one UNLINK removes."""

HEALTH_CHECK_INTERVAL = 15
"""Seconds a pooled connection may sit idle before redis-py pings it ahead of the next command."""

MAX_CONNECTIONS = 64
"""Connections of one store's pool; a call that finds them all busy waits (within its timeout)."""

_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss", "unix": "unix"}
_GLOB_SPECIAL = frozenset("*?[]\\")


def escape_glob(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisStore(Store):
    """One namespace and layer of a Redis database."""

    backend_name: ClassVar[str] = "redis"
    default_url: ClassVar[str] = "redis://localhost:6379"

    def __init__(
        self,
        namespace: str,
        layer: str,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        """``username``/``password`` are used only when ``url`` carries no credentials."""
        super().__init__(namespace, layer, timeout)
        self.url = _driver_url(url or self.default_url, self.backend_name)
        parts = urlsplit(self.url)
        self._credentials_in_url = bool(parts.username or parts.password)
        if self._credentials_in_url:
            username = unquote(parts.username) if parts.username else None
        self.username = username
        self._password = password
        self.location = _location(parts)
        self._client: Redis | None = None
        self._health_client: Redis | None = None
        self.channel = push.channel_of(namespace, layer)
        """Where this store announces its changes: the response and the token layers only."""

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> Store:
        chosen = url or settings.cache_url
        if chosen and "+cluster://" in chosen.lower():
            from tina4_sidecar.store.backends import redis_cluster

            cluster: type[redis_cluster.RedisClusterStore] = (
                redis_cluster.ValkeyClusterStore
                if cls.backend_name == "valkey"
                else redis_cluster.RedisClusterStore
            )
            return cluster.from_settings(settings, layer, chosen)
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
        return cast("bytes | None", await self._redis().get(self.full_key(key)))

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", await self._redis().mget([self.full_key(key) for key in keys]))

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        await self._write(key, lambda client: client.set(self.full_key(key), value, ex=ttl or None))

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(
            await self._write(
                key, lambda client: client.set(self.full_key(key), value, ex=ttl or None, nx=True)
            )
        )

    async def _delete(self, key: str) -> bool:
        return bool(await self._write(key, lambda client: client.delete(self.full_key(key))))

    async def _delete_many(self, keys: list[str]) -> None:
        """One UNLINK for many keys (``store.fallback.DeletesMany``: the replay after an outage).

        It announces everything rather than each key: it only runs after an outage, when the near
        caches are emptied anyway, and one short message beats a thousand-key one."""
        if not keys:
            return
        async with self._redis().pipeline(transaction=False) as pipe:
            pipe.unlink(*(self.full_key(key) for key in keys))
            if self.channel is not None:
                pipe.publish(self.channel, push.encode(push.EVERYTHING))
            await pipe.execute()

    async def _clear(self) -> None:
        client = self._redis()
        batch: list[bytes] = []
        async for raw_key in client.scan_iter(match=self._match_pattern(), count=SCAN_BATCH):
            batch.append(raw_key)
            if len(batch) >= SCAN_BATCH:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
        if self.channel is not None:
            await client.publish(self.channel, push.encode(push.EVERYTHING))

    async def _size(self) -> int:
        count = 0
        async for _ in self._redis().scan_iter(match=self._match_pattern(), count=SCAN_BATCH):
            count += 1
        return count

    async def _ping(self) -> None:
        await self._health().ping()

    async def _open(self) -> None:
        try:
            await self._health().ping()
        except AuthenticationError as exc:
            who = f"user {self.username!r}" if self.username else "the default user"
            raise StoreUnavailable(
                f"{self.backend_name} at {self.location} refused the credentials of {who}: {exc}"
            ) from exc
        except ResponseError as exc:  # e.g. an ACL user without the permission to PING, or a bad db
            raise StoreUnavailable(f"{self.backend_name} at {self.location} refused us: {exc}") from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"{self.backend_name} at {self.location} is unreachable: {exc}") from exc

    async def _close(self) -> None:
        clients = (self._client, self._health_client)
        self._client = self._health_client = None
        for client in clients:
            if client is not None:
                await client.aclose()

    def changes(self) -> Subscription | None:
        if self.channel is None:
            return None
        return RedisSubscription(self._subscriber, self.channel)

    # -- helpers ----------------------------------------------------------------------------

    async def _write(self, key: str, command: Callable[[Any], Any]) -> Any:
        """``command`` (one write) on the client; when the write announces a change, in one pipeline
        with its PUBLISH (one round trip, and the server applies the write before it publishes)."""
        channel = self.channel
        change = push.announcement(key) if channel is not None else None
        if channel is None or change is None:
            return await command(self._redis())
        async with self._redis().pipeline(transaction=False) as pipe:
            command(pipe)
            pipe.publish(channel, push.encode(change))
            written, _ = await pipe.execute()
        return written

    async def _subscriber(self) -> Redis:
        """A client of its own for one subscription: no retries, so a lost connection is seen."""
        fill_in = not self._credentials_in_url
        return Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            username=self.username if fill_in else None,
            password=self._password if fill_in else None,
        )

    def _redis(self) -> Redis:
        """The client of the calls, created on first use so that its pool belongs to the running loop."""
        if self._client is None:
            self._client = self._connect(MAX_CONNECTIONS)
        return self._client

    def _health(self) -> Redis:
        # PING gets its own connection: a pool that a burst of calls keeps busy must not make a
        # live server look dead (and switch the fallback to the file store).
        if self._health_client is None:
            self._health_client = self._connect(1)
        return self._health_client

    def _connect(self, max_connections: int) -> Redis:
        fill_in = not self._credentials_in_url
        pool = BlockingConnectionPool.from_url(
            self.url,  # decode_responses stays off: values are bytes
            max_connections=max_connections,
            timeout=self.timeout,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            # One immediate retry replaces a pooled connection that the server closed (a
            # restart); redis-py's default backs off for seconds, far beyond our call timeout.
            retry=Retry(NoBackoff(), 1),
            username=self.username if fill_in else None,
            password=self._password if fill_in else None,
        )
        return Redis.from_pool(pool)

    def _match_pattern(self) -> str:
        return escape_glob(self.prefix) + "*"


class ValkeyStore(RedisStore):
    """One namespace and layer of a Valkey database (the Redis protocol, its own default URL)."""

    backend_name: ClassVar[str] = "valkey"
    default_url: ClassVar[str] = "valkey://localhost:6379"


def _driver_url(url: str, backend: str) -> str:
    """``url`` with the scheme redis-py knows; ValueError for a URL this store cannot use."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(
            f"the {backend} store needs a redis://, rediss://, valkey://, valkeys:// or unix:// URL, "
            f"not {parts.scheme or 'one without a scheme'}:// (a cluster URL, redis+cluster://, "
            "is for RedisClusterStore)"
        )
    if scheme != "unix":
        db = unquote(parts.path).strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the {backend} URL's path must be a database number, not {db!r}")
    return scheme + url[len(parts.scheme) :]  # not urlunsplit: it drops the "//" of unix:///path


def _location(parts: SplitResult) -> str:
    """Where the server is, for messages: never the credentials."""
    if parts.scheme == "unix":
        return parts.path
    db = unquote(parts.path).strip("/") or "0"
    return f"{parts.hostname}:{parts.port or 6379}/{db}"
