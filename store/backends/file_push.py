"""Push invalidation for the file store: a change log that every process sharing the directory
appends to, and a subscription that follows it (the ``Subscription`` of ``store/push.py``).

The response layer of a file store appends each change it makes (``push.announcement``: a token's
scope, an entry's key, or everything) as one line to ``<namespace dir>/resp.changes``, AFTER the
write. One ``write()`` on a file opened ``O_APPEND`` lands whole at the end, so lines of several
processes never interleave. A follower reads new lines every ``POLL`` seconds: a change is seen
within that (plus the scheduling of its event loop), which is what lets the workers of
``--workers N`` (which share a file store on tmpfs, ``proxy/worker_store.py``) and an app on the
same host trust their near-cache copies between changes.

The log is bounded: a writer that finds it over ``MAX_BYTES`` renames it aside (atomic) and starts
a new one; a follower that sees the path name another file reads what is left of the old one and
then reports "everything" (it cannot know what it missed in between), which empties its near cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from tina4_sidecar.store import push

POLL = 0.01
MAX_BYTES = 4 * 1024 * 1024


class ChangeLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, change: push.Change) -> None:
        """Blocking; called right after the write it announces (in the store's thread)."""
        line = push.encode(change) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            if os.fstat(fd).st_size > MAX_BYTES:
                with contextlib.suppress(OSError):
                    os.replace(self.path, self.path.with_suffix(".old"))
        finally:
            os.close(fd)

    def announce(self, key: str | None) -> None:
        """What writing or deleting ``key`` announces (None: a clear of the layer)."""
        change = push.EVERYTHING if key is None else push.announcement(key)
        if change is not None:
            self.append(change)


class FileSubscription:
    """Follows a change log from its end at ``open()``; ``ping()`` is answered by the next receive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.channel = str(path)
        self._fd: int | None = None
        self._inode = 0
        self._buffer = b""
        self._pings = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        os.lseek(fd, 0, os.SEEK_END)
        self._fd, self._inode = fd, os.fstat(fd).st_ino

    async def receive(self) -> bytes | None:
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                return line
            if self._pings:  # everything written before the ping was read above
                self._pings -= 1
                return None
            if not self._read():
                if self._rotated():
                    return push.encode(push.EVERYTHING)
                await asyncio.sleep(POLL)

    async def ping(self) -> None:
        self._read()
        self._pings += 1

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _read(self) -> bool:
        if self._fd is None:
            raise push.SubscriptionLost("the change log is closed")
        data = os.read(self._fd, 1 << 16)
        self._buffer += data
        return bool(data)

    def _rotated(self) -> bool:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = 0
        if inode == self._inode:
            return False
        while self._read():  # the old file's last lines, then start over on the new one
            pass
        assert self._fd is not None
        os.close(self._fd)
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        return True
