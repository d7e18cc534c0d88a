"""A real 3-node Redis Cluster for tests: three ``redis-server --cluster-enabled yes`` processes on
free loopback ports, joined by ``redis-cli --cluster create`` (no replicas), without persistence.

``redis_cluster()`` is a context manager that starts the cluster, waits until every node reports
``cluster_state:ok``, yields a :class:`RedisClusterServers`, and stops the nodes and removes their
data directory afterwards. ``cluster_url()`` is the ``redis+cluster://`` URL the stores take.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from tests.servers.process import ServerProcess, free_port, require_binary
from tests.servers.redis import redis_binary

NODES = 3
READY_TIMEOUT = 20.0
MAX_NODE_PORT = 55535


@dataclass
class RedisClusterServers:
    """The running nodes of one cluster."""

    nodes: list[ServerProcess]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]


def cluster_url(cluster: RedisClusterServers, scheme: str = "redis+cluster", credentials: str = "") -> str:
    """``redis+cluster://[credentials@]127.0.0.1:P1,127.0.0.1:P2,...``."""
    hosts = ",".join(f"127.0.0.1:{port}" for port in cluster.ports)
    return f"{scheme}://{credentials + '@' if credentials else ''}{hosts}"


def node_client(port: int) -> redis.Redis:
    """A plain client of one node (no redirection): DBSIZE, CLUSTER INFO."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0))


def cluster_client(cluster: RedisClusterServers) -> RedisCluster:
    """A synchronous redis-py cluster client, for writes and reads behind the store's back."""
    return RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", port) for port in cluster.ports], socket_timeout=5
    )


def _cluster_port() -> int:
    """A free port that Redis accepts for a cluster node (55535 or less: without ``cluster-port``
    Redis insists on port + 10000 for the cluster bus, and refuses higher ports even with it)."""
    while True:
        port = free_port()
        if port <= MAX_NODE_PORT:
            return port


def _node(binary: str, workdir: str) -> ServerProcess:
    bus_port = _cluster_port()

    def argv(port: int) -> list[str]:
        return [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-port", str(bus_port),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--loglevel", "warning",
        ]  # fmt: skip

    return ServerProcess("redis-cluster-node", argv, port=_cluster_port())


def _wait_until_ok(ports: list[int], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        state = ""
        try:
            with node_client(pending[0]) as client:
                info = client.cluster("INFO")
                state = str(info.get("cluster_state", "")) if isinstance(info, dict) else str(info)
        except redis.RedisError:
            pass
        if "ok" in state:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster on {ports} never reached cluster_state:ok")
        time.sleep(0.1)


@contextmanager
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A started 3-node cluster; stopped and removed afterwards."""
    binary = redis_binary()
    cli = require_binary("redis-cli", "install Redis 7 or later (apt-get install redis-tools)")
    workdir = tempfile.mkdtemp(prefix="redis-cluster-")
    nodes = [_node(binary, workdir) for _ in range(NODES)]
    try:
        for node in nodes:
            node.start()
        create = [cli, "--cluster", "create", *(node.url_host for node in nodes)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
        _wait_until_ok([node.port for node in nodes])
        yield RedisClusterServers(nodes)
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
