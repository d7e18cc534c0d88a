"""The file store: the shared contract, atomic rewrites, corrupt files, path safety, sharing and sweep."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.store.contract_suite import (
    AddSuite,
    ContractSuite,
    ForeignExists,
    ForeignWrite,
    StoreMaker,
    StoreSpec,
    store_factory,
    unique_namespace,
)
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.backends.file import (
    CorruptEntry,
    FileStore,
    decode_entry,
    encode_entry,
    namespace_dir_name,
)
from tina4_sidecar.store.contract import LAYERS, StoreUnavailable


def foreign_paths(tmp_path: Path, raw_key: str) -> list[Path]:
    """Where another application's copy of ``raw_key`` lives: in our cache dir and in a sibling dir.

    A raw key shaped like ``<namespace>:<layer>:<key>`` goes where a FileStore of that namespace
    would put it (the look-alike namespaces of the suite); anything else under ``foreign/``.
    """
    digest = hashlib.sha256(raw_key.encode()).hexdigest()
    sibling = tmp_path / "sibling" / digest
    namespace, _, rest = raw_key.rpartition(":")
    namespace, _, layer = namespace.rpartition(":")
    if namespace and layer in LAYERS:
        return [FileStore(namespace, layer, tmp_path / "cache").path_for(rest), sibling]
    return [tmp_path / "cache" / "foreign" / digest[:2] / digest, sibling]


class TestFileContract(ContractSuite, AddSuite):
    backend_name = "file"

    @pytest.fixture
    def store_spec(self, tmp_path: Path) -> StoreSpec:
        return StoreSpec("file", settings={"cache_dir": str(tmp_path / "cache")})

    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[StoreMaker]:
        async with store_factory(lambda ns, layer: FileStore(ns, layer, tmp_path / "cache")) as make:
            yield make

    @pytest.fixture
    def foreign_write(self, tmp_path: Path) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            for path in foreign_paths(tmp_path, raw_key):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode_entry(raw_key, value, 0.0))

        return write

    @pytest.fixture
    def foreign_exists(self, tmp_path: Path) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return all(path.is_file() for path in foreign_paths(tmp_path, raw_key))

        return exists


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    opened = FileStore(unique_namespace(), "kv", tmp_path / "cache")
    await opened.open()
    yield opened
    await opened.close()


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def entry_files(root: Path) -> list[Path]:
    return [p for p in all_files(root) if len(p.name) == 64]


def wait_until_empty(directory: Path, timeout: float) -> bool:
    """True once ``directory`` is empty (a background thread is deleting its content)."""
    deadline = time.monotonic() + timeout
    while any(directory.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- format ------------------------------------------------------------------------------------------


def test_entry_format_round_trips_and_checks_everything() -> None:
    data = encode_entry("ns:kv:k", b"value", 123.5)
    entry = decode_entry(data)
    assert (entry.key, entry.value, entry.expires_at) == ("ns:kv:k", b"value", 123.5)
    assert data.startswith(b"T4FS\x01")
    for broken in (data[:-1], data + b"x", b"", b"T4FS", b"\x80\x04pickle" + data[10:]):
        with pytest.raises(CorruptEntry):
            decode_entry(broken)


def test_namespace_dir_names_are_safe_and_distinct() -> None:
    names = ["tina4:default", "tina4_3adefault", "a.b", "a_b", "a:b", "..", ".", "A-b_c.d:e"]
    escaped = [namespace_dir_name(n) for n in names]
    assert len(set(escaped)) == len(names)
    assert namespace_dir_name("tina4:default") == "tina4_3adefault"
    assert namespace_dir_name("..") == "_2e_2e"
    assert all(c.isalnum() or c in "-_" for name in escaped for c in name)


def test_from_settings_uses_cache_dir_and_namespace(tmp_path: Path) -> None:
    settings = CacheSettings(
        cache_dir=tmp_path / "c",
        cache_namespace="tina4:app",
        cache_timeout=2.0,
    )
    store = FileStore.from_settings(settings, "resp", url="ignored://")
    assert store.directory == tmp_path / "c" / "tina4_3aapp" / "resp"
    assert (store.prefix, store.timeout, store.backend_name) == ("tina4:app:resp:", 2.0, "file")
    digest = hashlib.sha256(b"tina4:app:resp:/x").hexdigest()
    assert store.path_for("/x") == store.directory / digest[:2] / digest


# -- atomicity and sharing -----------------------------------------------------------------------------


async def test_readers_never_see_a_torn_value_during_200_rewrites(store: FileStore) -> None:
    values = [bytes([i % 256]) * (20_000 + 997 * i) for i in range(200)]
    await store.set("hot", values[0], 60)
    path = store.path_for("hot")
    done = threading.Event()
    problems: list[str] = []

    def raw_reader() -> None:  # another thread reading the file itself, as another process would
        while not done.is_set():
            try:
                value = decode_entry(path.read_bytes()).value
            except (CorruptEntry, FileNotFoundError) as exc:
                problems.append(f"raw reader: {exc!r}")
                return
            if value not in values:
                problems.append("raw reader: a value nobody wrote")

    async def store_reader() -> int:
        reads = 0
        while not done.is_set():
            value = await store.get("hot")
            if value not in values:
                problems.append(f"store reader: {value[:8] if value else value!r}")
            reads += 1
        return reads

    thread = threading.Thread(target=raw_reader)
    thread.start()
    reader = asyncio.create_task(store_reader())
    try:
        results = await asyncio.gather(*(store.set("hot", value, 60) for value in values))
    finally:
        done.set()
        reads = await reader
        thread.join()
    assert all(results)
    assert problems == []
    assert reads > 0
    assert await store.get("hot") in values
    leftovers = [p.name for p in path.parent.iterdir() if p != path]
    assert leftovers == []  # no temporary file left behind


async def test_two_instances_on_one_directory_share_entries(tmp_path: Path) -> None:
    namespace = unique_namespace()
    first, second = FileStore(namespace, "kv", tmp_path), FileStore(namespace, "kv", tmp_path)
    await first.set("k", b"from first", 60)
    assert await second.get("k") == b"from first"
    await second.set("k", b"from second", 60)
    assert await first.get("k") == b"from second"
    assert await first.delete("k") is True
    assert await second.get("k") is None
    await second.set("j", b"v", 60)
    await first.clear()
    assert await second.get("j") is None
    assert await second.size() == 0


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from tina4_sidecar.store.backends.file import FileStore

    async def main() -> None:
        store = FileStore(sys.argv[2], "kv", sys.argv[1])
        await store.open()
        print((await store.get("from-parent")).decode(), flush=True)
        for i in range(150):
            await store.set("contended", bytes([200]) * (5000 + i), 60)
        await store.set("from-child", b"child was here", 0)

    asyncio.run(main())
    """
)


