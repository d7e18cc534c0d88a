"""HIT req/s through a sidecar on Redis: near-cache recheck per HIT vs push invalidation, in one run.

    .venv/bin/python -m bench.near_push [--duration 8] [--connections 32] [--rounds 2]

Starts redis-server, the demo Tina4 app and two sidecars (one worker each, log level warning) on
one Redis namespace: "recheck" (TINA4_SIDECAR_NEAR_CACHE_PUSH=false, recheck 0: the store is asked
on every HIT, the behaviour before push) and "push" (the default). Warms /api/products on both,
then runs wrk against each in turn (alternating, ``rounds`` times), and prints req/s, p50, p99 and
the Redis GET+MGET calls per request during each run (from INFO commandstats).
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
import uuid
from pathlib import Path

from bench.wrk import run_wrk
from tests.servers.demo_app import start_demo_app
from tests.servers.redis import raw_client, redis_server, server_url, serving
from tests.servers.sidecar import start_sidecar

PATH = "/api/products"


def reads(server: object) -> int:
    stats = raw_client(server).info("commandstats")  # type: ignore[arg-type]
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


def warm(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + 10
    hits = 0
    while hits < 3:
        connection.request("GET", PATH)
        reply = connection.getresponse()
        reply.read()
        hits = hits + 1 if reply.getheader("X-Cache") == "HIT" else 0
        assert time.monotonic() < deadline
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="near-push-bench-") as tmp, serving(redis_server()) as redis:
        work = Path(tmp)
        env = {
            "TINA4_CACHE_BACKEND": "redis",
            "TINA4_CACHE_URL": server_url(redis),
            "TINA4_CACHE_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}",
            "TINA4_SIDECAR_LOG_LEVEL": "warning",
            "TINA4_SIDECAR_MANIFEST_REFRESH": "60",
        }
        app = start_demo_app(work / "app", env={"TINA4_CACHE_DIR": str(work / "app-cache")})
        sidecars = {}
        try:
            sidecars["recheck"] = start_sidecar(
                app.port, work / "recheck", env={**env, "TINA4_SIDECAR_NEAR_CACHE_PUSH": "false"}
            )
            sidecars["push"] = start_sidecar(app.port, work / "push", env=dict(env))
            time.sleep(1)  # the push sidecar subscribes
            rows = []
            for _ in range(args.rounds):
                for name, sidecar in sidecars.items():
                    warm(sidecar.port)
                    before = reads(redis)
                    url = f"http://127.0.0.1:{sidecar.port}{PATH}"
                    result = run_wrk(url, args.duration, args.connections)
                    per_request = (reads(redis) - before) / max(result.requests, 1)
                    rows.append((name, result, per_request))
            print("| near cache | req/s | p50 ms | p99 ms | errors | GET+MGET per request |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, result, per_request in rows:
                print(
                    f"| {name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} "
                    f"| {result.p99_ms:.2f} | {result.errors} | {per_request:.3f} |"
                )
            print("wrk:", " ".join(rows[0][1].argv))
        finally:
            for sidecar in sidecars.values():
                sidecar.stop()
            app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
