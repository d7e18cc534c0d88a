"""The sidecar against stock nginx ``proxy_cache``, measured in one run, printed as one table.

    .venv/bin/python -m bench.compare [--duration 10] [--connections 64] [--entries 100000]
                                      [--rows hit1k,hit256k,miss,stampede,memory]

Starts the demo Tina4 app, a static nginx origin, stock nginx (``proxy_cache``, one worker) and
the sidecar (memory store, one worker, log level warning), all on free loopback ports in one
temp dir, and compares them row by row; each ratio is to nginx in the same row group:

  1. HIT 1 KB JSON        ``/api/sized?bytes=1024`` from the app, cached by both (wrk)
  2. HIT 256 KB           ``/api/sized?bytes=262144`` (wrk)
  3. MISS / forwarding    ``/pass-1k.json`` on the static origin, uncached by both (wrk)
  4. stampede             N concurrent requests for one cold ``/api/slow`` URL (the handler sleeps
                          100 ms): origin hits, p50/p99 (an aiohttp client; connections pre-opened)
  5. memory               RSS growth per 100k cached 1 KB entries (filled by wrk with a Lua
                          script, each request a new URL of ``/fill.json`` on the static origin)

Every HIT URL is warmed and checked (``X-Cache: HIT`` / ``X-Cache-Status: HIT`` and the body
size) before it is measured. Needs nginx and wrk: ``.ci/bench-deps`` installs both (Debian).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType

import aiohttp

from bench.nginx import nginx_binary, nginx_version, proxy_conf, start_nginx, static_origin_conf, worker_pids
from bench.wrk import WrkResult, run_wrk, run_wrk_until, wrk_version
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess, free_port
from tests.servers.sidecar import start_sidecar, wait_until_cached

KIB = 1024
MIB = 1024 * 1024
PASS_PATH = "/pass-1k.json"
FILL_PATH = "/fill.json"
WARM_ENTRIES = 2000
SIDECAR_ENV = {
    "TINA4_SIDECAR_LOG_LEVEL": "warning",
    "TINA4_SIDECAR_WORKERS": "1",
    "TINA4_SIDECAR_MANIFEST_REFRESH": "60",
    "TINA4_CACHE_BACKEND": "memory",
}
FILL_SCRIPT = """\
-- Each request a new URL until {target} responses came back, then a marker file for the bench.
local target, prefix, marker = {target}, "{prefix}", "{marker}"
local sent, done = 0, 0
request = function()
  sent = sent + 1
  local id = sent
  if id > target then id = id - target end  -- while the last ones are in flight: repeats
  return wrk.format("GET", "{path}?k=" .. prefix .. id)
end
response = function(status, headers, body)
  done = done + 1
  if done == target then
    local file = io.open(marker, "w")
    file:write("done")
    file:close()
    wrk.thread:stop()
  end
end
"""


class BenchError(RuntimeError):
    """A check before or after a measurement failed: the numbers would mean nothing."""


@dataclass
class Row:
    """One line of the table; ``key`` is the number compared to nginx's in the same group."""

    group: str
    proxy: str
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    measure: str
    key: float
    key_name: str


@dataclass
class Run:
    """Options, the temp dir and what the run recorded for the report."""

    duration: int
    connections: int
    warmup: int
    stampede: int
    entries: int
    rows: set[str]
    work: Path
    stack: ExitStack
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def wrk(self, url: str, script: Path | None = None) -> WrkResult:
        """Warm up (not recorded), then measure ``url``."""
        if self.warmup > 0:
            run_wrk(url, self.warmup, self.connections, script)
        result = run_wrk(url, self.duration, self.connections, script)
        self.commands.append(shlex.join(result.argv))
        return result

    def own(self, server: ServerProcess) -> ServerProcess:
        """Stop ``server`` and remove its log file when the run ends, however it ends."""
        self.stack.callback(server.log_path.unlink, missing_ok=True)
        self.stack.callback(server.stop)
        return server


# -- plain HTTP checks ---------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def check_hit(url: str, header: str, size: int) -> None:
    """Request ``url`` until ``header`` says HIT; the body must be ``size`` bytes each time."""
    seen = ""
    for _ in range(5):
        status, headers, body = fetch(url)
        if status != 200 or len(body) != size:
            raise BenchError(f"{url}: status {status}, {len(body)} bytes (expected 200, {size} bytes)")
        seen = headers.get(header.lower(), "")
        if seen == "HIT":
            return
    raise BenchError(f"{url}: {header} is {seen or 'absent'!r} after 5 requests, never HIT")


