"""Cookies that identify nobody (TINA4_SIDECAR_ANONYMOUS_COOKIES) against a real Tina4 app that
signs users in with a session cookie, on both transports: analytics cookies no longer stop a
page from being cached, and a signed-in user's page is never shared, with or without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ops.conftest import call, sidecar_for
from tests.servers.demo_app import DemoApp

pytestmark = pytest.mark.e2e

ANALYTICS = "_ga=GA1.1.123.456; _gid=GA1.1.789; _fbp=fb.1.2.3; _ga_ABC123=GS1.1.x"


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_analytics_cookies_are_cached_and_a_signed_in_page_is_never_shared(
    ops_app: DemoApp, tmp_path: Path, fast_path: str
) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_FAST_PATH": fast_path})
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        login = call(f"{base}/login?user=alice")
        session = login.headers["Set-Cookie"].split(";")[0]
        assert session == "tina4_session=alice"
        query = f"?run={fast_path}"

        # A signed-in user first, carrying analytics cookies too: answered by the app, never stored.
        for _ in range(3):
            alice = call(f"{base}/page{query}", {"Cookie": f"{ANALYTICS}; {session}"})
            assert alice.json()["hello"] == "alice"
            assert alice.headers.get("X-Cache") != "HIT"
            assert "fwd=bypass" in alice.headers["Cache-Status"]

        # A visitor with only analytics cookies: cached like a visitor without cookies.
        first = call(f"{base}/page{query}", {"Cookie": ANALYTICS})
        second = call(f"{base}/page{query}", {"Cookie": "_ga=GA1.1.999; _gcl_au=1.1.2"})
        plain = call(f"{base}/page{query}")
        assert [r.json()["hello"] for r in (first, second, plain)] == ["guest"] * 3
        assert [first.headers["X-Cache"], second.headers["X-Cache"], plain.headers["X-Cache"]] == [
            "MISS", "HIT", "HIT"
        ]  # fmt: skip

        # With the guest's page cached, a signed-in user still gets their own page, every time.
        for cookie in (session, f"{ANALYTICS}; {session}", f"{session}; _ga=1", "tina4_session=bob"):
            mine = call(f"{base}/page{query}", {"Cookie": cookie})
            assert mine.json()["hello"] == cookie.split("tina4_session=")[1].split(";")[0]
            assert mine.headers.get("X-Cache") != "HIT"
        # A name that merely starts like an analytics cookie identifies somebody: it bypasses.
        trap = call(f"{base}/page{query}", {"Cookie": "_gateway_session=x; _ga=1"})
        assert "fwd=bypass" in trap.headers["Cache-Status"]
        # And the guest page never became anybody's.
        assert call(f"{base}/page{query}", {"Cookie": ANALYTICS}).json()["hello"] == "guest"
    finally:
        sidecar.stop()


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_strip_removes_anonymous_cookies_before_the_app(
    ops_app: DemoApp, tmp_path: Path, fast_path: str
) -> None:
    sidecar = sidecar_for(
        ops_app,
        tmp_path,
        {"TINA4_SIDECAR_FAST_PATH": fast_path, "TINA4_SIDECAR_STRIP_ANONYMOUS_COOKIES": "true"},
    )
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        seen = call(f"{base}/headers", {"Cookie": f"{ANALYTICS}; tina4_session=carol"}).json()
        assert isinstance(seen, dict)
        assert seen["cookie"] == "tina4_session=carol"
        only = call(f"{base}/headers", {"Cookie": ANALYTICS}).json()
        assert isinstance(only, dict)
        assert "cookie" not in only
    finally:
        sidecar.stop()


def test_without_the_setting_every_cookie_bypasses(ops_app: DemoApp, tmp_path: Path) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_ANONYMOUS_COOKIES": ""})
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        for _ in range(2):
            assert "fwd=bypass" in call(f"{base}/page?off", {"Cookie": "_ga=1"}).headers["Cache-Status"]
    finally:
        sidecar.stop()
