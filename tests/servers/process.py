"""Starting real server processes for tests on free loopback ports, and stopping them.

Under ``CI=true`` a server whose binary is missing fails the test run; elsewhere it skips
the tests that need it, with a reason that says what to install.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, hint: str) -> str:
    """Path of ``name``; fails under CI and skips elsewhere when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found: {hint}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


_RUNNING: set[ServerProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    """A test that failed between starting a server and its cleanup must not leave it running."""
    for server in list(_RUNNING):
        server.stop()


class ServerProcess:
    """A server started as a child process; ``stop()`` and ``start()`` again on the same port."""

    def __init__(
        self,
        name: str,
        argv_for_port: Callable[[int], Sequence[str]],
        port: int | None = None,
        env: dict[str, str | None] | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self._argv_for_port = argv_for_port
        self._env = env
        self._cwd = cwd
        self._ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])

    def start(self) -> ServerProcess:
        argv = list(self._argv_for_port(self.port))
        merged = {**os.environ, **(self._env or {})}
        env = {name: value for name, value in merged.items() if value is not None}  # None = unset
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._cwd,
            start_new_session=True,
        )
        _RUNNING.add(self)
        try:
            wait_for_port(self.port, self._ready_timeout, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        _RUNNING.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the log, to show with a failure."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_text(self) -> str:
        """The whole log: what a test asserts on (the access log adds a line per request, so a
        tail could miss a line written earlier, and an absent one could be there after all)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"
