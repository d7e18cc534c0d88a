"""MongoDB servers for tests, each on a free loopback port, and a raw pymongo client.

``mongodb_server()`` runs a real ``mongod`` when one is on PATH (data in a temporary
directory), and otherwise ``nx-27017``, the MongoDB wire-protocol server (SQLite in memory)
that the test extra installs next to the interpreter. nx-27017 is close enough for the store's
calls, but differs from mongod: a TTL index purges expired documents within about a second
(mongod: once a minute), index names are its own, and a restarted server is empty (mongod
keeps its data). Tests must hold on both.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo

from tests.servers.process import ServerProcess, require_binary


def mongodb_server() -> ServerProcess:
    """An unstarted mongod, or nx-27017 when there is no mongod."""
    workdir = tempfile.mkdtemp(prefix="mongodb-data-")
    mongod = shutil.which("mongod")
    if mongod:

        def argv(port: int) -> list[str]:
            return [mongod, "--bind_ip", "127.0.0.1", "--port", str(port), "--dbpath", workdir, "--quiet"]

        name = "mongod"
    else:
        nx = Path(sys.executable).with_name("nx-27017")
        binary = str(nx) if nx.exists() else require_binary("nx-27017", "pip install nx-27017, or mongod")

        def argv(port: int) -> list[str]:
            # its own log and pid files: the defaults in /tmp are shared by every instance
            return [
                binary,
                "--host",
                "127.0.0.1",
                "-p",
                str(port),
                "--data-dir",
                "memory",
                "--log-file",
                f"{workdir}/server.log",
                "--pid-file",
                f"{workdir}/server.pid",
            ]

        name = "nx-27017"
    server = ServerProcess(name, argv, cwd=workdir)
    server.workdir = workdir  # type: ignore[attr-defined]
    return server


@contextmanager
def serving(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``server``, and stop it and remove its data directory afterwards."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(getattr(server, "workdir", ""), ignore_errors=True)


def server_url(server: ServerProcess, database: str = "tina4") -> str:
    return f"mongodb://{server.url_host}/{database}"


def raw_client(server: ServerProcess) -> pymongo.MongoClient[dict[str, object]]:
    """A plain synchronous client: reads and writes documents behind the store's back."""
    return pymongo.MongoClient(server_url(server), serverSelectionTimeoutMS=5000, tz_aware=True)
