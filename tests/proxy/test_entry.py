"""The stored response format: exact round trips, freshness arithmetic, and rejection of foreign bytes."""

import os

import pytest

from tina4_sidecar.proxy.http.entry import Entry, EntryError


def sample(**overrides: object) -> Entry:
    fields: dict[str, object] = {
        "status": 200,
        "headers": (("Content-Type", "application/json"), ("Set-Thing", "a"), ("Set-Thing", "b")),
        "body": bytes(range(256)) + os.urandom(1000),
        "stored_at": 1_700_000_000.25,
        "ttl": 300,
        "vary": (("accept-language", "en"), ("accept-encoding", None)),
    }
    fields.update(overrides)
    return Entry(**fields)  # type: ignore[arg-type]


def test_round_trip_is_exact() -> None:
    entry = sample()
    assert Entry.decode(entry.encode()) == entry


def test_non_ascii_header_values_round_trip() -> None:
    entry = sample(headers=(("X-Name", "caf\u00e9 \udcff"),))
    assert Entry.decode(entry.encode()).headers == (("X-Name", "caf\u00e9 \udcff"),)


def test_empty_body_round_trips() -> None:
    assert Entry.decode(sample(body=b"").encode()).body == b""


@pytest.mark.parametrize(
    "data",
    [b"", b"T4SR", b"not an entry at all, just bytes", b'{"json": true}', sample().encode()[:30]],
)
def test_foreign_or_truncated_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises(EntryError):
        Entry.decode(data)


def test_newer_format_is_rejected() -> None:
    data = bytearray(sample().encode())
    data[4] = 99
    with pytest.raises(EntryError, match="format 99"):
        Entry.decode(bytes(data))


def test_freshness_and_remaining_ttl() -> None:
    entry = sample(stored_at=1000.0, ttl=60)
    assert entry.is_fresh(1000.0)
    assert entry.remaining(1000.2) == 60
    assert entry.remaining(1030.0) == 30
    assert entry.is_fresh(1059.9)
    assert not entry.is_fresh(1060.0)
    assert entry.remaining(1063.0) == -3
    assert entry.age(1012.7) == 12


def test_vary_matching() -> None:
    entry = sample(vary=(("accept-language", "en"),))
    assert entry.matches_vary({"accept-language": "en"})
    assert not entry.matches_vary({"accept-language": "de"})
    assert not entry.matches_vary({"accept-language": None})
