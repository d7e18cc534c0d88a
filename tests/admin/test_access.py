"""Who may use the admin API on the public listener: health and ready for anyone, the rest with
the token (401 without it or with a wrong one), nothing at all when no token is configured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.admin.helpers import TOKEN, admin_call
from tina4_sidecar.config import CacheSettings, ConfigError, SidecarSettings, load_settings
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.server import start_sidecar

PRODUCTS = Rule(method="GET", path="/products", cache=True, ttl=300, source="test")
PROTECTED = [("stats", "GET", None), ("metrics", "GET", None), ("purge", "POST", {"all": True})]


def product_routes() -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/products")
    async def products(_: web.Request) -> web.Response:
        return web.Response(text="products")

    return routes


async def test_health_and_ready_answer_anyone(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS], product_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")
    health = await admin_call(client_session, base, "health")
    assert (health.status, health.body) == (200, {"status": "ok"})
    assert health.headers["Cache-Control"] == "no-store"
    ready = await admin_call(client_session, base, "ready")
    assert (ready.status, ready.body["status"], ready.body["store"], ready.body["app"]) == (
        200,
        "ok",
        "ok",
        "ok",
    )
    head = await admin_call(client_session, base, "health", method="HEAD")
    assert head.status == 200


@pytest.mark.parametrize(("name", "method", "body"), PROTECTED)
async def test_protected_endpoints_need_the_token(
    make_proxy: Callable[..., Any],
    client_session: aiohttp.ClientSession,
    name: str,
    method: str,
    body: Any,
) -> None:
    proxy = await make_proxy([PRODUCTS], product_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")

    missing = await admin_call(client_session, base, name, method=method, body=body)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="tina4-sidecar"'
    assert "admin token required" in missing.body["error"]

    wrong = await admin_call(client_session, base, name, token=TOKEN + "x", method=method, body=body)
    assert wrong.status == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert wrong.body == {"error": "invalid admin token", "status": 401}

    basic = await admin_call(
        client_session, base, name, method=method, body=body, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert basic.status == 401

    right = await admin_call(client_session, base, name, token=TOKEN, method=method, body=body)
    assert right.status == 200
    assert proxy.seen == []  # nothing under the prefix reached the app


async def test_without_a_token_the_admin_api_is_off_on_the_public_listener(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS], product_routes(), admin_token=None)
    base = proxy.url("").rstrip("/")
    for name, method, body in PROTECTED:
        answer = await admin_call(client_session, base, name, token=TOKEN, method=method, body=body)
        assert answer.status == 404
        assert "TINA4_SIDECAR_ADMIN_TOKEN" in answer.body["error"]
    assert (await admin_call(client_session, base, "health")).status == 200
    assert (await admin_call(client_session, base, "ready")).status == 200
    assert proxy.seen == []


async def test_unknown_paths_and_wrong_methods(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS], product_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")
    for name in ("nope", "stats/", "", "health/extra"):
        unknown = await admin_call(client_session, base, name, token=TOKEN)
        assert unknown.status == 404, name
        assert unknown.body["status"] == 404
    posted = await admin_call(client_session, base, "stats", token=TOKEN, method="POST")
    assert posted.status == 405
    assert posted.headers["Allow"] == "GET, HEAD"
    got = await admin_call(client_session, base, "purge", token=TOKEN)
    assert (got.status, got.headers["Allow"]) == (405, "POST")
    deleted = await admin_call(client_session, base, "health", method="DELETE")
    assert deleted.status == 405
    assert proxy.seen == []


async def test_the_prefix_is_configurable(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS], product_routes(), admin_token=TOKEN, admin_prefix="/_ops/side/")
    base = proxy.url("").rstrip("/")
    ours = await admin_call(client_session, base, "stats", token=TOKEN, prefix="/_ops/side/")
    assert ours.status == 200
    assert ours.body["manifest"]["rules"] == 1
    # The default prefix is an ordinary path now: forwarded to the app (which has no such route).
    forwarded = await admin_call(client_session, base, "stats", token=TOKEN)
    assert forwarded.status == 404
    assert [request.path for request in proxy.seen] == ["/__sidecar/stats"]


async def test_a_short_token_stops_the_start_without_showing_it(tmp_path: Path) -> None:
    settings = SidecarSettings(upstream="http://127.0.0.1:9", admin_token="guessable-123")
    with pytest.raises(ConfigError) as raised:
        await start_sidecar(settings, CacheSettings(cache_dir=tmp_path))
    assert "TINA4_SIDECAR_ADMIN_TOKEN: must be at least 16 characters" in str(raised.value)
    assert "guessable" not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"admin_prefix": "/__sidecar"}, "TINA4_SIDECAR_ADMIN_PREFIX"),
        ({"admin_prefix": "__sidecar/"}, "TINA4_SIDECAR_ADMIN_PREFIX"),
        ({"admin_prefix": "/"}, "TINA4_SIDECAR_ADMIN_PREFIX"),
        ({"admin_prefix": "/a b/"}, "TINA4_SIDECAR_ADMIN_PREFIX"),
        ({"admin_listen": "localhost"}, "TINA4_SIDECAR_ADMIN_LISTEN: expected HOST:PORT"),
        ({"admin_listen": "127.0.0.1:7145"}, "must differ from TINA4_SIDECAR_LISTEN"),
        ({"listen": "127.0.0.1:8000", "admin_listen": "0.0.0.0:8000"}, "must differ"),
    ],
)
def test_admin_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("TINA4_SIDECAR_LISTEN", raising=False)
    with pytest.raises(ConfigError, match=message):
        load_settings(SidecarSettings, _env_file=None, **overrides)


def test_admin_settings_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TINA4_SIDECAR_ADMIN_PREFIX", "TINA4_SIDECAR_ADMIN_TOKEN", "TINA4_SIDECAR_ADMIN_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings(SidecarSettings, _env_file=None)
    assert (defaults.admin_prefix, defaults.admin_token, defaults.admin_address) == (
        "/__sidecar/",
        None,
        None,
    )
    monkeypatch.setenv("TINA4_SIDECAR_ADMIN_TOKEN", "")  # set but empty, as compose files do: unset
    monkeypatch.setenv("TINA4_SIDECAR_ADMIN_LISTEN", "127.0.0.1:7150")
    monkeypatch.setenv("TINA4_SIDECAR_ADMIN_PREFIX", "/ops/")
    settings = load_settings(SidecarSettings, _env_file=None)
    assert (settings.admin_prefix, settings.admin_token) == ("/ops/", None)
    assert settings.admin_address == ("127.0.0.1", 7150)
    assert TOKEN not in repr(load_settings(SidecarSettings, _env_file=None, admin_token=TOKEN))
