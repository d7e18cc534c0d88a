"""The app goes away or turns into something else: 502 JSON, and the last good rules stay in force."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import aiohttp

from tests.e2e.test_sidecar_e2e import get
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar

GARBAGE_APP = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"version": 1, "routes": [{"path": '  # cut off: not JSON
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Garbage).serve_forever()
    """
)


async def test_app_down_then_garbage_manifest_then_back(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    sidecar = start_sidecar(app.port, tmp_path)
    garbage: ServerProcess | None = None
    url = f"http://127.0.0.1:{sidecar.port}"
    try:
        async with aiohttp.ClientSession() as http:
            warm = await get(http, f"{url}/api/products?t=warm")
            assert warm.x_cache == "MISS"

            app.stop()
            down = await get(http, f"{url}/api/time")
            assert down.status == 502
            assert down.headers["Content-Type"].startswith("application/json")
            assert down.json()["error"] == "upstream unavailable"
            cold = await get(http, f"{url}/api/products?t=cold")
            assert cold.status == 502
            still = await get(http, f"{url}/api/products?t=warm")
            assert (still.status, still.x_cache) == (200, "HIT")
            assert still.body == warm.body

            script = tmp_path / "garbage.py"
            script.write_text(GARBAGE_APP)
            garbage = ServerProcess("garbage", lambda p: [sys.executable, str(script), str(p)], port=app.port)
            garbage.start()
            await asyncio.sleep(2.5)  # more than two manifest refreshes (1 s in tests)
            after = await get(http, f"{url}/api/products?t=during-garbage")
            assert after.x_cache == "MISS"  # the route is still known as cached
            assert (await get(http, f"{url}/api/products?t=warm")).x_cache == "HIT"
            garbage.stop()
            garbage = None

            app.start()
            back = await get(http, f"{url}/api/products?t=back")
            assert (back.status, back.x_cache) == (200, "MISS")
            assert b"products" in back.body
        log = sidecar.log_text()
        assert "bad manifest" in log
        assert "Traceback" not in log
    finally:
        if garbage is not None:
            garbage.stop()
        sidecar.stop()
        app.stop()
