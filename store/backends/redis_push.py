"""The Redis and Valkey side of push invalidation (``store/push.py``): one subscription per connection.

A subscription uses redis-py's ``PubSub`` on a connection of its own, with RESP2 or RESP3 (as
``?protocol=3`` in the URL chooses; both deliver messages and pongs alike), and never reconnects
by itself: redis-py would silently resubscribe after a lost connection, hiding that messages may
have been missed, so the first error ends this subscription and its owner opens a new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tina4_sidecar.store.push import SubscriptionLost


class RedisSubscription:
    """A subscription to one channel on a connection made by ``connect`` (see ``store.push.Subscription``)."""

    def __init__(self, connect: Callable[[], Awaitable[Redis]], channel: str) -> None:
        self._connect = connect
        self.channel = channel
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None

    async def open(self) -> None:
        self._client = await self._connect()
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(self.channel)
        while (await self._next())["type"] != "subscribe":
            pass

    async def receive(self) -> bytes | None:
        while True:
            message = await self._next()
            kind = message["type"]
            if kind == "message":
                return bytes(message["data"])
            if kind == "pong":
                return None
            if kind in ("unsubscribe", "punsubscribe", "sunsubscribe"):
                raise SubscriptionLost(f"the server unsubscribed us from {self.channel}")

    async def ping(self) -> None:
        try:
            await self._live().ping()
        except RedisError as exc:
            raise SubscriptionLost(f"{self.channel}: {exc}") from exc

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()

    async def _next(self) -> dict[str, Any]:
        try:
            message = await self._live().get_message(timeout=None)  # blocks until something arrives
        except RedisError as exc:
            raise SubscriptionLost(f"{self.channel}: {exc}") from exc
        if message is None:  # a reply redis-py consumed itself: read on
            return {"type": ""}
        return dict(message)

    def _live(self) -> PubSub:
        if self._pubsub is None:
            raise SubscriptionLost(f"the subscription to {self.channel} is closed")
        return self._pubsub
