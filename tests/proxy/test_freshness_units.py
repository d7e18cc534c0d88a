"""The arithmetic behind stale serving, jitter, early refresh, Accept-Encoding and conditionals."""

from __future__ import annotations

import random

import pytest

from tina4_sidecar.proxy.http.conditional import body_etag, etag_matches, not_modified
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.freshness import (
    State,
    jittered,
    should_refresh_early,
    stale_windows,
    state_of,
    storage_ttl,
)
from tina4_sidecar.proxy.http.variants import (
    decode_index,
    encode_index,
    normalize_accept_encoding,
    variant_key,
)


def entry(**fields: object) -> Entry:
    values: dict[str, object] = {"status": 200, "headers": (), "body": b"x", "stored_at": 1000.0, "ttl": 60}
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def test_states_follow_the_windows() -> None:
    e = entry(stale_while_revalidate=10, stale_if_error=30)
    assert state_of(e, 1059.9) is State.FRESH
    assert state_of(e, 1060.0) is State.STALE_REVALIDATE
    assert state_of(e, 1069.9) is State.STALE_REVALIDATE
    assert state_of(e, 1070.0) is State.STALE_IF_ERROR
    assert state_of(e, 1090.0) is State.DEAD
    assert storage_ttl(e) == 90


def test_response_directives_win_over_the_rule() -> None:
    assert stale_windows([("Cache-Control", "max-age=5, stale-if-error=600")], 1, 2) == (1, 600)
    assert stale_windows([("Cache-Control", 'stale-while-revalidate="30"')], 1, 2) == (30, 2)
    assert stale_windows([("Cache-Control", "stale-if-error=soon")], 1, 2) == (1, 2)
    assert stale_windows([("Cache-Control", "public"), ("Cache-Control", "stale-if-error=7")], 1, 2) == (1, 7)
    assert stale_windows([], 1, 2) == (1, 2)


def test_jitter_only_shortens_and_stays_within_the_fraction() -> None:
    rng = random.Random(1)
    values = {jittered(300, 0.1, rng) for _ in range(500)}
    assert min(values) >= 270
    assert max(values) <= 300
    assert len(values) > 10  # spread, not one value
    assert jittered(300, 0.0) == 300


def test_early_refresh_probability_rises_towards_expiry() -> None:
    rng = random.Random(7)
    e = entry(fetch_seconds=0.5)

    def rate(now: float) -> float:
        return sum(should_refresh_early(e, now, 1.0, rng) for _ in range(2000)) / 2000

    far, near, nearer = rate(1000.0), rate(1058.0), rate(1059.8)
    assert far == 0.0
    assert 0.0 < near < nearer < 1.0
    assert not should_refresh_early(entry(fetch_seconds=0.5), 1059.9, 0.0, rng)  # beta 0 turns it off


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip, deflate", "gzip"),
        ("deflate;q=0.5, gzip;q=1.0", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("identity", "identity"),
        (None, "identity"),
        ("*", "identity"),
    ],
)
def test_accept_encoding_normalisation(header: str | None, expected: str) -> None:
    assert normalize_accept_encoding(header) == expected


def test_vary_index_round_trip_and_variant_keys() -> None:
    assert decode_index(encode_index(["accept-language", "accept-encoding"])) == [
        "accept-encoding",
        "accept-language",
    ]
    assert decode_index(b"T4SR...an entry") is None
    assert variant_key("K", ()) == "K"
    assert variant_key("K", (("accept-language", "de"),)) != variant_key("K", (("accept-language", "en"),))


def test_conditionals() -> None:
    etag = body_etag(b"hello")
    assert etag_matches(etag, etag)
    assert etag_matches(f'W/{etag}, "other"', etag)
    assert etag_matches("*", etag)
    assert not etag_matches('"other"', etag)
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert not_modified({"If-Modified-Since": modified}, None, modified)
    assert not not_modified({"If-Modified-Since": "Wed, 21 Oct 2015 07:27:00 GMT"}, None, modified)
    assert not not_modified({"If-None-Match": '"x"', "If-Modified-Since": modified}, etag, modified)
    assert not not_modified({"If-Modified-Since": "garbage"}, None, modified)
