"""The stored entry format: every entry reads back as it was written, and bytes that are not an
entry of this format are refused as ``EntryError`` (a miss), never a crash or a wrong answer."""

from __future__ import annotations

import hashlib
import struct
import zlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.nginx import TINA4_LIKE_HEADERS
from tina4_sidecar.proxy.http.entry import _HEAD, MAGIC, MAX_META, VERSION, Entry, EntryError
from tina4_sidecar.proxy.http.entry_dictionary import DICTIONARY

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


def _deflated(meta: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    return packer.compress(meta) + packer.flush()


def _with_meta(meta: bytes, body: bytes = b"{}", deflate: bool = True) -> bytes:
    stored = _deflated(meta) if deflate else meta
    return _HEAD.pack(MAGIC, VERSION, 200, 1.8e9, 60, len(stored)) + stored + body


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


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        _deflated(msgpack.packb([[], [], []]))[:-2],  # deflate stream cut short
        _deflated(b"\x00" * (MAX_META + 1)),  # inflates past the limit: refused, not allocated
        msgpack.packb([[], [], []]),  # not deflated (format 1's way of storing it)
    ],
)
def test_metadata_that_does_not_inflate_within_the_limit_is_refused(stored: bytes) -> None:
    with pytest.raises(EntryError):
        Entry.decode(_with_meta(stored, deflate=False))


def test_a_tina4_answers_metadata_is_a_small_fraction_of_its_headers() -> None:
    headers = (
        *TINA4_LIKE_HEADERS.items(),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", "1024"),
        ("Date", "Fri, 04 Dec 2026 20:00:00 GMT"),
    )
    tokens = (("~tok:all", None), ("~tok:host:shop.example", None), ("~tok:url:/api/products", None))
    entry = Entry(200, headers, b"x" * 1024, 1.8e9, 300, (), tokens)
    meta = len(entry.encode()) - _HEAD.size - len(entry.body)
    assert meta < sum(len(name) + len(value) for name, value in headers) // 4


def test_the_dictionary_is_the_one_this_format_version_was_written_with() -> None:
    # Changing entry_dictionary.WORDS makes every stored entry unreadable: bump entry.VERSION.
    assert (VERSION, hashlib.sha256(DICTIONARY).hexdigest()) == (
        2,
        "86351e97851452f8b865f75d0db3fd33a19c9d83cad36352c6879ac615928577",
    )


@given(st.binary(max_size=120), st.booleans())
def test_random_metadata_is_an_entry_or_refused(meta: bytes, deflate: bool) -> None:
    try:
        entry = Entry.decode(_with_meta(meta, deflate=deflate))
    except EntryError:
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in entry.headers)


def test_another_format_version_is_told_apart_from_corruption() -> None:
    data = bytearray(Entry(200, (), b"x", 1.8e9, 60).encode())
    struct.pack_into(">B", data, 4, VERSION - 1)
    with pytest.raises(EntryError) as refused:
        Entry.decode(bytes(data))
    assert refused.value.kind == "version"