async def test_two_processes_share_a_directory(tmp_path: Path) -> None:
    namespace = unique_namespace()
    store = FileStore(namespace, "kv", tmp_path)
    await store.set("from-parent", b"parent was here", 0)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(tmp_path), namespace, stdout=subprocess.PIPE
    )
    mine = [bytes([7]) * (8000 + i) for i in range(150)]
    seen: list[bytes | None] = []
    for value in mine:  # this process rewrites and reads the same key while the child does
        await store.set("contended", value, 60)
        seen.append(await store.get("contended"))
    output, _ = await child.communicate()
    assert child.returncode == 0
    assert output.decode().strip() == "parent was here"
    assert await store.get("from-child") == b"child was here"
    theirs = {bytes([200]) * (5000 + i) for i in range(150)}
    assert all(value in theirs or value in mine for value in seen)


# -- damaged and foreign files -----------------------------------------------------------------------


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": truncate,
    "empty": lambda data: b"",
    "flipped value byte": flip_last_byte,
    "other magic": lambda data: b"XXXX" + data[4:],
    "future version": lambda data: data[:4] + b"\x09" + data[5:],
    "huge key length": lambda data: data[:13] + b"\xff\xff\xff\xff" + data[17:],
    "another key's entry": lambda data: encode_entry("someone:else:k", b"value", 0.0),
    "pickle": lambda data: b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
