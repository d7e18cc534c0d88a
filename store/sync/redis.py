"""Sync twin of the Redis and Valkey stores: redis-py's blocking client (thread-safe, one pool per
store), the async ``RedisStore``'s keys, URL and credentials, and the same announcements on the
response layer's invalidation channel (``store/push.py``), pipelined after the write.

Reads (``GET``, ``MGET``: every ``cache_get`` and query-cache lookup) go straight to a connection
the calling thread keeps (``per_thread.py``), made from the pool's own connection class and
arguments: redis-py's pooled command path (checkout, a poll for stray bytes, retry and
observability wrappers, return) cost about as much CPU again as the command itself. A read that
finds its kept connection dropped (a restarted server) retries once on a new one, as the pool's
``Retry`` would; any other failure closes it and reaches the contract's guard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from redis import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from tina4_sidecar.store import push
from tina4_sidecar.store.backends.redis import HEALTH_CHECK_INTERVAL, MAX_CONNECTIONS, SCAN_BATCH, RedisStore
from tina4_sidecar.store.contract import StoreUnavailable
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.per_thread import PerThread


class SyncRedisStore(SyncStore):
    def __init__(self, spec: RedisStore) -> None:
        super().__init__(spec)
        self.redis_spec = spec
        self.channel = spec.channel
        self._client: Redis | None = None
        self._conns: PerThread[Any] | None = None  # redis-py Connections (untyped)

    def _redis(self) -> Redis:
        if self._client is None:
            spec = self.redis_spec
            fill_in = not spec._credentials_in_url
            pool = BlockingConnectionPool.from_url(
                spec.url,
                max_connections=MAX_CONNECTIONS,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                health_check_interval=HEALTH_CHECK_INTERVAL,
                retry=Retry(NoBackoff(), 1),
                username=spec.username if fill_in else None,
                password=spec._password if fill_in else None,
            )
            self._client = Redis.from_pool(pool)
            self._conns = PerThread(
                lambda: pool.connection_class(**pool.connection_kwargs),
                lambda conn: conn.disconnect(),
                MAX_CONNECTIONS,
            )
        return self._client

    def read(self, *command: str) -> Any:
        """The reply of a read-only ``command`` (``GET``/``MGET``), on the calling thread's kept
        connection (the pool when it has none to spare); raises the driver's error."""
        pooled: Any = self._redis()  # made first: it makes the kept connections' factory too
        conns = self._conns
        conn = conns.get() if conns is not None else None
        if conns is None or conn is None:
            return pooled.execute_command(*command)
        for attempt in (0, 1):
            try:
                conn.send_command(*command)
                return conn.read_response()
            except ResponseError:
                raise  # an error reply: the connection is fine
            except RedisConnectionError:
                conns.discard()
                if attempt:
                    raise
                conn = conns.get()
                if conn is None:
                    return pooled.execute_command(*command)
            except BaseException:
                conns.discard()  # a reply may be left unread on it
                raise
        raise AssertionError("unreachable")

    def _get(self, key: str) -> bytes | None:
        return cast("bytes | None", self.read("GET", self.prefix + key))

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", self.read("MGET", *[self.prefix + key for key in keys]))

    def _write(self, key: str, command: Callable[[Any], Any]) -> Any:
        change = push.announcement(key) if self.channel is not None else None
        if self.channel is None or change is None:
            return command(self._redis())
        with self._redis().pipeline(transaction=False) as pipe:
            command(pipe)
            pipe.publish(self.channel, push.encode(change))
            written, _ = pipe.execute()
        return written

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        self._write(key, lambda client: client.set(self.prefix + key, value, ex=ttl or None))

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(
            self._write(key, lambda client: client.set(self.prefix + key, value, ex=ttl or None, nx=True))
        )

    def _delete(self, key: str) -> bool:
        return bool(self._write(key, lambda client: client.delete(self.prefix + key)))

    def _clear(self) -> None:
        client = self._redis()
        batch: list[bytes] = []
        for raw_key in client.scan_iter(match=self.redis_spec._match_pattern(), count=SCAN_BATCH):
            batch.append(raw_key)
            if len(batch) >= SCAN_BATCH:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        if self.channel is not None:
            client.publish(self.channel, push.encode(push.EVERYTHING))

    def _size(self) -> int:
        return sum(
            1 for _ in self._redis().scan_iter(match=self.redis_spec._match_pattern(), count=SCAN_BATCH)
        )

    def _ping(self) -> None:
        try:
            self._redis().ping()
        except Exception as exc:
            raise StoreUnavailable(f"{self.backend_name} at {self.redis_spec.location}: {exc}") from exc

    def _close(self) -> None:
        client, self._client = self._client, None
        conns, self._conns = self._conns, None
        if conns is not None:
            conns.close()
        if client is not None:
            client.close()
