"""Purges like Varnish's against a real sidecar and Tina4 app: by prefix (API and CLI), by host,
soft (stale-if-error still serves), the PURGE method with the admin token, a clear 400 for a
pattern, an answer that says what was done, and ``inspect``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin.helpers import TOKEN, run_cli
from tests.ops.conftest import admin, call, sidecar_for, wait_for
from tests.servers.demo_app import DemoApp

pytestmark = pytest.mark.e2e


def cached(base: str, *paths: str) -> None:
    for path in paths:
        call(base + path)
        assert call(base + path).headers["X-Cache"] == "HIT", path


def x_cache(base: str, path: str, host: str | None = None) -> str:
    return call(base + path, {"Host": host} if host else {}).headers["X-Cache"]


def test_prefix_host_pattern_and_purge_method(ops_app: DemoApp, tmp_path: Path) -> None:
    sidecar = sidecar_for(ops_app, tmp_path)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        cached(base, "/news/a", "/news/b?x=1", "/docs/a")
        refused = admin(base, "purge", {"url": "/news/*"})
        assert refused.status == 400
        assert '{"prefix": "/news/"}' in refused.json()["error"]
        done = admin(base, "purge", {"prefix": "/news/"})
        assert done.status == 200
        assert done.json()["done"] == "every path under /news/ with every query string (any host): gone"  # type: ignore[index]
        assert [x_cache(base, p) for p in ("/news/a", "/news/b?x=1", "/docs/a")] == ["MISS", "MISS", "HIT"]

        cli = run_cli("purge", "--prefix", "/docs/", "--admin", base, "--token", TOKEN, cwd=tmp_path)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.startswith("purged prefix /docs/")
        assert x_cache(base, "/docs/a") == "MISS"

        for host in ("a.example", "b.example"):
            x_cache(base, "/news/h", host)
            assert x_cache(base, "/news/h", host) == "HIT"
        assert admin(base, "purge", {"host": "a.example"}).status == 200
        assert [x_cache(base, "/news/h", "a.example"), x_cache(base, "/news/h", "b.example")] == [
            "MISS",
            "HIT",
        ]

        cached(base, "/news/p")
        denied = call(base + "/news/p", method="PURGE")
        assert denied.status in (401, 404)
        assert x_cache(base, "/news/p") == "HIT"
        purged = call(base + "/news/p", {"Authorization": f"Bearer {TOKEN}"}, method="PURGE")
        assert purged.status == 200
        assert x_cache(base, "/news/p") == "MISS"

        shown = admin(base, "inspect?url=/news/p&host=127.0.0.1:" + str(sidecar.port)).json()
        assert isinstance(shown, dict)
        assert (shown["cached"], shown["state"], shown["status"], shown["rule"]) == (
            True,
            "fresh",
            200,
            "/news/{name}",
        )
        assert 0 < shown["ttl_left"] <= 300
        assert shown["size"] > 0
        assert admin(base, "inspect?url=/news/never").status == 404
        host = f"127.0.0.1:{sidecar.port}"
        out = run_cli("inspect", "/news/p", "--host", host, "--admin", base, "--token", TOKEN, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "state: fresh" in out.stdout
    finally:
        sidecar.stop()


def test_soft_purge_keeps_serving_while_the_app_is_down(tmp_path: Path) -> None:
    from tests.ops.conftest import OPS_APP
    from tests.servers.demo_app import start_tina4_script

    app = start_tina4_script(OPS_APP, tmp_path / "app")
    sidecar = sidecar_for(app, tmp_path)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        cached(base, "/news/soft", "/news/hard")
        assert admin(base, "purge", {"url": "/news/soft", "soft": True}).status == 200
        assert admin(base, "purge", {"url": "/news/hard"}).status == 200
        app.stop()
        stale = call(base + "/news/soft")
        assert stale.status == 200
        assert "fwd=stale" in stale.headers["Cache-Status"]
        assert call(base + "/news/hard").status == 502  # a hard purge leaves nothing to serve
        app.start()
        assert wait_for(lambda: call(base + "/news/soft").headers.get("X-Cache") == "MISS", 10)
    finally:
        sidecar.stop()
        app.stop()
