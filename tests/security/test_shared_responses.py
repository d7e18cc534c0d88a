"""No user's response reaches another, and no attacker's content is stored under a victim's URL:
the findings of the security review, each on both transports, against a real Tina4 app."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from tests.security.conftest import SECOND_LINES_TESTED, Stack, get, one, raw


def unique(stack: Stack, name: str) -> str:
    return f"{name}-{stack.transport}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("second", SECOND_LINES_TESTED)
def test_a_later_field_line_that_forbids_sharing_is_obeyed(stack: Stack, second: str) -> None:
    """The site's middleware says ``public, max-age=60``, the handler adds a second line."""
    path = f"/sec/split/{unique(stack, second)}?second={second}"
    private = one(stack.port, get(path, "X-Api-Key: secret-key-of-alice"))
    anonymous = [one(stack.port, get(path)) for _ in range(2)]

    assert private.json()["user"] == "secret-key-of-alice"
    assert "stored" not in (private.header("Cache-Status") or "")
    assert [reply.json()["user"] for reply in anonymous] == ["anonymous", "anonymous"]
    assert [reply.header("X-Cache") for reply in anonymous] == ["MISS", "HIT"]  # the anonymous page is cached
    assert private.header("Surrogate-Control") is None  # the surrogate's own header stays here


def test_a_repeated_varied_header_never_poisons_the_single_value_variant(stack: Stack) -> None:
    path = f"/sec/lang?v={unique(stack, 'lang')}"
    attack = one(stack.port, get(path, "Accept-Language: en", "Accept-Language: <script>alert(1)</script>"))
    victims = [one(stack.port, get(path, "Accept-Language: en")) for _ in range(2)]

    assert attack.body == b"<p><script>alert(1)</script></p>"  # Tina4 reads the last line
    assert [reply.body for reply in victims] == [b"<p>en</p>", b"<p>en</p>"]
    assert [reply.header("X-Cache") for reply in victims] == ["MISS", "HIT"]
    again = one(stack.port, get(path, "Accept-Language: en", "Accept-Language: <script>alert(1)</script>"))
    assert again.body == attack.body  # the two-line variant is keyed on both lines


def test_ignored_query_parameters_never_reach_the_app_on_a_cached_route(stack: Stack) -> None:
    page = unique(stack, "utm")
    attack = one(stack.port, get(f"/sec/utm?page={page}&utm_campaign=%3Cscript%3E&fbclid=x"))
    victim = one(stack.port, get(f"/sec/utm?page={page}"))

    assert attack.json() == {"campaign": None, "query": {"page": page}}
    assert victim.json() == {"campaign": None, "query": {"page": page}}
    assert victim.header("X-Cache") == "HIT"


@pytest.mark.parametrize(
    "host", ["shop.example/c", "shop.example c", "user@shop.example", "shop.example:99999", "[::1"]
)
def test_a_host_that_is_not_an_authority_is_refused(stack: Stack, host: str) -> None:
    assert one(stack.port, get("/sec/host/echo", host=host)).status == 400


def test_two_host_lines_are_refused(stack: Stack) -> None:
    payload = b"GET /sec/host HTTP/1.1\r\nHost: shop.example\r\nHost: evil.example\r\n\r\n"
    assert one(stack.port, payload).status == 400


def test_host_case_and_default_port_share_one_entry(stack: Stack) -> None:
    path = f"/sec/host?v={unique(stack, 'host')}"
    first = one(stack.port, get(path, host="Shop.Example:80"))
    second = one(stack.port, get(path, host="shop.example"))

    assert first.json()["host"] == "shop.example"  # what the app sees is what the key holds
    assert second.header("X-Cache") == "HIT"
    assert second.body == first.body


def calls(stack: Stack) -> int:
    with urllib.request.urlopen(f"{stack.app.url}/sec/calls", timeout=5) as reply:
        return int(json.loads(reply.read())["me"])


def test_connection_close_is_the_last_request_on_the_connection(stack: Stack) -> None:
    before = calls(stack)
    payload = get("/sec/me", "Connection: close") + get("/sec/me")

    replies = raw(stack.port, payload, count=2)

    assert len(replies) == 1
    assert replies[0].header("Connection") == "close"
    assert calls(stack) == before + 1  # the pipelined request after it never reached the app


def test_a_cached_hit_with_connection_close_closes_too(stack: Stack) -> None:
    path = f"/sec/host?v={unique(stack, 'close')}"
    one(stack.port, get(path))
    replies = raw(stack.port, get(path, "Connection: close") + get(path), count=2)

    assert [reply.header("X-Cache") for reply in replies] == ["HIT"]
    assert replies[0].header("Connection") == "close"


def test_options_does_not_invalidate(stack: Stack) -> None:
    path = f"/sec/host?v={unique(stack, 'options')}"
    one(stack.port, get(path))
    options = one(stack.port, f"OPTIONS {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode())
    after = one(stack.port, get(path))

    assert options.status < 500
    assert after.header("X-Cache") == "HIT"


def test_the_caches_own_headers_never_reach_clients(stack: Stack) -> None:
    reply = one(stack.port, get("/sec/tagged"))
    assert reply.body == b"tagged, not cached"
    assert reply.header("X-Cache-Tags") is None
    assert reply.header("Surrogate-Control") is None


def test_the_manifest_is_not_served_to_clients(stack: Stack) -> None:
    assert one(stack.port, get("/__tina4/cache-manifest")).status == 404


def test_no_server_header_of_the_sidecars_own(stack: Stack) -> None:
    for path in ("/sec/me", f"/sec/host?v={unique(stack, 'server')}", "/nowhere"):
        server = one(stack.port, get(path)).header("Server") or ""
        assert "aiohttp" not in server
        assert "Python" not in server


def test_a_304_never_brings_a_cookie_or_privacy_into_the_shared_entry(stack: Stack) -> None:
    path = f"/sec/revalidate?v={unique(stack, 'rev')}"
    set_mode("plain", stack)
    first = one(stack.port, get(path))
    assert first.header("X-Cache") == "MISS"
    try:
        set_mode("cookie", stack)
        time.sleep(1.2)  # the rule's TTL is 1 s: the next request revalidates with the app
        revalidated = one(stack.port, get(path))
        later = [one(stack.port, get(path)) for _ in range(2)]
    finally:
        set_mode("plain", stack)

    assert revalidated.header("Set-Cookie") == "session=third-user"  # its own client only
    for reply in later:
        assert reply.header("Set-Cookie") is None
        assert reply.status == 200


def set_mode(mode: str, stack: Stack) -> None:
    request = urllib.request.Request(
        f"{stack.app.url}/sec/revalidate-mode",
        data=json.dumps({"mode": mode}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200
