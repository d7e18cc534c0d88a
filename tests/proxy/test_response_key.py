"""Cache keys: the spec's method + full URL, query sorted, ignored parameters dropped."""

import pytest

from tina4_sidecar.store.response_key import QueryFilter, response_key


def key(method: str, path: str, query: str = "", ignored: tuple[str, ...] = ()) -> str:
    return response_key(method, "http", "Example.com:7145", path, QueryFilter(ignored).canonical(query))


def test_method_scheme_host_path_and_query_are_in_the_key() -> None:
    assert key("GET", "/api/products", "page=1") == "GET http://example.com:7145/api/products?page=1"


def test_pages_are_cached_apart() -> None:
    assert key("GET", "/api/products", "page=1") != key("GET", "/api/products", "page=2")


def test_parameter_order_does_not_matter() -> None:
    assert key("GET", "/p", "b=2&a=1") == key("GET", "/p", "a=1&b=2")


def test_repeated_names_keep_their_value_order() -> None:
    # ?tag=x&tag=y may mean a list in that order: it must not share an entry with ?tag=y&tag=x.
    assert key("GET", "/p", "tag=x&z=1&tag=y") == key("GET", "/p", "z=1&tag=x&tag=y")
    assert key("GET", "/p", "tag=x&tag=y") != key("GET", "/p", "tag=y&tag=x")


def test_head_uses_the_get_key() -> None:
    assert key("HEAD", "/p", "a=1") == key("GET", "/p", "a=1")


def test_no_query_and_empty_query_are_the_same() -> None:
    assert key("GET", "/p", "") == key("GET", "/p", "&") == "GET http://example.com:7145/p"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("utm_source=x&page=1", "page=1"),
        ("page=1&utm_medium=y&fbclid=z", "page=1"),
        ("utm%5Fsource=x&page=1", "page=1"),  # an encoded name is still the same name
        ("butm_source=1", "butm_source=1"),  # wildcards match whole names only
    ],
)
def test_ignored_parameters_are_dropped(query: str, expected: str) -> None:
    assert QueryFilter(["utm_*", "fbclid"]).canonical(query) == expected


def test_values_keep_their_encoding() -> None:
    assert QueryFilter().canonical("q=a%20b&p=%2F") == "p=%2F&q=a%20b"


def test_raw_path_encoding_is_kept_apart() -> None:
    assert key("GET", "/a%2Fb") != key("GET", "/a/b")
