"""The MISS path against nginx, alternating rounds, with CPU µs per request: the issue-17 table.

    .venv/bin/python -m bench.miss_path [--rounds 3] [--duration 5] [--connections 64]
                                        [--entries 100000] [--rows forward,fill,hit1k,hit256k,memory]

Everything runs on loopback from one temp dir on tmpfs (``/dev/shm``), so nginx's ``proxy_cache``
lives on tmpfs as the goal says. Per row, each round measures nginx and the sidecar one after the
other (the order flips every round) and the table shows the median of the rounds:

  forward  ``/pass-1k.json`` from a static nginx origin, cached by neither: nginx ``proxy_pass``
           with a keepalive upstream vs the sidecar's forwarding
  fill     every request a new ``/fill.json?k=...`` URL, cached by both: nginx ``proxy_cache``
           vs the sidecar (memory store, a rules file caching /fill.json for 300 s)
  hit1k    ``/api/sized?bytes=1024`` from the demo Tina4 app, a HIT in both
  hit256k  ``/api/sized?bytes=262144``, a HIT in both
  memory   RSS growth per cached 1 KB entry over ``--entries`` fills (bench.compare's memory row)

CPU µs per request is the proxy process's utime + stime (``/proc/<pid>/stat``; nginx: its worker)
over the measured run divided by the requests wrk counted; it is steadier than req/s on a shared
machine. Goals (issue 17) print beside each row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.compare import (
    FILL_PATH,
    KIB,
    PASS_PATH,
    BenchError,
    Run,
    _interrupt,
    check_hit,
    check_pass,
    check_size,
    cpu_model,
    launch_sidecar,
    memory_rows,
    missing_tool,
    progress,
    write_fill_rules,
    write_origin_files,
)
from bench.nginx import nginx_binary, nginx_version, proxy_conf, start_nginx, static_origin_conf, worker_pids
from bench.wrk import WrkResult, run_wrk
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess, free_port
from tests.servers.sidecar import wait_until_cached

ROWS = ("forward", "fill", "hit1k", "hit256k", "memory")
GOALS = {
    "forward": (1.0, "forwarding >= 1.0x nginx proxy_pass"),
    "fill": (0.7, "cacheable fill >= 0.7x nginx proxy_cache"),
    "hit1k": (1.2, "HIT 1 KB >= 1.2x nginx"),
    "hit256k": (1.0, "HIT 256 KB >= 1.0x nginx"),
}
TITLES = {
    "forward": "forwarding 1 KB (static origin)",
    "fill": "cacheable fill 1 KB, each URL new",
    "hit1k": "HIT 1 KB JSON (Tina4 app)",
    "hit256k": "HIT 256 KB JSON (Tina4 app)",
}
NEW_URLS = """\
-- Every request a new URL of {path} (one wrk thread, so a plain counter is enough).
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "{path}?k={prefix}" .. n)
end
"""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One measured run of one proxy."""

    rps: float
    cpu_us: float
    p99_ms: float
    errors: int


@dataclass
class Target:
    """A proxy under test: how to reach it and whose CPU counts."""

    name: str
    base: str
    header: str
    pid: Callable[[], int]
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measured(run: Run, target: Target, url: str, script: Path | None = None) -> tuple[WrkResult, Sample]:
    """A warm-up run, then the measured one with the proxy's CPU time around it."""
    if run.warmup > 0:
        run_wrk(url, run.warmup, run.connections, script)
    pid = target.pid()
    before = cpu_seconds(pid)
    result = run_wrk(url, run.duration, run.connections, script)
    used = cpu_seconds(pid) - before
    command = shlex.join(result.argv)
    if command not in run.commands:
        run.commands.append(command)
    cpu_us = used * 1e6 / result.requests if result.requests else 0.0
    return result, Sample(result.requests_per_second, cpu_us, result.p99_ms, result.errors)


def new_urls_script(run: Run, name: str) -> Path:
    script = run.work / f"{name}.lua"
    script.write_text(NEW_URLS.format(path=FILL_PATH, prefix=name + "-"))
    return script


