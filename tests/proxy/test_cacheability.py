"""The safety rules: which requests bypass, which responses are never stored."""

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.cacheability import bypass_reason, unstorable_reason
from tina4_sidecar.proxy.http.request_head import RequestHead

RULE = Rule(method="GET", path="/api/products", cache=True, ttl=60, source="test")
PUBLIC = Rule(method="GET", path="/api/products", cache=True, ttl=60, public=True, source="test")


def head(method: str = "GET", **headers: str) -> RequestHead:
    hdrs = CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))
    return RequestHead(method, "http", "h", "/api/products", "/api/products", "", hdrs)


def resp_headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_plain_get_and_head_may_use_the_cache() -> None:
    assert bypass_reason(head("GET"), RULE) is None
    assert bypass_reason(head("HEAD"), RULE) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_bypass(method: str) -> None:
    assert bypass_reason(head(method), RULE) == "method"


def test_credentials_bypass_unless_the_rule_is_public() -> None:
    assert bypass_reason(head(Authorization="Bearer x"), RULE) == "authorization"
    assert bypass_reason(head(Cookie="session=1"), RULE) == "cookie"
    assert bypass_reason(head(Cookie="session=1", Authorization="Bearer x"), PUBLIC) is None


def test_200_is_storable() -> None:
    assert unstorable_reason(200, resp_headers(("Content-Type", "text/html")), RULE) is None


@pytest.mark.parametrize("status", [201, 204, 301, 404, 500])
def test_other_statuses_are_not_stored_by_default(status: int) -> None:
    assert unstorable_reason(status, resp_headers(), RULE) == "status"


def test_rule_status_list_is_honoured() -> None:
    rule = Rule(method="GET", path="/x", cache=True, ttl=60, statuses=(200, 404), source="test")
    assert unstorable_reason(404, resp_headers(), rule) is None


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ((("Set-Cookie", "a=b"),), "set-cookie"),
        ((("set-cookie", "a=b"),), "set-cookie"),
        ((("Cache-Control", "private"),), "cache-control"),
        ((("Cache-Control", "public, no-store"),), "cache-control"),
        ((("Cache-Control", 'no-cache="Set-Cookie"'),), "cache-control"),
        ((("Cache-Control", "max-age=0, PRIVATE"),), "cache-control"),
        ((("Vary", "*"),), "vary-star"),
        ((("Vary", "Accept-Language"), ("Vary", "*")), "vary-star"),
    ],
)
def test_never_store(pairs: tuple[tuple[str, str], ...], reason: str) -> None:
    assert unstorable_reason(200, resp_headers(*pairs), RULE) == reason


def test_harmless_cache_control_is_storable() -> None:
    assert unstorable_reason(200, resp_headers(("Cache-Control", "public, max-age=60")), RULE) is None


def test_directive_parsing() -> None:
    parsed = fields.cache_control([("Cache-Control", " Max-Age=5 , no-transform,")])
    assert set(parsed.arguments) == {"max-age", "no-transform"}
    assert parsed.seconds("max-age") == 5