async def test_a_damaged_or_foreign_file_is_a_miss_and_is_removed(
    store: FileStore, damage: Callable[[bytes], bytes]
) -> None:
    await store.set("k", b"value", 60)
    path = store.path_for("k")
    path.write_bytes(damage(path.read_bytes()))
    assert await store.get("k") is None
    assert not path.exists()
    assert (await store.stats()).errors == 0  # a bad file is a miss, not a backend failure
    await store.set("k", b"fresh", 60)
    assert await store.get("k") == b"fresh"


async def test_an_expired_file_is_removed_on_read(store: FileStore) -> None:
    path = store.path_for("old")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_entry(store.full_key("old"), b"stale", time.time() - 1))
    assert await store.get_many(["old"]) == [None]
    assert not path.exists()


# -- path safety -------------------------------------------------------------------------------------

HOSTILE_KEYS = [
    "../../etc/passwd",
    "../" * 40 + "escape",
    "/absolute/path",
    "..\\..\\windows\\system32",
    "nul\x00byte",
    "x" * 10_000,
    "",
    "\udcff lone surrogate",
    "CON",
]


async def test_hostile_keys_round_trip_and_stay_inside_the_layer_directory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store = FileStore(unique_namespace(), "kv", cache)
    for index, key in enumerate(HOSTILE_KEYS):
        assert await store.set(key, str(index).encode(), 60) is True
    assert await store.get_many(HOSTILE_KEYS) == [str(i).encode() for i in range(len(HOSTILE_KEYS))]
    everything = all_files(tmp_path)
    assert len(everything) == len(HOSTILE_KEYS)
    assert all(p.resolve().is_relative_to(store.directory.resolve()) for p in everything)
    assert (await store.stats()).errors == 0


# -- clear, sweep ------------------------------------------------------------------------------------


async def test_clear_moves_the_layer_away_and_deletes_it_in_the_background(store: FileStore) -> None:
    for i in range(20):
        await store.set(str(i), b"v", 60)
    assert await store.clear() is True
    assert await store.size() == 0
    trash = store.namespace_dir / ".trash"
    assert await asyncio.to_thread(wait_until_empty, trash, 10.0)


async def test_open_removes_trash_that_a_dead_process_left(tmp_path: Path) -> None:
    namespace = unique_namespace()
    store = FileStore(namespace, "kv", tmp_path)
    leftover = store.namespace_dir / ".trash" / "kv-0123abcd"
    other_layer = store.namespace_dir / ".trash" / "resp-0123abcd"
    for directory in (leftover, other_layer):
        (directory / "ab").mkdir(parents=True)
        (directory / "ab" / ("ab" + "0" * 62)).write_bytes(b"x")
    await store.open()
    assert not leftover.exists()
    assert other_layer.exists()  # another layer's clear() may still be deleting it


async def test_sweep_deletes_expired_entries_and_stale_temporary_files(store: FileStore) -> None:
    await store.set("expiring", b"e", 1)
    await store.set("lasting", b"l", 3600)
    await store.set("forever", b"f", 0)
    fanout = store.path_for("forever").parent
    stale, fresh = fanout / ".stale.tmp", fanout / ".fresh.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    assert await store.sweep(now=time.time() + 10) == 2
    assert not store.path_for("expiring").exists()
    assert not stale.exists()
    assert fresh.exists()
    assert await store.get_many(["lasting", "forever"]) == [b"l", b"f"]
    assert await store.sweep() == 0


async def test_sweep_is_bounded_per_call_and_resumes(store: FileStore) -> None:
    for i in range(40):
        await store.set(f"k{i}", b"v", 1)
    later = time.time() + 10
    first = await store.sweep(limit=1, now=later)
    assert 1 <= first < 40
    total, calls = first, 1
    while total < 40 and calls < 300:
        total += await store.sweep(limit=1, now=later)
        calls += 1
    assert total == 40
    assert entry_files(store.directory) == []


async def test_sweep_refuses_a_zero_limit(store: FileStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.sweep(limit=0)


async def test_ping_fails_when_the_cache_dir_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a file where the cache directory should be")
    store = FileStore(unique_namespace(), "kv", blocker)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert await store.set("k", b"v", 60) is False  # a failing disk fails no caller
    assert await store.get("k") is None
    assert (await store.stats()).errors == 3  # set, get, and the size() inside stats()
