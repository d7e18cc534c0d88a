"""install() in apps other than the demo: catch-all routes, routes added later, a custom path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from tests.servers.demo_app import start_tina4_script
from tina4_sidecar.config.rules import parse_manifest

LATE_APP = textwrap.dedent(
    """
    from tina4_python.core import run
    from tina4_python.core.router import get

    from tina4_sidecar.client import install


    @get("/{anything:path}")
    async def catch_all(request, response):
        return response({"caught": request.path})


    install("/ops/manifest")
    install("/ops/manifest")  # idempotent


    @get("/late", middleware=["ResponseCache:5"])
    async def late(request, response):
        return response({"late": True})


    if __name__ == "__main__":
        run()
    """
)


def test_manifest_route_beats_catch_all_and_lists_routes_added_after_install(tmp_path: Path) -> None:
    script = tmp_path / "late_app.py"
    script.write_text(LATE_APP)
    app = start_tina4_script(script, tmp_path / "work", manifest_path="/ops/manifest")
    try:
        with urllib.request.urlopen(app.url + "/ops/manifest", timeout=10) as reply:
            manifest = reply.read()
        with urllib.request.urlopen(app.url + "/__tina4/cache-manifest", timeout=10) as reply:
            caught = json.loads(reply.read())
    finally:
        app.stop()
    rules = parse_manifest(manifest)
    ours = [(r.path, r.cache, r.ttl) for r in rules if r.path in ("/{anything:path}", "/late")]
    assert ours == [("/{anything:path}", False, 0), ("/late", True, 5)]
    assert "/ops/manifest" not in [r.path for r in rules]
    assert caught == {"caught": "/__tina4/cache-manifest"}  # only the configured path is served


def test_importing_the_client_imports_neither_tina4_nor_aiohttp_web() -> None:
    code = (
        "import sys, tina4_sidecar.client as c; "
        "assert callable(c.install); "
        "print(sorted(m for m in sys.modules if m.startswith(('tina4_python', 'aiohttp'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
