"""PostgreSQL for tests: fresh schemas on the shared server, or a throwaway cluster of our own.

``postgres_url`` (session fixture) is a URL on the shared server (``TINA4_TEST_POSTGRES_URL``,
default ``postgresql://postgres@127.0.0.1:5432/test``) whose ``search_path`` is a schema created
for this test session and dropped at its end, so tests never see or touch other data.
``shared_postgres`` hands out more fresh schemas (``fresh_schema_url()``). When the server does
not answer, tests that need it fail under ``CI=true`` and are skipped elsewhere.

``ThrowawayPostgres`` is a cluster of our own (``initdb`` + ``pg_ctl`` in a temporary directory,
on a free port, password authentication over TCP) for the tests that stop and restart the
server or need a real password check. It costs about a second to create, so use it from one
module-scoped fixture. Run as root, the PostgreSQL binaries run as the ``postgres`` user.
``kill()`` is a crash (SIGKILL to the postmaster and every server process); ``start()`` after it
runs PostgreSQL's crash recovery.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.servers.process import free_port, in_ci

SHARED_URL = os.environ.get("TINA4_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def with_search_path(url: str, schema: str) -> str:
    """``url`` with libpq's ``options=-csearch_path=<schema>`` added to its query."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


class SharedPostgres:
    """Schemas on the shared server, created on demand and all dropped by ``drop_all()``."""

    def __init__(self, url: str = SHARED_URL) -> None:
        self.url = url
        self.schemas: list[str] = []
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            unavailable(
                f"PostgreSQL at {urlsplit(url).hostname}:{urlsplit(url).port} is not reachable: {exc}"
            )

    def fresh_schema_url(self) -> str:
        """A URL whose tables land in a new, empty schema."""
        schema = f"t4s_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        self.schemas.append(schema)
        return with_search_path(self.url, schema)

    def drop_all(self) -> None:
        if not self.schemas:
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        self.schemas.clear()


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[SharedPostgres]:
    shared = SharedPostgres()
    try:
        yield shared
    finally:
        shared.drop_all()


@pytest.fixture(scope="session")
def postgres_url(shared_postgres: SharedPostgres) -> str:
    """A URL on the shared server whose tables land in this session's own schema."""
    return shared_postgres.fresh_schema_url()


def postgres_binary(name: str) -> str:
    """``initdb``, ``pg_ctl``...: the newest under /usr/lib/postgresql/*/bin, else on PATH."""
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    found = candidates[-1] if candidates else shutil.which(name)
    if not found:
        unavailable(f"{name} not found: install the PostgreSQL server (apt-get install postgresql)")
    return found


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own that a test may stop and start again on the same port."""

    def __init__(self, password: str = "sidecar-secret") -> None:
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="t4s-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.created_in: float = 0.0
        """Seconds that initdb and the first start took."""

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        secret = self.password if password is None else password
        return f"postgresql://postgres:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"

    def create(self) -> ThrowawayPostgres:
        began = time.monotonic()
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        )
        self.start()
        self.created_in = time.monotonic() - began
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o", options, "start"
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, as in a real restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and its server processes at once, as a crash, and wait for them."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        victims = [postmaster, *_children(postmaster)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {victims} outlived SIGKILL")
            time.sleep(0.02)
        # A killed postmaster stays a zombie until whoever adopted it reaps it (late, or never in
        # a container without an init); its lock files name that pid, which start() would take
        # for a running server. The processes are dead, so the lock files are stale.
        for lock in (self.data / "postmaster.pid", self.dir / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        argv = [*self._as_postgres, postgres_binary(tool), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}\n{log}")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...); None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Running: a zombie is dead already, whoever reaps it (the postmaster is not our child)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _children(parent: int) -> list[int]:
    """Process ids whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A cluster of our own for one test module; it may be stopped and started by the tests."""
    server = ThrowawayPostgres()
    try:
        server.create()
    except (RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        server.destroy()
        unavailable(f"cannot create a throwaway PostgreSQL cluster: {exc}")
    try:
        yield server
    finally:
        server.destroy()
