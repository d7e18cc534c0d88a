"""Header rewriting for forwarding: hop-by-hop dropped both ways, X-Forwarded-* set."""

from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http.forward_headers import end_to_end, to_upstream


def proxy(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_hop_by_hop_and_connection_named_headers_are_dropped() -> None:
    headers = proxy(
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("X-Secret-Hop", "1"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    )
    out = end_to_end(headers)
    assert list(out.items()) == [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_forwarded_headers_are_added() -> None:
    out = to_upstream(proxy(("Host", "shop.example"), ("Accept", "*/*")), "10.0.0.9", "http", "shop.example")
    assert out["X-Forwarded-For"] == "10.0.0.9"
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "shop.example"
    assert out["Host"] == "shop.example"


def test_forwarded_for_is_appended_but_host_and_proto_are_ours() -> None:
    headers = proxy(
        ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")
    )
    out = to_upstream(headers, "10.0.0.9", "http", "shop.example")
    assert out["X-Forwarded-For"] == "1.2.3.4, 10.0.0.9"
    assert out.getall("X-Forwarded-Host") == ["shop.example"]
    assert out.getall("X-Forwarded-Proto") == ["http"]


def test_expect_is_not_forwarded() -> None:
    assert "Expect" not in to_upstream(proxy(("Expect", "100-continue")), None, "http", "h")