def measure_row(run: Run, row: str, target: Target, round_no: int) -> Sample:
    if row == "forward":
        url = target.base + PASS_PATH
        check_pass(url, target.header, KIB)
        result, sample = measured(run, target, url)
        check_size(result, KIB, url)
        return sample
    if row == "fill":
        name = f"{target.name}-r{round_no}"
        script = new_urls_script(run, name)
        result, sample = measured(run, target, target.base + FILL_PATH, script)
        check_size(result, KIB, target.base + FILL_PATH)
        # the first URL of the measured run (its prefix repeats the warm-up's) must now be a HIT
        check_hit(f"{target.base}{FILL_PATH}?k={name}-1", target.header, KIB)
        return sample
    size = KIB if row == "hit1k" else 256 * KIB
    url = f"{target.base}/api/sized?bytes={size}"
    check_hit(url, target.header, size)
    result, sample = measured(run, target, url)
    check_size(result, size, url)
    check_hit(url, target.header, size)
    return sample


def single_pid(server: ServerProcess) -> Callable[[], int]:
    assert server.proc is not None
    pid = server.proc.pid
    return lambda: pid


def nginx_worker(server: ServerProcess) -> Callable[[], int]:
    assert server.proc is not None
    master = server.proc.pid

    def worker() -> int:
        found = worker_pids(master)
        if len(found) != 1:
            raise BenchError(f"expected one nginx worker, found {found}")
        return found[0]

    return worker


def start_all(run: Run, nginx_bin: str) -> tuple[dict[str, tuple[Target, Target]], ServerProcess, int]:
    """The app, the static origin, nginx and the sidecars; the two targets of each row."""
    work = run.work
    write_origin_files(work / "www")
    origin_port, cache_port, pass_port = free_port(), free_port(), free_port()
    progress("starting the demo app, the static origin, nginx and the sidecars")
    app = run.own(start_demo_app(work / "app"))
    conf = static_origin_conf(work / "nginx-origin", origin_port, work / "www")
    run.own(start_nginx(nginx_bin, "nginx-origin", work / "nginx-origin", conf, origin_port))
    conf = proxy_conf(work / "nginx-proxy", cache_port, pass_port, app.port, origin_port)
    nginx = run.own(start_nginx(nginx_bin, "nginx-proxy", work / "nginx-proxy", conf, cache_port))
    rules = work / "fill-rules.json"
    write_fill_rules(rules)
    fill_env: dict[str, str | None] = {
        "TINA4_SIDECAR_RULES_FILE": str(rules),
        "TINA4_CACHE_MAX_ENTRIES": "5000000",
        "TINA4_CACHE_MAX_BYTES": str(8 * 1024 * KIB * KIB),
    }
    # One sidecar in front of the static origin: /fill.json is cached by the rules, /pass-1k.json not.
    origin_side = launch_sidecar(run, origin_port, "sidecar-origin", fill_env, app=False)
    wait_until_cached(origin_side.port, f"{FILL_PATH}?k=ready")
    app_side = launch_sidecar(run, app.port, "sidecar-app")

    def pair(nginx_port: int, sidecar: ServerProcess) -> tuple[Target, Target]:
        return (
            Target("nginx", f"http://127.0.0.1:{nginx_port}", "X-Cache-Status", nginx_worker(nginx)),
            Target("sidecar", f"http://127.0.0.1:{sidecar.port}", "X-Cache", single_pid(sidecar)),
        )

    targets = {
        "forward": pair(pass_port, origin_side),
        "fill": pair(cache_port, origin_side),
        "hit1k": pair(cache_port, app_side),
        "hit256k": pair(cache_port, app_side),
    }
    return targets, nginx, origin_port


def measure_rounds(run: Run, targets: dict[str, tuple[Target, Target]], rounds: int) -> None:
    for round_no in range(1, rounds + 1):
        for row in ROWS:
            if row not in run.rows or row == "memory":
                continue
            pair = targets[row] if round_no % 2 else targets[row][::-1]
            for target in pair:
                progress(f"round {round_no}/{rounds}: {row} via {target.name}")
                sample = measure_row(run, row, target, round_no)
                target.samples.setdefault(row, []).append(sample)


def median(samples: list[Sample], pick: Callable[[Sample], float]) -> float:
    return statistics.median(pick(s) for s in samples)


