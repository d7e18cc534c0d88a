"""Baseline throughput of the sidecar in front of the real Tina4 demo app, measured with wrk.

    .venv/bin/python -m bench.baseline [--duration 10] [--connections 64]

Starts the demo app (Tina4's built-in server) and the sidecar (memory store) on free loopback
ports, then loads each path with wrk (one thread, so wrk keeps one core and the servers the
other) and prints one table. Ratios are to the app answering directly, measured in the same run.
Rows:
  app direct          the app itself, uncached route /api/time
  sidecar pass        the same route through the sidecar (no cached rule: forwarded)
  sidecar MISS        a cached route, every request a new URL (forward + store)
  sidecar HIT         a cached route, one URL (served from the memory store)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.servers.demo_app import start_demo_app
from tests.servers.sidecar import start_sidecar

MISS_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/products?bench=" .. counter .. "-" .. math.random(1, 1e9))
end
"""


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(
    url: str, duration: int, connections: int, script: Path | None = None
) -> tuple[float, float, float, int]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _latency(out, "50%")
    p99 = _latency(out, "99%")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, errors + (int(non2xx.group(1)) if non2xx else 0)


def _latency(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per row (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tina4-bench-"))
    app = start_demo_app(work / "app")
    sidecar = start_sidecar(app.port, work, env={"TINA4_SIDECAR_LOG_LEVEL": "warning"})
    script = work / "miss.lua"
    script.write_text(MISS_SCRIPT)
    app_url, side_url = f"http://127.0.0.1:{app.port}", f"http://127.0.0.1:{sidecar.port}"
    rows: list[Result] = []
    try:
        plan = [
            ("app direct (/api/time)", f"{app_url}/api/time", None),
            ("sidecar pass (/api/time)", f"{side_url}/api/time", None),
            ("sidecar MISS (/api/products?new)", side_url, script),
            ("sidecar HIT (/api/products)", f"{side_url}/api/products", None),
        ]
        for name, url, lua in plan:
            print(f"bench: {name} for {args.duration}s ...", file=sys.stderr, flush=True)
            rps, p50, p99, errors = run_wrk(url, args.duration, args.connections, lua)
            rows.append(Result(name, rps, p50, p99, errors))
    finally:
        sidecar.stop()
        app.stop()
    base = rows[0].requests_per_second or 1.0
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s on 127.0.0.1; wrk, app and sidecar share 2 cores"
    )
    print(f"| {'path':<34} | {'req/s':>9} | {'vs app':>6} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for row in rows:
        print(
            f"| {row.name:<34} | {row.requests_per_second:>9.0f} | {row.requests_per_second / base:>5.2f}x "
            f"| {row.p50_ms:>7.2f} | {row.p99_ms:>7.2f} | {row.errors:>6} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
