"""RFC 9111 section 4.4: what an unsafe request invalidates."""

from __future__ import annotations

import pytest

from tina4_sidecar.proxy.http.invalidation import invalidated_targets, invalidates


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("status", [200, 204, 302])
def test_unsafe_methods_with_non_error_answers_invalidate(method: str, status: int) -> None:
    assert invalidates(method, status)


@pytest.mark.parametrize(("method", "status"), [("OPTIONS", 204), ("GET", 200), ("HEAD", 200), ("TRACE", 200),
                                                 ("POST", 404), ("DELETE", 500), ("PUT", 101)])  # fmt: skip
def test_safe_methods_and_errors_invalidate_nothing(method: str, status: int) -> None:
    assert not invalidates(method, status)
    assert invalidated_targets(method, status, "h", "/a", "", []) == []


def test_location_and_content_location_on_the_same_host_only() -> None:
    headers = [
        ("Location", "/created/7?x=1"),
        ("Content-Location", "http://H/other"),
        ("Location", "http://evil.example/victim"),
        ("Content-Location", "relative"),
    ]
    targets = invalidated_targets("POST", 201, "h", "/items/", "a=1", headers)
    assert targets == [("/items/", "a=1"), ("/created/7", "x=1"), ("/other", ""), ("/items/relative", "")]
