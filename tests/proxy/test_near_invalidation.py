"""Push invalidation of the near cache against real servers: Redis (RESP2 and RESP3) and Valkey.

What the response layer announces for each change (and what it does not), the subscription
(confirmation, PING answers, a killed connection), and the near cache following it: copies
trusted without rechecking until an announced change drops exactly them, a store read that raced
with a change never kept, the fall back to rechecking while the channel is lost or silent, and
the resubscription that empties the near cache. Then once on a real 3-node Redis Cluster.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.servers.process import ServerProcess
from tests.servers.redis import redis_server, serving, valkey_server
from tests.servers.redis_cluster import RedisClusterServers, cluster_url, redis_cluster
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.near.cache import RECENT_CHANGES, NearCache
from tina4_sidecar.proxy.near.invalidation import HEARTBEAT, NearInvalidation
from tina4_sidecar.store import push
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import changes_of, open_store
from tina4_sidecar.store.invalidation import all_scope
from tina4_sidecar.store.response_key import TAG_EPOCH, route_scope, tag_scope, url_scope
from tina4_sidecar.store.response_purge import purge_all, purge_route, purge_tag, purge_url

pytestmark = pytest.mark.backend

TIMEOUT = 0.5
"""The store timeout of these tests: the liveness bound is HEARTBEAT + TIMEOUT = 1 s."""


@dataclass(frozen=True)
class Target:
    backend: str
    url: str

    def admin(self) -> aioredis.Redis:
        """A plain client of the server, behind the store's back (CLIENT KILL, CLIENT PAUSE)."""
        return aioredis.from_url("redis" + self.url.removeprefix(self.backend))


@pytest.fixture(scope="module")
def redis() -> Iterator[ServerProcess]:
    with serving(redis_server()) as running:
        yield running


@pytest.fixture(scope="module")
def valkey() -> Iterator[ServerProcess]:
    with serving(valkey_server()) as running:
        yield running


@pytest.fixture(params=["redis-resp2", "redis-resp3", "valkey-resp2", "valkey-resp3"])
def target(request: pytest.FixtureRequest) -> Target:
    backend, _, resp = str(request.param).partition("-")
    server: ServerProcess = request.getfixturevalue(backend)
    return Target(backend, f"{backend}://127.0.0.1:{server.port}/0?protocol={resp.removeprefix('resp')}")


def settings_for(target: Target, tmp_path: Path, namespace: str) -> CacheSettings:
    return CacheSettings(
        _env_file=None,  # type: ignore[call-arg]
        cache_backend=target.backend,  # type: ignore[arg-type]
        cache_url=target.url,
        cache_namespace=namespace,
        cache_dir=tmp_path / "cache",
        cache_timeout=TIMEOUT,
    )


@asynccontextmanager
async def opened(settings: CacheSettings, layer: str = "resp") -> AsyncIterator[Store]:
    store = await open_store(settings, layer)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def namespace() -> str:
    return f"tina4:near{uuid.uuid4().hex[:10]}"


def entry(path: str, *tags: str, ttl: int = 60) -> Entry:
    """A fresh entry as the sidecar stores it: it records the tokens of its scopes."""
    scopes = [all_scope(), route_scope(path), url_scope(path, ""), *(tag_scope(tag) for tag in tags)]
    return Entry(
        status=200,
        headers=(("Content-Type", "text/plain"),),
        body=f"body of {path}".encode(),
        stored_at=time.time(),
        ttl=ttl,
        tokens=tuple((name, "t0") for name in scopes),
    )


def key(path: str) -> str:
    return f"GET http://shop.example{path}"


async def eventually(check: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails after ``within`` seconds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within}s: {what}"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@asynccontextmanager
async def following(store: Store, recheck: float | None = 0.0) -> AsyncIterator[NearInvalidation]:
    """A near cache (rechecking per ``recheck`` without push) that follows ``store``'s channel."""
    near = NearCache(100, 1 << 20, recheck)
    follower = NearInvalidation(near, lambda: subscription_of(store), TIMEOUT)
    follower.start()
    try:
        await eventually(lambda: near.pushing, 5, "subscribed")
        yield follower
    finally:
        await follower.stop()