def check_pass(url: str, header: str, size: int) -> None:
    """``url`` answers 200 with ``size`` bytes and no cache header (forwarded, not cached)."""
    status, headers, body = fetch(url)
    if status != 200 or len(body) != size:
        raise BenchError(f"{url}: status {status}, {len(body)} bytes (expected 200, {size} bytes)")
    if header.lower() in headers:
        raise BenchError(f"{url}: {header}: {headers[header.lower()]} on a path that must not be cached")


def check_size(result: WrkResult, size: int, url: str) -> None:
    """Under load too, responses averaged at least ``size`` bytes (body plus headers)."""
    if result.bytes_per_response < size:
        raise BenchError(
            f"{url}: {result.bytes_per_response:.0f} bytes per response under load, body is {size}"
        )


# -- process facts -------------------------------------------------------------------------------


def proc_status_kib(pid: int, name: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, RssShmem, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def tree_usage(root: Path) -> tuple[int, int]:
    """Files under ``root`` and the bytes they take on disk."""
    files = used = 0
    for directory, _, names in os.walk(root):
        for name in names:
            files += 1
            used += os.stat(os.path.join(directory, name)).st_blocks * 512
    return files, used


def app_calls(app_port: int, name: str) -> int:
    _, _, body = fetch(f"http://127.0.0.1:{app_port}/api/calls")
    return int(json.loads(body).get(name, 0))


def sidecar_entries(admin_port: int) -> int | None:
    """Entries in the sidecar's store, from its admin API (None if that cannot be read)."""
    try:
        _, _, body = fetch(f"http://127.0.0.1:{admin_port}/__sidecar/stats")
        return int(json.loads(body)["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- setup -----------------------------------------------------------------------------------------


def json_body(size: int) -> bytes:
    """``size`` bytes of ``{"pad":"xxx..."}`` (what the app's /api/sized answers)."""
    head, tail = b'{"pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def write_origin_files(root: Path) -> None:
    """The static origin's files: an empty manifest (no route cached), and two 1 KB JSON files."""
    (root / "__tina4").mkdir(parents=True)
    manifest = {"version": 1, "app": "bench-static-origin", "default_ttl": 60, "routes": []}
    (root / "__tina4" / "cache-manifest").write_text(json.dumps(manifest))
    (root / PASS_PATH.lstrip("/")).write_bytes(json_body(KIB))
    (root / FILL_PATH.lstrip("/")).write_bytes(json_body(KIB))


def write_fill_rules(path: Path) -> None:
    """Static rules for the memory sidecar: ``/fill.json`` cached for 300 s."""
    route = {"method": "GET", "path": FILL_PATH, "cache": True, "ttl": 300}
    path.write_text(json.dumps({"version": 1, "default_ttl": 60, "routes": [route]}))


def launch_sidecar(
    run: Run, upstream_port: int, name: str, env: dict[str, str | None] | None = None, app: bool = True
) -> ServerProcess:
    """A sidecar (one worker, memory store) in front of ``upstream_port``; with ``app`` it is ready
    once the app's manifest is loaded."""
    server = start_sidecar(
        upstream_port, run.work / name, env={**SIDECAR_ENV, **(env or {})}, wait_for_rules=app
    )
    return run.own(server)


# -- the rows ------------------------------------------------------------------------------------


def hit_rows(run: Run, group: str, nginx_url: str, sidecar_url: str, path: str, size: int) -> list[Row]:
    rows = []
    for proxy, base, header in (("nginx", nginx_url, "X-Cache-Status"), ("sidecar", sidecar_url, "X-Cache")):
        url = base + path
        check_hit(url, header, size)
        result = run.wrk(url)
        check_size(result, size, url)
        check_hit(url, header, size)
        rows.append(throughput_row(group, proxy, result))
    return rows


def miss_rows(run: Run, nginx_url: str, sidecar_url: str) -> list[Row]:
    rows = []
    for proxy, base, header in (("nginx", nginx_url, "X-Cache-Status"), ("sidecar", sidecar_url, "X-Cache")):
        url = base + PASS_PATH
        check_pass(url, header, KIB)
        result = run.wrk(url)
        check_size(result, KIB, url)
        rows.append(throughput_row("MISS / forwarding (static origin)", proxy, result))
    return rows


def throughput_row(group: str, proxy: str, result: WrkResult) -> Row:
    return Row(
        group,
        proxy,
        result.requests_per_second,
        result.p50_ms,
        result.p99_ms,
        result.errors,
        f"{result.bytes_per_response:,.0f} B/resp",
        result.requests_per_second,
        "req/s",
    )


async def _timed(session: aiohttp.ClientSession, url: str) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        async with session.get(url) as response:
            await response.read()
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    return (time.perf_counter() - started) * 1000, ok


async def _stampede(base: str, app_port: int, requests: int, cold: str) -> tuple[list[float], int, int]:
    """Latencies, failures and origin hits of ``requests`` concurrent GETs of one cold URL."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _timed(session, f"{base}/api/products")  # cached from now on
        # Open every connection first (a cached URL, so the app is not asked): the wave below
        # then measures the stampede, not `requests` TCP handshakes in this one client process.
        await asyncio.gather(*(_timed(session, f"{base}/api/products") for _ in range(requests)))
        before = app_calls(app_port, "slow")
        outcomes = await asyncio.gather(
            *(_timed(session, f"{base}/api/slow?cold={cold}") for _ in range(requests))
        )
        hits = app_calls(app_port, "slow") - before
    return [ms for ms, _ in outcomes], sum(1 for _, ok in outcomes if not ok), hits


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stampede_rows(run: Run, app_port: int, nginx_url: str, sidecar_url: str) -> list[Row]:
    group = f"stampede {run.stampede}x cold /api/slow (100 ms)"
    rows = []
    for proxy, base in (("nginx", nginx_url), ("sidecar", sidecar_url)):
        cold = f"{proxy}-{time.time_ns()}"
        latencies, failed, hits = asyncio.run(_stampede(base, app_port, run.stampede, cold))
        p50 = statistics.median(latencies)
        measure = f"{hits} origin hit{'s' if hits != 1 else ''}"
        rows.append(Row(group, proxy, None, p50, percentile(latencies, 0.99), failed, measure, p50, "p50"))
    return rows


def fill(run: Run, url: str, prefix: str, count: int) -> WrkResult:
    """Request ``count`` new URLs of ``url`` (``?k=<prefix><n>``) with wrk."""
    marker = run.work / f"fill-{prefix}.done"
    script = run.work / f"fill-{prefix}.lua"
    script.write_text(FILL_SCRIPT.format(target=count, prefix=prefix, marker=marker, path=FILL_PATH))
    result, _ = run_wrk_until(url, marker, run.connections, script, max_seconds=900)
    run.commands.append(f"{shlex.join(result.argv)}  # fill: stopped after {count:,} responses")
    if not marker.exists():
        raise BenchError(f"{url}: {count} responses did not come back within 900 s")
    if result.errors:
        raise BenchError(f"{url}: {result.errors} errors while filling the cache")
    return result


def memory_rows(run: Run, nginx: ServerProcess, nginx_url: str, origin_port: int) -> list[Row]:
    group = f"RSS per 100k cached 1 KB entries ({run.entries:,} filled)"
    per = 100_000 / run.entries
    assert nginx.proc is not None
    workers = worker_pids(nginx.proc.pid)
    if len(workers) != 1:
        raise BenchError(f"expected one nginx worker, found {workers}")
    worker = workers[0]
    cache_dir = run.work / "nginx-proxy" / "cache"
    fill(run, nginx_url + FILL_PATH, "nw", WARM_ENTRIES)
    files_before, disk_before = tree_usage(cache_dir)
    rss0, shm0 = proc_status_kib(worker, "VmRSS"), proc_status_kib(worker, "RssShmem")
    result = fill(run, nginx_url + FILL_PATH, "nm", run.entries)
    time.sleep(1)
    rss1, shm1 = proc_status_kib(worker, "VmRSS"), proc_status_kib(worker, "RssShmem")
    files, disk = tree_usage(cache_dir)
    growth = (rss1 - rss0) * KIB * per
    stored = files - files_before
    nginx_measure = (
        f"+{growth / MIB:.1f} MB RSS (+{(shm1 - shm0) * KIB * per / MIB:.1f} MB of it keys zone), "
        f"{(disk - disk_before) * per / MIB:.0f} MB on disk; {stored:,} files"
    )
    rows = [fill_row(group, "nginx", result, nginx_measure, growth)]
    rows.append(sidecar_memory_row(run, group, origin_port))
    if stored < run.entries:
        run.notes.append(f"nginx stored {stored:,} of {run.entries:,} fill URLs")
    return rows


def sidecar_memory_row(run: Run, group: str, origin_port: int) -> Row:
    rules = run.work / "fill-rules.json"
    write_fill_rules(rules)
    admin_port = free_port()
    env: dict[str, str | None] = {
        "TINA4_CACHE_MAX_ENTRIES": str(max(200_000, 2 * (run.entries + WARM_ENTRIES))),
        "TINA4_CACHE_MAX_BYTES": str(4 * 1024 * MIB),
        "TINA4_SIDECAR_RULES_FILE": str(rules),
        "TINA4_SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
    }
    sidecar = launch_sidecar(run, origin_port, "sidecar-memory", env, app=False)
    wait_until_cached(sidecar.port, f"{FILL_PATH}?k=ready")
    url = f"http://127.0.0.1:{sidecar.port}{FILL_PATH}"
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    fill(run, url, "sw", WARM_ENTRIES)
    before = sidecar_entries(admin_port)
    rss0 = proc_status_kib(pid, "VmRSS")
    result = fill(run, url, "sm", run.entries)
    time.sleep(1)
    rss1 = proc_status_kib(pid, "VmRSS")
    after = sidecar_entries(admin_port)
    growth = (rss1 - rss0) * KIB * 100_000 / run.entries
    stored = after - before if after is not None and before is not None else None
    counted = f"{stored:,} entries" if stored is not None else "entries not readable"
    if stored is not None and stored < run.entries:
        run.notes.append(f"the sidecar stored {stored:,} of {run.entries:,} fill URLs")
    sidecar.stop()
    return fill_row(group, "sidecar", result, f"+{growth / MIB:.1f} MB RSS; {counted}", growth)


def fill_row(group: str, proxy: str, result: WrkResult, measure: str, growth: float) -> Row:
    """A memory row: the fill run's numbers, compared by RSS growth."""
    rps, p50, p99 = result.requests_per_second, result.p50_ms, result.p99_ms
    return Row(group, proxy, rps, p50, p99, result.errors, measure, growth, "RSS")


# -- the report ------------------------------------------------------------------------------------


def ratio(row: Row, rows: list[Row]) -> str:
    base = next((r for r in rows if r.group == row.group and r.proxy == "nginx"), None)
    if base is None or not base.key:
        return "-"
    if row is base:
        return "1.00x"
    return f"{row.key / base.key:.2f}x {row.key_name}"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    header = ("row", "proxy", "req/s", "p50 ms", "p99 ms", "err/non-2xx", "measure", "vs nginx")
    cells = [
        (
            r.group,
            r.proxy,
            fmt(r.rps, ",.0f"),
            fmt(r.p50_ms, ".2f"),
            fmt(r.p99_ms, ".2f"),
            str(r.errors),
            r.measure,
            ratio(r, rows),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {2, 3, 4, 5}

    def line(values: tuple[str, ...]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    print(line(header))
    print(
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    for values in cells:
        print(line(values))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def print_footer(run: Run, nginx: str, load_before: tuple[float, ...]) -> None:
    load_after = os.getloadavg()
    print(
        f"\nmachine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"Linux {platform.release()}"
    )
    print(
        f"load average: {_load(load_before)} before, {_load(load_after)} after (other jobs share the machine)"
    )
    print(
        f"versions: {nginx}, {wrk_version()}, tina4-sidecar {metadata.version('tina4-sidecar')}, "
        f"aiohttp {aiohttp.__version__}, tina4-python {metadata.version('tina4-python')}, "
        f"Python {platform.python_version()}"
    )
    print("\nnotes:")
    print(
        "- HIT and stampede origin: the demo Tina4 app (built-in server). MISS and memory origin: a "
        "static nginx (one worker) sending the app's header set; the sidecar gets an empty manifest "
        "from it (MISS) or a rules file caching /fill.json (memory)."
    )
    print(
        "- nginx: stock proxy_cache (worker_processes 1, keys_zone 64m, proxy_cache_valid 200 300s, "
        "proxy_cache_lock on, keepalive upstream, HTTP/1.1) with access_log off (the sidecar logs "
        "no requests at level warning); default keepalive_requests 1000 closes a client connection "
        "every 1000 requests."
    )
    print(
        "- vs nginx: req/s ratio for rows 1-3 (higher is better); p50 ratio for the stampede and "
        "RSS-growth ratio for memory (lower is better)."
    )
    print(
        "- stampede: an aiohttp client in the bench process; all connections opened first with a "
        "cached URL; origin hits from the app's /api/calls before and after."
    )
    print(
        f"- memory: RSS (/proc/<pid>/status VmRSS) growth after {WARM_ENTRIES:,} warm-up entries, "
        "scaled to 100k; req/s, p50 and p99 are the fill run (every request a MISS that is stored). "
        "nginx: the worker's RSS; its keys live in the shared keys zone (counted in RssShmem as the "
        "worker touches it) and its bodies in files (on disk and in the page cache, not in any RSS). "
        "sidecar: one process holding keys, headers and bodies in its memory store."
    )
    for note in run.notes:
        print(f"- {note}")
    print(
        f"\nwrk commands (each -d{run.duration}s run preceded by the same command with -d{run.warmup}s, "
        "not measured; the fill script is FILL_SCRIPT in bench/compare.py):"
    )
    for command in run.commands:
        print(f"  {command}")


def _load(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


# -- main ------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk row (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each row (default 2)")
    parser.add_argument("--stampede", type=int, default=200, help="concurrent cold requests (default 200)")
    parser.add_argument(
        "--entries", type=int, default=100_000, help="entries for the memory row (default 100000)"
    )
    parser.add_argument(
        "--rows",
        default=",".join(ROW_GROUPS),
        help=f"comma-separated row groups to measure, of {', '.join(ROW_GROUPS)} (default: all)",
    )
    args = parser.parse_args()
    chosen = {name.strip() for name in args.rows.split(",") if name.strip()}
    if not chosen or chosen - set(ROW_GROUPS):
        parser.error(f"--rows takes names from {', '.join(ROW_GROUPS)}, not {args.rows!r}")
    args.rows = chosen
    return args


ROW_GROUPS = ("hit1k", "hit256k", "miss", "stampede", "memory")


def missing_tool() -> str | None:
    if nginx_binary() is None:
        return "nginx"
    if shutil.which("wrk") is None:
        return "wrk"
    return None


def measure_all(run: Run, nginx_bin: str) -> list[Row]:
    work = run.work
    write_origin_files(work / "www")
    origin_port, cache_port, pass_port = free_port(), free_port(), free_port()
    progress("starting the demo app, the static origin and nginx")
    app = run.own(start_demo_app(work / "app"))
    conf = static_origin_conf(work / "nginx-origin", origin_port, work / "www")
    run.own(start_nginx(nginx_bin, "nginx-origin", work / "nginx-origin", conf, origin_port))
    conf = proxy_conf(work / "nginx-proxy", cache_port, pass_port, app.port, origin_port)
    nginx = run.own(start_nginx(nginx_bin, "nginx-proxy", work / "nginx-proxy", conf, cache_port))
    nginx_cache, nginx_pass = f"http://127.0.0.1:{cache_port}", f"http://127.0.0.1:{pass_port}"

    rows: dict[str, list[Row]] = {}
    if run.rows & {"hit1k", "hit256k", "stampede"}:
        sidecar = launch_sidecar(run, app.port, "sidecar-app")
        sidecar_url = f"http://127.0.0.1:{sidecar.port}"
        if "hit1k" in run.rows:
            progress("HIT 1 KB")
            path = "/api/sized?bytes=1024"
            rows["hit1k"] = hit_rows(run, "HIT 1 KB JSON", nginx_cache, sidecar_url, path, KIB)
        if "hit256k" in run.rows:
            progress("HIT 256 KB")
            path = "/api/sized?bytes=262144"
            rows["hit256k"] = hit_rows(run, "HIT 256 KB JSON", nginx_cache, sidecar_url, path, 256 * KIB)
        if "stampede" in run.rows:
            progress("stampede")
            rows["stampede"] = stampede_rows(run, app.port, nginx_cache, sidecar_url)
        sidecar.stop()

    if "miss" in run.rows:
        progress("MISS / forwarding")
        passing = launch_sidecar(run, origin_port, "sidecar-pass", app=False)
        rows["miss"] = miss_rows(run, nginx_pass, f"http://127.0.0.1:{passing.port}")
        passing.stop()

    if "memory" in run.rows:
        progress(f"memory: filling {run.entries:,} entries into each proxy")
        rows["memory"] = memory_rows(run, nginx, nginx_cache, origin_port)
    return [row for group in ROW_GROUPS for row in rows.get(group, [])]


def progress(message: str) -> None:
    print(f"bench: {message} ...", file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    missing = missing_tool()
    if missing is not None:
        print(
            f"bench: {missing} is not installed; run .ci/bench-deps (apt-get install nginx-light wrk)",
            file=sys.stderr,
        )
        return 2
    nginx_bin = nginx_binary()
    assert nginx_bin is not None
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="tina4-compare-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        run = Run(
            args.duration, args.connections, args.warmup, args.stampede, args.entries, args.rows, work, stack
        )
        try:
            rows = measure_all(run, nginx_bin)
        except BenchError as exc:
            print(f"bench: check failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted; stopping everything", file=sys.stderr)
            return 130
    print(
        f"\ntina4-sidecar vs nginx proxy_cache: wrk -t1 -c{args.connections} -d{args.duration}s on "
        "127.0.0.1; wrk, proxies and origin share the machine"
    )
    print_table(rows)
    print_footer(run, nginx_version(nginx_bin), load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
