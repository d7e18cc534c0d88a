"""The headers of answers from the cache, 304 updates, and variants of repeated request headers."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cache_headers import Kind
from tina4_sidecar.proxy.http.conditional import freshened
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.variants import normalize_accept_encoding, request_values

STORED = 1000.0
HEADERS = (
    ("Content-Type", "text/html"),
    ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ("Cache-Status", "inner; hit"),
    ("X-Cache", "HIT"),
    ("Age", "99"),
    ("Content-Length", "1"),
    ("Cache-Status", "edge; fwd=miss"),
)


def entry(**fields: object) -> Entry:
    values: dict[str, object] = {
        "status": 200,
        "headers": HEADERS,
        "body": b"x",
        "stored_at": STORED,
        "ttl": 60,
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def test_replayed_keeps_the_apps_headers_and_date_and_joins_every_inner_cache_status() -> None:
    replayed = ch.replayed(entry())
    assert replayed.headers == [
        ("Content-Type", "text/html"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("Content-Length", "1"),
    ]
    assert replayed.inner_status == "inner; hit, edge; fwd=miss"
    assert replayed.dated


def test_replayed_gives_the_body_its_length_where_the_app_put_it() -> None:
    moved = entry(headers=(("Content-Length", "999"), ("X-A", "1"), ("Content-Length", "5")), body=b"abc")
    assert ch.replayed(moved).headers == [("Content-Length", "3"), ("X-A", "1")]
    assert ch.replayed(entry(headers=(("X-A", "1"),), body=b"ab")).headers == [
        ("X-A", "1"),
        ("Content-Length", "2"),
    ]


@pytest.mark.parametrize(
    ("kind", "now", "expected"),
    [
        (Kind.HIT, STORED + 10, [("X-Cache", "HIT"), ("X-Cache-TTL", "50"), ("Age", "10"),
                                 ("Cache-Status", "in, s; hit; ttl=50")]),
        (Kind.STALE, STORED + 63, [("X-Cache", "STALE"), ("X-Cache-TTL", "0"), ("Age", "63"),
                                   ("Cache-Status", "in, s; hit; ttl=-3")]),
        (Kind.COLLAPSED, STORED, [("X-Cache", "MISS"), ("X-Cache-TTL", "60"),
                                  ("Cache-Status", "in, s; fwd=uri-miss; fwd-status=200; collapsed")]),
        (Kind.REVALIDATED, STORED, [("X-Cache", "MISS"), ("X-Cache-TTL", "60"),
                                    ("Cache-Status", "in, s; fwd=stale; fwd-status=304; stored")]),
    ],
)  # fmt: skip
def test_answer_headers(kind: Kind, now: float, expected: list[tuple[str, str]]) -> None:
    assert ch.answer_headers(kind, entry(), now, "s", "in") == expected


def test_stale_after_an_error_names_the_apps_status() -> None:
    headers = ch.answer_headers(Kind.STALE_ERROR, entry(), STORED + 61, "s", None, error_status=503)
    assert headers[-1] == ("Cache-Status", "s; fwd=stale; fwd-status=503; ttl=-1")


def test_an_aged_response_says_its_age_even_when_collapsed() -> None:
    headers = dict(ch.answer_headers(Kind.COLLAPSED, entry(initial_age=30), STORED + 2, "s", None))
    assert headers["Age"] == "32"


def test_miss_headers_append_after_every_inner_member() -> None:
    upstream = [("Cache-Status", "a"), ("X", "1"), ("cache-status", "b")]
    assert ch.miss_headers(upstream, "s", 200, 60) == [
        ("X-Cache", "MISS"),
        ("X-Cache-TTL", "60"),
        ("Cache-Status", "a, b, s; fwd=uri-miss; fwd-status=200; stored"),
    ]
    assert ch.miss_headers([], "s", 200, None)[-1] == ("Cache-Status", "s; fwd=uri-miss; fwd-status=200")


def test_a_304_replaces_whole_fields_but_never_the_framing() -> None:
    stored = [
        ("ETag", '"a"'),
        ("X-A", "1"),
        ("X-A", "2"),
        ("Content-Length", "10"),
        ("Content-Encoding", "gzip"),
    ]
    update = [("X-A", "3"), ("Content-Length", "0"), ("Content-Encoding", "br"), ("Set-Cookie", "s=1")]
    merged = freshened(stored, update)
    assert merged == [
        ("ETag", '"a"'),
        ("Content-Length", "10"),
        ("Content-Encoding", "gzip"),
        ("X-A", "3"),
        ("Set-Cookie", "s=1"),
    ]  # the Set-Cookie is there for the storability check to refuse, never to be stored


def request(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_a_repeated_varied_header_is_keyed_on_all_its_lines() -> None:
    single = request_values(["accept-language"], request(("Accept-Language", "en")))
    repeated = request_values(
        ["accept-language"], request(("Accept-Language", "en"), ("Accept-Language", "<script>x</script>"))
    )
    assert single == (("accept-language", "en"),)
    assert repeated == (("accept-language", "en, <script>x</script>"),)
    assert request_values(["accept-language"], request()) == (("accept-language", None),)


@pytest.mark.parametrize(
    ("value", "coding"),
    [("gzip;q=0.0", "identity"), ("gzip;q=0", "identity"), ("gzip; q=0.000, br", "br"),
     ("gzip;q=0.001", "gzip"), ("br;q=x, deflate", "deflate"), ("GZIP", "gzip"), ("br;q=1.5", "identity"),
     ("", "identity")],
)  # fmt: skip
def test_accept_encoding_q_values(value: str, coding: str) -> None:
    assert normalize_accept_encoding(value) == coding
