"""The file store: one file per entry under ``cache_dir``, safe to share between processes.

Layout: ``<cache_dir>/<namespace, escaped>/<layer>/<h[:2]>/<h>`` where ``h`` is the sha256
hex of the full key, so a key can never name a path (``../``, NUL, 10 kB keys are all just
hashes). A file is a fixed header, the full key, then the value::

    magic b"T4FS" | version u8 | expires_at f64 (epoch seconds, 0 = never)
    | key length u32 | value length u64 | crc32 of the value u32 | key (UTF-8) | value

Writes go to a temporary file in the same directory and ``os.replace`` it into place, so
a reader in any process sees the old file or the new one, never half of either. A file
that is truncated, has another magic, version, key or checksum is a miss and is removed;
nothing is ever unpickled. ``clear()`` renames the layer directory into ``.trash`` (O(1)
for the caller) and deletes it in a background thread. All disk I/O runs in threads
(``asyncio.to_thread``), never on the event loop.

Bounded by TINA4_CACHE_MAX_ENTRIES and TINA4_CACHE_MAX_BYTES per layer (``file_bounds``), whether
used directly or as the fallback. Expired files are deleted when read and by ``sweep()``,
which a periodic task should call; ``size()`` counts entry files without reading them, so it
includes expired files that neither has reached yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tina4_sidecar.store import push
from tina4_sidecar.store.backends.file_bounds import CHECK_SECONDS, Bounds, enforce
from tina4_sidecar.store.backends.file_push import ChangeLog, FileSubscription
from tina4_sidecar.store.contract import Store

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

MAGIC = b"T4FS"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBdIQI")
_KEY_ENCODING = ("utf-8", "surrogatepass")  # any str is a valid key, even a lone surrogate
_TEMP_SUFFIX = ".tmp"
_TEMP_MAX_AGE = 3600.0
"""A temporary file older than this was left by a crashed writer; ``sweep()`` removes it."""
_TRASH = ".trash"
_NAME_LENGTH = 64


_ADD_LOCK = ".add.lock"
SWEEP_INTERVAL = 60.0
"""Seconds between background sweeps of one store (each sweep is bounded, see ``sweep``)."""


class CorruptEntry(ValueError):
    """The bytes of a file are not an entry of this format for the expected key."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    expires_at: float  # epoch seconds; 0.0 = no expiry

    def expired(self, now: float) -> bool:
        return bool(self.expires_at) and self.expires_at <= now


def encode_entry(full_key: str, value: bytes, expires_at: float) -> bytes:
    """The file content for one entry (``expires_at`` 0 = no expiry)."""
    key = full_key.encode(*_KEY_ENCODING)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, expires_at, len(key), len(value), zlib.crc32(value))
    return b"".join((header, key, value))


def decode_entry(data: bytes) -> Entry:
    """Parse a file's content; raises :class:`CorruptEntry` unless it is whole and ours."""
    if len(data) < _HEADER.size:
        raise CorruptEntry("shorter than the header")
    magic, version, expires_at, key_len, value_len, crc = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise CorruptEntry("not a tina4 file-store entry of this version")
    if len(data) != _HEADER.size + key_len + value_len:
        raise CorruptEntry("length does not match the header")
    value = data[_HEADER.size + key_len :]
    if zlib.crc32(value) != crc:
        raise CorruptEntry("checksum mismatch")
    try:
        key = data[_HEADER.size : _HEADER.size + key_len].decode(*_KEY_ENCODING)
    except UnicodeDecodeError as exc:
        raise CorruptEntry("key is not UTF-8") from exc
    return Entry(key, value, expires_at)


def decode_head(data: bytes) -> Entry:
    """The key and expiry from the first bytes of a file (``value`` is left empty, not checked)."""
    if len(data) < _HEADER.size:
        raise CorruptEntry("shorter than the header")
    magic, version, expires_at, key_len, _, _ = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION or len(data) < _HEADER.size + key_len:
        raise CorruptEntry("not a tina4 file-store entry of this version")
    try:
        key = data[_HEADER.size : _HEADER.size + key_len].decode(*_KEY_ENCODING)
    except UnicodeDecodeError as exc:
        raise CorruptEntry("key is not UTF-8") from exc
    return Entry(key, b"", expires_at)