def print_rows(run: Run, targets: dict[str, tuple[Target, Target]]) -> None:
    header = (
        "| row | proxy | req/s (median) | req/s per round | CPU µs/req | p99 ms | errors | vs nginx | goal |"
    )
    print(header)
    print("|---|---|---:|---|---:|---:|---:|---:|---|")
    for row in ROWS:
        if row not in run.rows or row == "memory":
            continue
        nginx, sidecar = targets[row]
        base_rps = median(nginx.samples[row], lambda s: s.rps)
        base_cpu = median(nginx.samples[row], lambda s: s.cpu_us)
        for target in (nginx, sidecar):
            samples = target.samples[row]
            rps, cpu = median(samples, lambda s: s.rps), median(samples, lambda s: s.cpu_us)
            per_round = " / ".join(f"{s.rps:,.0f}" for s in samples)
            errors = sum(s.errors for s in samples)
            p99 = median(samples, lambda s: s.p99_ms)
            if target is nginx:
                versus, goal = "1.00x", ""
            else:
                ratio = rps / base_rps
                wanted, text = GOALS[row]
                versus = f"{ratio:.2f}x req/s, {cpu / base_cpu:.2f}x CPU"
                goal = f"{text}: {'met' if ratio >= wanted else 'NOT met'}"
            print(
                f"| {TITLES[row]} | {target.name} | {rps:,.0f} | {per_round} | {cpu:.1f} | {p99:.2f} "
                f"| {errors} | {versus} | {goal} |"
            )


def print_memory(run: Run, nginx: ServerProcess, origin_port: int) -> None:
    rows = memory_rows(run, nginx, f"http://127.0.0.1:{nginx.port}", origin_port)
    print(f"\nmemory: RSS growth over {run.entries:,} cached 1 KB entries (after 2,000 warm-up entries)")
    print("| proxy | growth per 100k | bytes per entry | body | goal |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        per_entry = row.key / 100_000
        goal = ""
        if row.proxy == "sidecar":
            goal = f"<= body + 200 B: {'met' if per_entry <= KIB + 200 else 'NOT met'}"
        print(f"| {row.proxy} | {row.key / KIB / KIB:.1f} MB | {per_entry:,.0f} | {KIB} | {goal} |")
        print(f"|  | {row.measure} | | | |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each run (default 1)")
    parser.add_argument("--entries", type=int, default=100_000, help="entries for the memory row")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.rows.split(",") if name.strip()}
    if not chosen or chosen - set(ROWS):
        parser.error(f"--rows takes names from {', '.join(ROWS)}, not {args.rows!r}")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    args.rows = chosen
    return args


def main() -> int:
    args = parse_args()
    missing = missing_tool()
    if missing is not None:
        print(f"bench: {missing} is not installed; run .ci/bench-deps", file=sys.stderr)
        return 2
    nginx_bin = nginx_binary()
    assert nginx_bin is not None
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    load_before = os.getloadavg()
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="tina4-miss-path-", dir=tmpfs))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        run = Run(args.duration, args.connections, args.warmup, 0, args.entries, args.rows, work, stack)
        try:
            targets, nginx, origin_port = start_all(run, nginx_bin)
            measure_rounds(run, targets, args.rounds)
            print(
                f"\nMISS path vs nginx: wrk -t1 -c{args.connections} -d{args.duration}s, "
                f"{args.rounds} alternating rounds, cache dirs on {tmpfs or 'disk'}"
            )
            print_rows(run, targets)
            if "memory" in run.rows:
                progress(f"memory: filling {run.entries:,} entries into each proxy")
                print_memory(run, nginx, origin_port)
        except BenchError as exc:
            print(f"bench: check failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted; stopping everything", file=sys.stderr)
            return 130
        print_footer(run, nginx_version(nginx_bin), load_before)
    return 0


def print_footer(run: Run, nginx: str, load_before: tuple[float, ...]) -> None:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} cores, {cpu_model()}, Linux {platform.release()}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in load_before)} before, {load} after")
    print(f"versions: {nginx}, Python {platform.python_version()}")
    print(
        "notes: nginx one worker, access_log off, keepalive upstream, proxy_cache on tmpfs; the sidecar "
        "one worker, memory store, log level warning (no access log). Origins: a static nginx for "
        "forward/fill/memory, the demo Tina4 app for HITs. CPU: the proxy process only (nginx: its "
        "worker). Each measured run is preceded by an unmeasured warm-up run of the same command."
    )
    print("commands:")
    for command in run.commands:
        print(f"  {command}")


if __name__ == "__main__":
    sys.exit(main())
