"""The Redis and Valkey stores on a Redis Cluster, over redis-py's asyncio ``RedisCluster`` client.

Selected by a cluster URL in ``TINA4_CACHE_URL`` (``RedisStore.from_settings`` dispatches here):
``redis+cluster://[user:pass@]host:port[,host:port...]``, ``valkey+cluster://`` and, for TLS,
``rediss+cluster://`` / ``valkeys+cluster://``. The hosts are startup nodes: the client asks any
of them for the slot map and then talks to every primary directly. A cluster has only database 0.

Keys are the single-node store's ``<namespace>:<layer>:<key>``, with no hash tag, so they spread
over every slot and node. Commands on more than one key cannot cross slots, so:

* ``get_many`` groups the keys by slot and sends one ``MGET`` per slot through the cluster
  pipeline, which batches the commands of one node into one round trip (``mget_nonatomic``).
* ``clear`` walks every primary with ``SCAN MATCH <prefix>*`` (each primary holds its own keys)
  and removes each batch with ``UNLINK`` per slot, pipelined per node; ``size`` sums the SCAN
  counts of the primaries. Neither ever uses FLUSHDB or FLUSHALL.
* ``add`` is ``SET .. NX`` on the key's primary, atomic for every client of the cluster.

Timeouts and credentials are the single-node store's: ``[user:pass@]`` from the URL, else
``TINA4_CACHE_USERNAME`` / ``TINA4_CACHE_PASSWORD``.

Push invalidation (``store/push.py``): plain PUBLISH reaches every node over the cluster bus, but
the response layer publishes on the primary that owns the channel name's slot, and subscribes
there too, so that an announcement does not depend on the bus (nor on its delay) while that node
answers: a PUBLISH goes right after the write has been acknowledged (the write lives on another
node, so they cannot share a pipeline). When the channel's node cannot be reached, the PUBLISH goes
to another node and crosses the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tina4_sidecar.store import push
from tina4_sidecar.store.backends.redis import HEALTH_CHECK_INTERVAL, MAX_CONNECTIONS, SCAN_BATCH, escape_glob
from tina4_sidecar.store.backends.redis_push import RedisSubscription
from tina4_sidecar.store.contract import Store, StoreUnavailable

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings
    from tina4_sidecar.store.push import Subscription

CLUSTER_SCHEMES: dict[str, bool] = {
    "redis+cluster": False,
    "rediss+cluster": True,
    "valkey+cluster": False,
    "valkeys+cluster": True,
}
"""Cluster URL scheme -> whether it uses TLS."""

DEFAULT_PORT = 6379


def is_cluster_url(url: str | None) -> bool:
    """True when ``url`` names a Redis Cluster (``redis+cluster://`` and its variants)."""
    if not url:
        return False
    scheme, sep, _ = url.strip().partition("://")
    return bool(sep) and scheme.lower() in CLUSTER_SCHEMES


@dataclass(frozen=True)
class ClusterURL:
    """A parsed cluster URL: its startup nodes, TLS, and the credentials it carries."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None
    password: str | None

    @property
    def location(self) -> str:
        """Where the cluster is, for messages: never the credentials."""
        return ",".join(f"{host}:{port}" for host, port in self.nodes)


def parse_cluster_url(url: str, backend: str) -> ClusterURL:
    """``url`` split into startup nodes and credentials; ValueError for a URL this store cannot use."""
    scheme, sep, rest = url.strip().partition("://")
    tls = CLUSTER_SCHEMES.get(scheme.lower())
    if not sep or tls is None:
        raise ValueError(
            f"the {backend} cluster store needs a redis+cluster://, rediss+cluster://, valkey+cluster:// "
            f"or valkeys+cluster:// URL, not {scheme or 'one without a scheme'}://"
        )
    netloc, _, tail = rest.partition("/")
    path = unquote(tail.split("?", 1)[0].split("#", 1)[0]).strip("/")
    if path not in ("", "0"):
        raise ValueError(f"a {backend} cluster has only database 0, not {path!r}")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not port_text.isdigit() and port_text:
            raise ValueError(f"the {backend} cluster URL has a bad port in {item!r}")
        nodes.append((host, int(port_text) if port_text else DEFAULT_PORT))
    if not nodes:
        raise ValueError(f"the {backend} cluster URL names no host:port")
    return ClusterURL(tuple(nodes), tls, username, password)


class RedisClusterStore(Store):
    """One namespace and layer of a Redis Cluster."""

    backend_name: ClassVar[str] = "redis"

    def __init__(
        self,
        namespace: str,
        layer: str,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        """``username``/``password`` are used only when ``url`` carries no credentials."""
        super().__init__(namespace, layer, timeout)
        parsed = parse_cluster_url(url, self.backend_name)
        self.nodes = parsed.nodes
        self.tls = parsed.tls
        if parsed.username is not None or parsed.password is not None:
            username, password = parsed.username, parsed.password
        self.username = username
        self._password = password
        self.location = parsed.location
        self._client: RedisCluster | None = None
        self._health_client: RedisCluster | None = None
        # The cluster client's per-node pools raise MaxConnectionsError when full instead of
        # waiting; calls past MAX_CONNECTIONS wait here (within their timeout), as on one node.
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.channel = push.channel_of(namespace, layer)
        """Where this store announces its changes: the response and the token layers only."""

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> RedisClusterStore:
        password = settings.cache_password.get_secret_value() if settings.cache_password else None
        chosen = url or settings.cache_url
        if not chosen:
            raise ValueError(f"the {cls.backend_name} cluster store needs a URL")
        return cls(
            settings.cache_namespace,
            layer,
            chosen,
            username=settings.cache_username,
            password=password,
            timeout=settings.cache_timeout,
        )

    # -- the contract ---------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        async with self._slots:
            return cast("bytes | None", await self._redis().get(self.full_key(key)))

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        async with self._slots:
            # One MGET per slot, pipelined: one round trip per node, not per key.
            values = await self._redis().mget_nonatomic([self.full_key(key) for key in keys])
            return cast("list[bytes | None]", values)

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        async with self._slots:
            await self._redis().set(self.full_key(key), value, ex=ttl or None)
            await self._announce(key)

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        async with self._slots:
            added = bool(await self._redis().set(self.full_key(key), value, ex=ttl or None, nx=True))
            if added:
                await self._announce(key)
            return added

    async def _delete(self, key: str) -> bool:
        async with self._slots:
            deleted = bool(await self._redis().delete(self.full_key(key)))
            await self._announce(key)
            return deleted

    async def _clear(self) -> None:
        async with self._slots:
            client = self._redis()
            for node in await self._primaries():
                batch: list[bytes] = []
                async for raw_key in self._scan_node(node):
                    batch.append(raw_key)
                    if len(batch) >= SCAN_BATCH:
                        await client.unlink(*batch)  # split per slot, pipelined to this node
                        batch.clear()
                if batch:
                    await client.unlink(*batch)
            if self.channel is not None:
                await self._publish(push.EVERYTHING)

    async def _size(self) -> int:
        async with self._slots:
            count = 0
            for node in await self._primaries():
                async for _ in self._scan_node(node):
                    count += 1
            return count

    async def _ping(self) -> None:
        await self._health().ping(target_nodes=RedisCluster.PRIMARIES)

    async def _open(self) -> None:
        try:
            await self._health().initialize()
            await self._health().ping(target_nodes=RedisCluster.PRIMARIES)
            # Load the slot map now: a burst of first calls must not each discover it at once.
            await self._redis().initialize()
        except AuthenticationError as exc:
            who = f"user {self.username!r}" if self.username else "the default user"
            raise StoreUnavailable(
                f"{self.backend_name} cluster at {self.location} refused the credentials of {who}: {exc}"
            ) from exc
        except ResponseError as exc:
            raise StoreUnavailable(
                f"{self.backend_name} cluster at {self.location} refused us: {exc}"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(
                f"{self.backend_name} cluster at {self.location} is unreachable: {exc}"
            ) from exc

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

    async def _announce(self, key: str) -> None:
        change = push.announcement(key) if self.channel is not None else None
        if change is not None:
            await self._publish(change)

    async def _publish(self, change: push.Change) -> None:
        assert self.channel is not None
        client, data = self._redis(), push.encode(change)
        try:
            await client.publish(self.channel, data, target_nodes=client.get_node_from_key(self.channel))
        except (RedisError, OSError):
            await client.publish(self.channel, data)  # any node: the cluster bus carries it to the others

    async def _subscriber(self) -> Redis:
        """A client of the primary that owns the channel's slot, for one subscription (no retries, so
        that a lost connection is seen); the slot map is read again first (a failover moves it)."""
        assert self.channel is not None
        client = self._redis()
        try:
            if client._initialize:
                await client.initialize()
            else:
                await client.nodes_manager.initialize()
        except (RedisError, OSError):
            pass  # the map known so far; connecting fails if it is wrong, and is tried again
        node = client.get_node_from_key(self.channel)
        assert node is not None
        return Redis(
            host=node.host,
            port=int(node.port),
            username=self.username,
            password=self._password,
            ssl=self.tls,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )

    async def _primaries(self) -> list[ClusterNode]:
        client = self._redis()
        if client._initialize:  # the slot map is loaded on the first command
            await client.initialize()
        return client.get_primaries()

    async def _scan_node(self, node: ClusterNode) -> AsyncIterator[bytes]:
        """Our prefix's keys on one primary."""
        client = self._redis()
        pattern = escape_glob(self.prefix) + "*"
        cursor = 0
        while True:
            # With target_nodes the cluster client answers ({node name: cursor}, keys).
            reply = await client.scan(cursor, match=pattern, count=SCAN_BATCH, target_nodes=node)
            cursors, keys = cast("tuple[dict[str, int], list[bytes]]", reply)
            for raw_key in keys:
                yield raw_key
            cursor = int(cursors[node.name])
            if cursor == 0:
                return

    def _redis(self) -> RedisCluster:
        """The client of the calls, created on first use so that its pools belong to the running loop."""
        if self._client is None:
            self._client = self._connect(MAX_CONNECTIONS)
        return self._client

    def _health(self) -> RedisCluster:
        # PING gets its own client, as on a single node: busy pools must not make a live cluster look dead.
        if self._health_client is None:
            self._health_client = self._connect(1)
        return self._health_client

    def _connect(self, max_connections: int) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            max_connections=max_connections,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(NoBackoff(), 1),
            username=self.username,
            password=self._password,
            ssl=self.tls,
        )


class ValkeyClusterStore(RedisClusterStore):
    """One namespace and layer of a Valkey cluster (the Redis Cluster protocol)."""

    backend_name: ClassVar[str] = "valkey"
