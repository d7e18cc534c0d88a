"""Push invalidation end to end: two real sidecar processes on one redis-server, in front of the demo app.

Both serve ``/api/products`` from their near caches. A purge through sidecar A's admin API, and
one through the client library from another process (as the app would), each stop sidecar B from
serving the old entry within the documented bound. Once warm, B's HITs never touch the store
(the server's own ``INFO commandstats`` counts no GET or MGET over many HITs). When B's pub/sub
connection is killed and cannot be opened again, B asks the store on every HIT as without push;
once it can subscribe again it does so, and its HITs stop touching the store again.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.client.conftest import clean_env
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.redis import raw_client, redis_server, server_url, serving
from tests.servers.sidecar import start_sidecar
from tina4_sidecar.client import purge_url, runtime
from tina4_sidecar.store.push import channel

pytestmark = pytest.mark.e2e

TOKEN = "near-push-admin-token-0123456789"
STORE_TIMEOUT = 0.5
BOUND = 0.5 + STORE_TIMEOUT
"""The documented worst case (HEARTBEAT + TINA4_CACHE_TIMEOUT); delivery normally takes a few ms."""
PATH = "/api/products"
HITS = 200


@dataclass
class Stack:
    redis: ServerProcess
    app: DemoApp
    a: ServerProcess
    b: ServerProcess
    env: dict[str, str]

    @property
    def channel(self) -> str:
        return channel(self.env["TINA4_CACHE_NAMESPACE"])

    def raw(self) -> redis.Redis:
        return raw_client(self.redis)

    def subscribers(self) -> int:
        return int(dict(self.raw().pubsub_numsub(self.channel)).get(self.channel.encode(), 0))

    def store_reads(self) -> int:
        stats = self.raw().info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("near-push")
    with serving(redis_server()) as server:
        env = {
            "TINA4_CACHE_BACKEND": "redis",
            "TINA4_CACHE_URL": server_url(server),
            "TINA4_CACHE_NAMESPACE": f"tina4:push{uuid.uuid4().hex[:8]}",
            "TINA4_CACHE_TIMEOUT": str(STORE_TIMEOUT),
        }
        app = start_demo_app(workdir / "app", env={**env, "TINA4_CACHE_DIR": str(workdir / "app-cache")})
        sidecars: list[ServerProcess] = []
        try:
            # The manifest refresh reads the store id (proxy/control.py): not during the counted HITs.
            quiet = {**env, "TINA4_SIDECAR_MANIFEST_REFRESH": "3600"}
            sidecars.append(
                start_sidecar(app.port, workdir / "a", env={**quiet, "TINA4_SIDECAR_ADMIN_TOKEN": TOKEN})
            )
            # b: without push, every HIT asks the store (recheck 0), which the fallback test counts.
            recheck_every_hit = {**quiet, "TINA4_SIDECAR_NEAR_CACHE_RECHECK": "0"}
            sidecars.append(start_sidecar(app.port, workdir / "b", env=recheck_every_hit))
            built = Stack(server, app, sidecars[0], sidecars[1], env)
            wait_until(lambda: built.subscribers() == 2, 10, "both sidecars subscribed")
            yield built
        finally:
            for sidecar in sidecars:
                sidecar.stop()
            app.stop()


class Client:
    """One keep-alive connection (the fast path answers only keep-alive HTTP/1.1 requests)."""

    def __init__(self, sidecar: ServerProcess) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)

    def get(self, path: str = PATH) -> tuple[str, bytes]:
        self.connection.request("GET", path)
        reply = self.connection.getresponse()
        return str(reply.getheader("X-Cache")), reply.read()

    def warm(self, path: str = PATH) -> bytes:
        """The body once this sidecar answers ``path`` from its cache twice in a row."""
        deadline = time.monotonic() + 10
        while True:
            first, body = self.get(path)
            second, again = self.get(path)
            if first == second == "HIT" and body == again:
                return body
            assert time.monotonic() < deadline, f"{path} never became a steady HIT"
            time.sleep(0.02)

    def until_not(self, old: bytes, path: str = PATH) -> float:
        """Seconds until this sidecar stops answering ``old`` for ``path``."""
        started = time.monotonic()
        while self.get(path)[1] == old:
            assert time.monotonic() - started < 5, "the old entry is still served"
            time.sleep(0.001)
        return time.monotonic() - started

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def clients(stack: Stack) -> Iterator[tuple[Client, Client]]:
    a, b = Client(stack.a), Client(stack.b)
    yield a, b
    a.close()
    b.close()


def wait_until(check: object, within: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.02)


def admin_purge(stack: Stack, order: dict[str, object]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stack.a.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/__sidecar/purge",
            body=json.dumps(order),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        reply = connection.getresponse()
        assert reply.status == 200, reply.read()
    finally:
        connection.close()


def test_a_purge_through_sidecar_a_stops_sidecar_b_serving_the_old_entry_within_the_bound(
    stack: Stack, clients: tuple[Client, Client]
) -> None:
    a, b = clients
    a.warm()
    old = b.warm()
    admin_purge(stack, {"route": PATH})
    assert b.until_not(old) < BOUND


def test_a_purge_through_the_client_library_stops_sidecar_b_serving_the_old_entry_within_the_bound(
    stack: Stack, clients: tuple[Client, Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = clients
    a.warm()
    old = b.warm()
    clean_env(monkeypatch, tmp_path / "work", {**stack.env, "TINA4_CACHE_DIR": str(tmp_path / "cache")})
    runtime.reset()
    try:
        assert purge_url(f"http://any.host{PATH}") is True  # what the app calls, in a process of its own
    finally:
        runtime.reset()
    assert b.until_not(old) < BOUND


def test_steady_state_hits_on_sidecar_b_never_touch_the_store(
    stack: Stack, clients: tuple[Client, Client]
) -> None:
    _, b = clients
    b.warm()
    before = stack.store_reads()
    assert all(b.get()[0] == "HIT" for _ in range(HITS))
    assert stack.store_reads() - before == 0


def test_without_its_channel_sidecar_b_rechecks_every_hit_and_resubscribes_when_it_can(
    stack: Stack, clients: tuple[Client, Client]
) -> None:
    _, b = clients
    b.warm()
    raw = stack.raw()
    raw.execute_command("ACL", "SETUSER", "default", "-subscribe")  # no new subscription ...
    try:
        raw.client_kill_filter(_type="pubsub")  # ... after this one is killed
        wait_until(lambda: stack.subscribers() == 0, 5, "subscriptions gone")
        time.sleep(0.2)  # the sidecars read the end of their connections
        before = stack.store_reads()
        assert all(b.get()[0] == "HIT" for _ in range(HITS))
        assert stack.store_reads() - before >= HITS  # asked the store on every HIT (recheck 0)
    finally:
        raw.execute_command("ACL", "SETUSER", "default", "+subscribe")
    wait_until(lambda: stack.subscribers() == 2, 10, "both sidecars subscribed again")

    def hits_without_store_reads() -> bool:
        # Redis counts the subscriber before the sidecar has read the confirmation (which empties
        # its near cache) and the first PING answer (from which copies are trusted): until then a
        # HIT may still ask the store. Once push is back, HITs never do.
        b.warm()
        before = stack.store_reads()
        assert all(b.get()[0] == "HIT" for _ in range(HITS))
        return stack.store_reads() == before

    wait_until(hits_without_store_reads, 10, "HITs trusted on push again")
