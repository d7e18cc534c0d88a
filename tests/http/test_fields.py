"""Field parsing from every line: lists, quoted strings, directives, delta-seconds."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http import fields


def multi(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_lines_come_from_every_line_and_both_shapes() -> None:
    pairs = (("Cache-Control", "public, max-age=60"), ("X-A", "1"), ("cache-control", "private"))
    assert fields.lines(multi(*pairs), "Cache-Control") == ["public, max-age=60", "private"]
    assert fields.lines(pairs, "CACHE-CONTROL") == ["public, max-age=60", "private"]
    assert fields.items(pairs, "Cache-Control") == ["public", "max-age=60", "private"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b", ["a", "b"]),
        (' a ,, "x, y" , b', ["a", '"x, y"', "b"]),
        ('ext="max-age=3600", max-age=1', ['ext="max-age=3600"', "max-age=1"]),
        ('x="a\\"b, c", d', ['x="a\\"b, c"', "d"]),
        ("", []),
        (",,", []),
    ],
)
def test_split_list_keeps_quoted_commas(value: str, expected: list[str]) -> None:
    assert fields.split_list(value) == expected


def test_directives_from_all_lines_first_wins_and_repeats_are_known() -> None:
    parsed = fields.cache_control([("Cache-Control", "max-age=1800, Max-Age=1"), ("Cache-Control", "PUBLIC")])
    assert parsed.arguments == {"max-age": "1800", "public": None}
    assert parsed.repeated == {"max-age"}
    same = fields.cache_control([("Cache-Control", "max-age=5"), ("Cache-Control", "max-age=5")])
    assert same.repeated == frozenset()


def test_quoted_arguments_and_qualified_names() -> None:
    parsed = fields.cache_control([("Cache-Control", 'max-age="3600", no-cache="Set-Cookie, X-A"')])
    assert parsed.seconds("max-age") == 3600
    assert parsed.field_names("no-cache") == {"set-cookie", "x-a"}
    assert parsed.argument("no-cache") == "Set-Cookie, X-A"


@pytest.mark.parametrize(
    ("argument", "seconds"),
    [("0", 0), ("0060", 60), ("99999999999", 2**31), ("-1", None), ("1.5", None), ("a1", None), ("", None),
     (None, None), ("٣", None)],
)  # fmt: skip
def test_delta_seconds(argument: str | None, seconds: int | None) -> None:
    assert fields.delta_seconds(argument) == seconds


def test_invalid_directive_argument() -> None:
    parsed = fields.cache_control([("Cache-Control", "max-age=abc, s-maxage")])
    assert parsed.invalid("max-age")
    assert parsed.invalid("s-maxage")
    assert not parsed.invalid("no-store")


def test_vary_pragma_and_surrogate_control() -> None:
    headers = [
        ("Vary", "Accept-Language"),
        ("Vary", "accept-encoding, Accept-Language"),
        ("Pragma", "x, no-cache"),
    ]
    assert fields.vary(headers) == ["accept-language", "accept-encoding"]
    assert fields.pragma_no_cache(headers)
    assert "no-store" in fields.surrogate_control(
        [("Surrogate-Control", "max-age=5"), ("Surrogate-Control", "no-store")]
    )


def test_unquote() -> None:
    assert fields.unquote('"a\\"b"') == 'a"b'
    assert fields.unquote("plain") == "plain"
    assert fields.unquote('"') == '"'
