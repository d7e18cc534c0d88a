"""The app's purges reach every sidecar in front of it on the default memory store, with no setting:
each sidecar announces itself on its manifest requests and the app delivers purges to its admin
API (client/purge.py, client/sidecars.py, proxy/control.py). Real Tina4 demo app (under uvicorn
with two workers: the worker that runs the handler need not be the one a sidecar asked), two
real sidecars, the chapter's /api/catalog?page=N."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from tests.servers.demo_app import start_demo_app
from tests.servers.sidecar import start_sidecar

PAGES = (1, 2, 3)


def get(port: int, path: str) -> tuple[str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers.get("X-Cache", ""), reply.read()


def app_purge(app_port: int, order: dict[str, object]) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{app_port}/api/kvstore/purge",
        data=json.dumps(order).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        return json.loads(reply.read())["purged"]


def warm(port: int) -> dict[int, bytes]:
    bodies = {}
    for page in PAGES:
        get(port, f"/api/catalog?page={page}")
        state, bodies[page] = get(port, f"/api/catalog?page={page}")
        assert state == "HIT"
    return bodies


def test_a_handlers_purge_route_removes_every_variant_on_every_sidecar(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", mode="uvicorn", workers=2)
    sidecars = []
    try:
        sidecars = [start_sidecar(app.port, tmp_path / f"sidecar-{n}") for n in range(2)]
        for sidecar in sidecars:
            warm(sidecar.port)
        assert app_purge(app.port, {"route": "/api/catalog"}) is True
        for sidecar in sidecars:
            for page in PAGES:
                assert get(sidecar.port, f"/api/catalog?page={page}")[0] == "MISS", (sidecar.port, page)
        assert get(sidecars[0].port, "/api/products")[0] in ("MISS", "HIT")  # other routes keep working

        # A sidecar that went away: the purge is not delivered there, and the app says so.
        for sidecar in sidecars:
            warm(sidecar.port)
        sidecars[1].stop()
        assert app_purge(app.port, {"all": True}) is False
        assert all(get(sidecars[0].port, f"/api/catalog?page={p}")[0] == "MISS" for p in PAGES)
        assert "was not delivered to the sidecar at http://127.0.0.1:" in app.log_text()
    finally:
        for sidecar in sidecars:
            sidecar.stop()
        app.stop()


def _poll_all_miss(port: int, path: str, bound: float = 2.0) -> bool:
    """Within ``bound`` seconds every worker answers MISS or a new body (the change log's poll)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if get(port, path)[0] == "MISS":
            return True
        time.sleep(0.02)
    return False


def test_two_workers_on_the_memory_store_are_one_cache(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    sidecar = start_sidecar(app.port, tmp_path / "sidecar", env={"TINA4_SIDECAR_WORKERS": "2"})
    try:
        path = "/api/catalog?page=7"
        answers = [get(sidecar.port, path) for _ in range(20)]  # new connections: both workers answer
        assert [state for state, _ in answers].count("MISS") == 1  # one app fetch for both workers
        assert len({body for _, body in answers}) == 1  # every worker serves the same entry
        for page in PAGES:
            get(sidecar.port, f"/api/catalog?page={page}")
        assert app_purge(app.port, {"route": "/api/catalog"}) is True
        for page in PAGES:
            assert _poll_all_miss(sidecar.port, f"/api/catalog?page={page}")
        after = [get(sidecar.port, path) for _ in range(20)]
        assert [state for state, _ in after].count("MISS") == 1  # the purge reached both workers
        assert len({body for _, body in after}) == 1
    finally:
        sidecar.stop()
        app.stop()
