"""A MariaDB server of the test session: its own datadir and a free loopback port.

``mariadb-install-db`` writes a fresh datadir (Debian's ``mariadb-server``, installed by
``.ci/services``), then ``mariadbd`` serves it on 127.0.0.1 only, with no config file read
(``--no-defaults``), and a database ``test`` for the store. Missing binaries fail under CI and
skip elsewhere (``require_binary``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql  # type: ignore[import-untyped]

from tests.servers.process import ServerProcess, require_binary

HINT = "apt-get install mariadb-server (.ci/services does)"


def mariadb_server() -> tuple[ServerProcess, Path]:
    """An unstarted server on a fresh datadir (and the directory, to remove afterwards)."""
    server = require_binary("mariadbd", HINT)
    install = require_binary("mariadb-install-db", HINT)
    work = Path(tempfile.mkdtemp(prefix="tina4-mariadb-"))
    data = work / "data"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *user,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def argv(port: int) -> list[str]:
        return [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={work / 'mysqld.sock'}",
            f"--pid-file={work / 'mysqld.pid'}",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            "--skip-grant-tables",  # root without a password from any host: a throwaway server
            "--innodb-buffer-pool-size=32M",
            "--skip-log-bin",
            *user,
        ]

    return ServerProcess("mariadb", argv, ready_timeout=60), work


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2) as conn,
                conn.cursor() as cur,
            ):
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
            return
        except pymysql.MySQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def serving() -> Iterator[ServerProcess]:
    server, work = mariadb_server()
    try:
        server.start()
        wait_ready(server.port)
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def server_url(server: ServerProcess, database: str = "test") -> str:
    return f"mysql://root@127.0.0.1:{server.port}/{database}"
