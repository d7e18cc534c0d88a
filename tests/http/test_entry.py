"""The stored entry format: every entry reads back as it was written, and bytes that are not an
entry of this format are refused as ``EntryError`` (a miss), never a crash or a wrong answer."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tina4_sidecar.proxy.http.entry import _HEAD, MAGIC, VERSION, Entry, EntryError

# Header text as both transports hand it over: latin-1 from the fast path, UTF-8 with
# surrogate escapes for undecodable bytes from aiohttp.
texts = st.text(max_size=40) | st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
pairs = st.lists(st.tuples(texts, texts), max_size=8).map(tuple)
optional_pairs = st.lists(st.tuples(texts, st.none() | texts), max_size=4).map(tuple)


@given(
    status=st.integers(100, 599),
    headers=pairs,
    body=st.binary(max_size=200),
    vary=optional_pairs,
    tokens=optional_pairs,
    windows=st.tuples(st.integers(0, 2**31), st.integers(0, 2**31)),
    fetch=st.floats(0, 1e6),
    flags=st.tuples(st.integers(0, 2**31), st.booleans(), st.booleans(), st.booleans()),
)
def test_every_entry_reads_back_as_written(
    status: int,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    vary: tuple[tuple[str, str | None], ...],
    tokens: tuple[tuple[str, str | None], ...],
    windows: tuple[int, int],
    fetch: float,
    flags: tuple[int, bool, bool, bool],
) -> None:
    entry = Entry(status, headers, body, 1.8e9, 300, vary, tokens, *windows, fetch, *flags)
    assert Entry.decode(entry.encode()) == entry


def _with_meta(meta: bytes, body: bytes = b"{}") -> bytes:
    return _HEAD.pack(MAGIC, VERSION, 200, 1.8e9, 60, len(meta)) + meta + body


def test_metadata_written_before_later_items_existed_takes_their_defaults() -> None:
    entry = Entry.decode(_with_meta(msgpack.packb([["Content-Type", "application/json"], [], []])))
    assert entry.headers == (("Content-Type", "application/json"),)
    assert (entry.stale_while_revalidate, entry.initial_age, entry.shared_auth) == (0, 0, False)


def test_items_a_reader_does_not_know_are_ignored() -> None:
    known = [["ETag", '"a"'], [], [], 5, 6, 0.5, 7, True, False, True]
    entry = Entry.decode(_with_meta(msgpack.packb([*known, "from a later format", 42])))
    assert (entry.stale_while_revalidate, entry.stale_if_error, entry.initial_age) == (5, 6, 7)
    assert (entry.revalidate, entry.no_stale, entry.shared_auth) == (True, False, True)


@pytest.mark.parametrize(
    "meta",
    [
        msgpack.packb({"h": []}),  # format 1's shape
        msgpack.packb([["odd"], [], []]),
        msgpack.packb([[1, 2], [], []]),
        msgpack.packb([[], ["name"], []]),
        msgpack.packb([[], [], [3, None]]),
        msgpack.packb([[], [], [], "not a number"]),
        msgpack.packb([[]]),
        b"\xc1",  # never used in MessagePack
        b"\x93\x90",  # an array cut short
    ],
)
def test_metadata_that_is_not_this_format_is_refused(meta: bytes) -> None:
    with pytest.raises(EntryError) as refused:
        Entry.decode(_with_meta(meta))
    assert refused.value.kind == "corrupt"


@given(st.binary(max_size=120))
def test_random_metadata_is_an_entry_or_refused(meta: bytes) -> None:
    try:
        entry = Entry.decode(_with_meta(meta))
    except EntryError:
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in entry.headers)


def test_another_format_version_is_told_apart_from_corruption() -> None:
    data = bytearray(Entry(200, (), b"x", 1.8e9, 60).encode())
    struct.pack_into(">B", data, 4, VERSION - 1)
    with pytest.raises(EntryError) as refused:
        Entry.decode(bytes(data))
    assert refused.value.kind == "version"