def subscription_of(store: Store) -> push.Subscription:
    subscription = changes_of(store)
    assert subscription is not None
    return subscription


async def received(subscription: push.Subscription, count: int) -> list[push.Change]:
    """The next ``count`` announced changes (PING answers skipped)."""
    changes: list[push.Change] = []
    while len(changes) < count:
        data = await asyncio.wait_for(subscription.receive(), 5)
        if data is not None:
            changes.append(push.decode(data))
    return changes


# -- what is announced ----------------------------------------------------------------------------


async def test_the_response_layer_announces_each_invalidating_change_after_applying_it(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    settings = settings_for(target, tmp_path, namespace)
    async with opened(settings) as resp, opened(settings, "kv") as kv:
        subscription = subscription_of(resp)
        await subscription.open()
        try:
            await kv.set("GET http://x/", b"kv layer: never announced", 60)
            await resp.add("~lock:GET http://x/", b"lock", 5)
            await resp.delete("~lock:GET http://x/")
            await resp.set("~tok:route:/a", b"t1", 0)
            await resp.set(key("/a"), b"entry", 60)
            await resp.delete(key("/a"))
            await resp.delete("~tok:url:/a?")
            await resp.clear()
            assert await received(subscription, 5) == [
                push.Change(scopes=frozenset({"~tok:route:/a"})),
                push.Change(keys=frozenset({key("/a")})),
                push.Change(keys=frozenset({key("/a")})),
                push.Change(scopes=frozenset({"~tok:url:/a?"})),
                push.EVERYTHING,
            ]
        finally:
            await subscription.close()
        assert changes_of(kv) is None  # only the response layer has a channel


async def test_every_purge_announces_the_scopes_it_wrote(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    async with opened(settings_for(target, tmp_path, namespace)) as store:
        subscription = subscription_of(store)
        await subscription.open()
        try:
            assert await purge_url(store, "http://any.host/api/p?b=2&a=1")
            assert await purge_route(store, "/api/p")
            assert await purge_tag(store, "catalog")
            assert await purge_all(store)
            scopes = [set(change.scopes) for change in await received(subscription, 5)]
        finally:
            await subscription.close()
    assert scopes == [
        {url_scope("/api/p", "a=1&b=2")},
        {route_scope("/api/p")},
        {TAG_EPOCH},
        {tag_scope("catalog")},
        {all_scope()},
    ]


async def test_a_subscription_answers_pings_and_ends_when_its_connection_is_killed(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    async with opened(settings_for(target, tmp_path, namespace)) as store:
        subscription = subscription_of(store)
        await subscription.open()
        try:
            await subscription.ping()
            assert await asyncio.wait_for(subscription.receive(), 5) is None
            async with target.admin() as admin:
                assert await admin.client_kill_filter(_type="pubsub") >= 1
            with pytest.raises(push.SubscriptionLost):
                await asyncio.wait_for(subscription.receive(), 5)
        finally:
            await subscription.close()


# -- the near cache following the channel -----------------------------------------------------------


async def test_copies_are_trusted_until_an_announced_change_drops_exactly_them(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    settings = settings_for(target, tmp_path, namespace)
    async with opened(settings) as store, opened(settings) as app, following(store) as follower:
        near = follower.near
        for path, tags in [("/a", ("red",)), ("/b", ("blue",)), ("/c", ()), ("/d", ())]:
            item = near.put(key(path), entry(path, *tags), near.generation)
            assert item is not None
            assert item.pushed
        await asyncio.sleep(0.05)
        # recheck is 0: without push every copy would be asked for again at once
        assert all(near.get(key(p), time.monotonic()) is not None for p in ("/a", "/b", "/c", "/d"))

        assert await purge_route(app, "/a")  # another process: another store object
        await eventually(lambda: near.get(key("/a"), time.monotonic()) is None, 1.0, "/a dropped")
        assert await purge_tag(app, "blue")
        await eventually(lambda: near.get(key("/b"), time.monotonic()) is None, 1.0, "/b dropped")
        await app.delete(key("/c"))  # an unsafe request through another sidecar (announced even
        # when the store had lost the entry: this copy outlived it)
        await eventually(lambda: near.get(key("/c"), time.monotonic()) is None, 1.0, "/c dropped")
        assert near.get(key("/d"), time.monotonic()) is not None  # untouched by all three
        assert await purge_all(app)
        await eventually(lambda: len(near) == 0, 1.0, "everything dropped")
        assert follower.received >= 5


async def test_a_store_read_that_raced_with_an_announced_change_is_answered_but_not_kept(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    settings = settings_for(target, tmp_path, namespace)
    async with opened(settings) as store, opened(settings) as app, following(store) as follower:
        near = follower.near
        before_read = near.generation  # the fast path reads it before its store read ...
        assert await purge_route(app, "/a")  # ... a purge lands and is announced meanwhile ...
        await eventually(lambda: near.generation > before_read, 1.0, "the announcement applied")
        raced = near.put(key("/a"), entry("/a"), before_read)  # ... then the old entry is put
        assert raced is not None  # answered for the request at hand
        assert near.get(key("/a"), time.monotonic()) is None  # but not kept
        # A change that does not concern the entry does not stop it from being kept.
        before_read = near.generation
        assert await purge_route(app, "/other")
        await eventually(lambda: near.generation > before_read, 1.0, "the announcement applied")
        kept = near.put(key("/b"), entry("/b"), before_read)
        assert kept is not None
        assert kept.pushed
        assert near.get(key("/b"), time.monotonic()) is kept


async def test_a_killed_subscription_falls_back_to_rechecking_then_resubscribes_and_empties(
    target: Target, tmp_path: Path, namespace: str
) -> None:
    store_settings = settings_for(target, tmp_path, namespace)
    async with opened(store_settings) as store, following(store, recheck=60.0) as follower:
        near = follower.near
        assert near.put(key("/a"), entry("/a"), near.generation) is not None
        async with target.admin() as admin:
            assert await admin.client_kill_filter(_type="pubsub") >= 1
        await eventually(lambda: not near.pushing, 1.0, "push given up")
        assert near.get(key("/a"), time.monotonic()) is None  # trusted on push only: asked for again
        rechecked = near.put(key("/b"), entry("/b"), near.generation)
        assert rechecked is not None
        assert not rechecked.pushed  # as without push: trusted for TINA4_SIDECAR_NEAR_CACHE_RECHECK
        assert near.get(key("/b"), time.monotonic()) is rechecked
        await eventually(lambda: follower.subscriptions == 2 and near.pushing, 5, "subscribed again")
        assert len(near) == 0  # announcements made while unsubscribed may have been missed
        pushed = near.put(key("/c"), entry("/c"), near.generation)
        assert pushed is not None
        assert pushed.pushed


async def test_a_channel_that_stops_answering_is_not_trusted_past_the_liveness_bound(
    tmp_path: Path, redis: ServerProcess, namespace: str
) -> None:
    target = Target("redis", f"redis://127.0.0.1:{redis.port}/0")
    async with opened(settings_for(target, tmp_path, namespace)) as store, following(store) as follower:
        near = follower.near
        assert near.put(key("/a"), entry("/a"), near.generation) is not None
        async with target.admin() as admin:
            paused_at = time.monotonic()
            await admin.client_pause(2500, all=True)  # the server answers nobody: PINGs go unanswered
            await eventually(lambda: not near.pushing, follower.liveness + 0.5, "trust lapsed")
            assert time.monotonic() - paused_at <= follower.liveness + HEARTBEAT
            assert near.get(key("/a"), time.monotonic()) is None
            await eventually(lambda: near.pushing, 10, "trusted again once the server answers")


async def test_while_the_file_store_stands_in_nothing_is_trusted_on_push_and_its_copies_go_after(
    tmp_path: Path, redis: ServerProcess, namespace: str
) -> None:
    """FallbackStore.degraded, as the follower sees it: the store serves from the file store."""
    target = Target("redis", f"redis://127.0.0.1:{redis.port}/0")
    degraded = False
    async with opened(settings_for(target, tmp_path, namespace)) as store:
        near = NearCache(100, 1 << 20, 60.0)
        follower = NearInvalidation(near, lambda: subscription_of(store), TIMEOUT, lambda: degraded)
        follower.start()
        try:
            await eventually(lambda: near.pushing, 5, "subscribed")
            assert near.put(key("/a"), entry("/a"), near.generation) is not None
            degraded = True
            await eventually(lambda: not near.pushing, HEARTBEAT + 0.5, "push off while the stand-in serves")
            assert near.get(key("/a"), time.monotonic()) is None
            stand_in = near.put(key("/b"), entry("/b"), near.generation)  # read from the file store
            assert stand_in is not None
            assert not stand_in.pushed  # trusted for the recheck only, as without push
            degraded = False
            await eventually(lambda: near.pushing, HEARTBEAT + 0.5, "push on again")
            assert near.get(key("/b"), time.monotonic()) is None  # no copy of the stand-in outlives it
        finally:
            await follower.stop()


# -- pure logic -----------------------------------------------------------------------------------------


def test_a_read_older_than_the_remembered_changes_is_not_kept() -> None:
    near = NearCache(100, 1 << 20, None)
    before_read = near.generation
    for index in range(RECENT_CHANGES + 1):
        near.apply(push.Change(keys=frozenset({key(f"/unrelated/{index}")})))
    assert near.put(key("/a"), entry("/a"), before_read) is not None
    assert near.get(key("/a"), time.monotonic()) is None
    assert near.put(key("/a"), entry("/a"), near.generation) is not None
    assert near.get(key("/a"), time.monotonic()) is not None  # the memory store: kept until expiry


def test_messages_that_cannot_be_read_drop_everything() -> None:
    for data in [b"", b"not json", b'{"v":2,"keys":["k"]}', b'{"v":1}', b'{"v":1,"keys":[1]}', b"[]"]:
        assert push.decode(data) == push.EVERYTHING, data
    for change in [push.Change(keys=frozenset({"k\n\u00e9"})), push.Change(scopes=frozenset({"~tok:all"}))]:
        assert push.decode(push.encode(change)) == change


# -- Redis Cluster --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster() as running:
        yield running


async def test_on_a_cluster_the_channel_lives_on_one_node_and_purges_reach_every_follower(
    cluster: RedisClusterServers, tmp_path: Path, namespace: str
) -> None:
    settings = settings_for(Target("redis", cluster_url(cluster)), tmp_path, namespace)
    async with (
        opened(settings) as first,
        opened(settings) as second,
        opened(settings) as app,
        following(first) as one,
        following(second) as two,
    ):
        for follower in (one, two):
            assert follower.near.put(key("/a"), entry("/a"), follower.near.generation) is not None
            assert follower.near.put(key("/b"), entry("/b"), follower.near.generation) is not None
        assert await purge_route(app, "/a")
        for follower in (one, two):
            near = follower.near
            await eventually(lambda near=near: near.get(key("/a"), time.monotonic()) is None, 1.0, "dropped")
            assert near.get(key("/b"), time.monotonic()) is not None
        assert await app.set(key("/b"), b"a newer version", 60)  # another sidecar stored it
        for follower in (one, two):
            near = follower.near
            await eventually(lambda near=near: near.get(key("/b"), time.monotonic()) is None, 1.0, "dropped")