def namespace_dir_name(namespace: str) -> str:
    """An injective, filesystem-safe name: ``[A-Za-z0-9-]`` kept, anything else ``_xx`` (hex)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c == "-" else f"_{ord(c):02x}" for c in namespace)


def key_hash(full_key: str) -> str:
    return hashlib.sha256(full_key.encode(*_KEY_ENCODING)).hexdigest()


def _is_entry_name(name: str) -> bool:
    return len(name) == _NAME_LENGTH and all(c in "0123456789abcdef" for c in name)


class FileStore(Store):
    """One namespace and layer of a cache directory that several processes may share."""

    backend_name = "file"

    def __init__(
        self,
        namespace: str,
        layer: str,
        cache_dir: Path | str,
        *,
        timeout: float = 1.0,
        bounds: Bounds | None = None,
    ) -> None:
        super().__init__(namespace, layer, timeout)
        self.bounds = bounds
        """TINA4_CACHE_MAX_ENTRIES and MAX_BYTES of this layer (``file_bounds``); None: unbounded."""
        self._written = False
        self._bounder: asyncio.Task[None] | None = None
        self.cache_dir = Path(cache_dir)
        self.namespace_dir = self.cache_dir / namespace_dir_name(namespace)
        self.directory = self.namespace_dir / layer
        self._sweep_cursor = 0
        self._sweeper: asyncio.Task[None] | None = None
        pushes = layer == push.PUSH_LAYER
        self.changelog = ChangeLog(self.namespace_dir / f"{layer}.changes") if pushes else None
        """The response layer announces its changes to other processes (``store/backends/file_push.py``)."""

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> FileStore:
        """Uses ``settings.cache_dir``; ``url`` is ignored."""
        bounds = Bounds(settings.cache_max_entries, settings.cache_max_bytes)
        return cls(
            settings.cache_namespace, layer, settings.cache_dir, timeout=settings.cache_timeout, bounds=bounds
        )

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist)."""
        digest = key_hash(self.full_key(key))
        return self.directory / digest[:2] / digest

    # -- the contract ---------------------------------------------------------------------

    async def _open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())
        if self.bounds is not None and self._bounder is None:
            self._bounder = asyncio.create_task(self._bound_forever(self.bounds))

    async def _bound_forever(self, bounds: Bounds) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self._written:
                self._written = False
                try:
                    await asyncio.to_thread(enforce, self.directory, bounds)
                except Exception as exc:  # a vanished dir must not end the task
                    self.record_error("evict", exc)

    async def _close(self) -> None:
        if self._bounder is not None:
            self._bounder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bounder
            self._bounder = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        """Expired files are otherwise only removed when read; an unread one would stay forever."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception as exc:  # a full disk or a vanished dir must not end the task
                self.record_error("sweep", exc)

    async def _ping(self) -> None:
        # cheaper than the default (size(), which lists every file) and proves the dir is usable
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def _get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read_live, key, time.time())

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return await asyncio.to_thread(self._read_many, keys, time.time())

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        content = encode_entry(self.full_key(key), value, self.expires_at(ttl) or 0.0)
        self._written = True
        await asyncio.to_thread(self._write_announced, key, content)

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        content = encode_entry(self.full_key(key), value, self.expires_at(ttl) or 0.0)
        return await asyncio.to_thread(self._add_sync, key, content, time.time())

    async def _delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete_sync, key, time.time())

    async def _clear(self) -> None:
        await asyncio.to_thread(self._clear_sync)

    def changes(self) -> FileSubscription | None:
        return FileSubscription(self.changelog.path) if self.changelog is not None else None

    async def _size(self) -> int:
        return await asyncio.to_thread(self._count_files)

    async def sweep(self, limit: int = 1000, now: float | None = None) -> int:
        """Delete expired or unreadable entries and stale temporary files; returns how many.

        One call examines whole fan-out directories (``<h[:2]>/``) until it has looked at about
        ``limit`` files (a directory holds 1/256 of the entries), and the next call continues
        with the directory after, so a periodic task never scans the whole cache at once. Only
        headers are read. ``now`` (epoch seconds) defaults to the current time.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        return await asyncio.to_thread(self._sweep_sync, limit, time.time() if now is None else now)

    # -- blocking helpers, run in threads -------------------------------------------------------

    def _open_sync(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_trash()

    def _read_many(self, keys: list[str], now: float) -> list[bytes | None]:
        return [self._read_live(key, now) for key in keys]

    def _read_live(self, key: str, now: float) -> bytes | None:
        """The value of ``key`` when its file is whole, ours and unexpired; removes a bad file."""
        path = self.path_for(key)
        try:
            with path.open("rb") as handle:
                data = handle.read()
                identity = _identity(os.fstat(handle.fileno()))
        except FileNotFoundError:
            return None
        try:
            entry = decode_entry(data)
        except CorruptEntry:
            _unlink_if_same(path, identity)
            return None
        if entry.key != self.full_key(key) or entry.expired(now):
            _unlink_if_same(path, identity)
            return None
        return entry.value

    def _write_announced(self, key: str, content: bytes) -> None:
        self._write(self.path_for(key), content)
        if self.changelog is not None:
            self.changelog.announce(key)

    def _write(self, path: Path, content: bytes) -> None:
        try:
            self._write_once(path, content)
        except FileNotFoundError:
            # clear() (maybe in another process) moved the directory away between our mkdir and
            # the write: the directory is recreated and the entry written into the new one.
            self._write_once(path, content)

    @staticmethod
    def _write_once(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:16]}.", suffix=_TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _add_sync(self, key: str, content: bytes, now: float) -> bool:
        """Create the entry only if no live one holds the key, exactly once across processes.

        Check-then-write is made atomic with an exclusive ``flock`` on the layer's lock file: an
        "unlink the expired file if it is still the same file" step cannot be made atomic, and two
        processes racing over an expired entry could otherwise both win. Adds are rare (locks), so
        serialising them per layer costs nothing that matters.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / _ADD_LOCK, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if self._read_live(key, now) is not None:
                return False
            self._write_announced(key, content)
            return True

    def _delete_sync(self, key: str, now: float) -> bool:
        """Remove the file of ``key``; True only when it held a live entry."""
        path = self.path_for(key)
        head = _read_head(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if self.changelog is not None:
            self.changelog.announce(key)
        return head is not None and head.key == self.full_key(key) and not head.expired(now)

    def _clear_sync(self) -> None:
        trash = self.namespace_dir / _TRASH / f"{self.layer}-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.directory.rename(trash)
        except FileNotFoundError:
            return
        if self.changelog is not None:
            self.changelog.announce(None)
        threading.Thread(target=shutil.rmtree, args=(trash, True), daemon=True).start()

    def _count_files(self) -> int:
        return sum(1 for _ in self._entry_files(self._fanout_dirs()))

    def _sweep_sync(self, limit: int, now: float) -> int:
        fanout = self._fanout_dirs()
        if not fanout:
            return 0
        start = self._sweep_cursor % len(fanout)
        removed = examined = 0
        for offset in range(len(fanout)):
            index = (start + offset) % len(fanout)
            for path in _dir_files(fanout[index]):
                examined += 1
                removed += self._sweep_one(path, now)
            self._sweep_cursor = index + 1
            if examined >= limit:
                break
        return removed

    def _sweep_one(self, path: Path, now: float) -> int:
        """1 when ``path`` (an entry or a temporary file) was expired, stale or corrupt and removed."""
        if not _is_entry_name(path.name):
            return int(path.name.endswith(_TEMP_SUFFIX) and _remove_if_older(path, now - _TEMP_MAX_AGE))
        try:
            identity = _identity(path.stat())
        except FileNotFoundError:
            return 0
        head = _read_head(path)
        return int((head is None or head.expired(now)) and _unlink_if_same(path, identity))

    def _fanout_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in _dir_entries(self.directory) if p.is_dir() and len(p.name) == 2)
        except FileNotFoundError:
            return []

    def _entry_files(self, fanout: list[Path]) -> Iterator[Path]:
        for directory in fanout:
            yield from (p for p in _dir_files(directory) if _is_entry_name(p.name))

    def _remove_trash(self) -> None:
        """Delete what a clear() left when its process exited before the background delete ended."""
        trash = self.namespace_dir / _TRASH
        for leftover in _dir_entries(trash) if trash.is_dir() else []:
            if leftover.name.startswith(f"{self.layer}-"):
                shutil.rmtree(leftover, ignore_errors=True)


def _dir_entries(directory: Path) -> list[Path]:
    with os.scandir(directory) as entries:
        return [Path(entry.path) for entry in entries]


def _dir_files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(entry.path) for entry in entries if entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _read_head(path: Path) -> Entry | None:
    """Key and expiry of the entry at ``path``; None when it is missing or not an entry."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER.size)
            if len(head) == _HEADER.size:
                # a foreign file's "key length" may be anything: never read past the file's end
                remaining = os.fstat(handle.fileno()).st_size - _HEADER.size
                head += handle.read(min(_HEADER.unpack_from(head)[3], remaining))
        return decode_head(head)
    except (FileNotFoundError, CorruptEntry):
        return None


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns)


def _unlink_if_same(path: Path, identity: tuple[int, int, int]) -> bool:
    """Remove ``path`` unless another writer replaced it since we read it (then it is not ours to drop)."""
    try:
        if _identity(path.stat()) != identity:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_if_older(path: Path, cutoff: float) -> bool:
    try:
        if path.stat().st_mtime >= cutoff:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True
