"""Memory per cached 1 KB entry on the memory store, filled through the real fast-path fill code.

    .venv/bin/python -m bench.entry_memory [--entries 100000] [--trace 20000] [--top 12]

Drives ``FastPath`` in this process (no sockets, as ``bench.fast_path_micro`` does): every request
is a new ``/fill.json?k=<n>`` URL, its miss is sent to a counting origin transport, the origin's
answer (the static origin's 1 KB JSON with the Tina4-like headers of ``bench.compare``) is fed
back, and the fill stores the entry in the memory store (limits raised so nothing is evicted).
After 2,000 warm-up fills and a ``gc.collect()``, RSS (``VmRSS``) is read before and after
``--entries`` fills; the table shows the growth per entry against the goal (body + 200 B).

The breakdown sizes what the store holds per entry (``sys.getsizeof`` of the key, the value, the
record, and the shard's table divided by its length) and what else stayed (near cache, flights).
With ``--trace N`` a second sidecar is filled with N entries under ``tracemalloc`` and the
allocations that survived are grouped by the line of this project's code that made them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import uvloop

from bench.fast_path_micro import ORIGIN_RESPONSE, PASS_REQUEST, turns_until, wired
from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import Rule, RuleSet
from tina4_sidecar.proxy.server import start_sidecar, stop_sidecar
from tina4_sidecar.proxy.sidecar import Sidecar

BODY = 1024
GOAL = BODY + 200
WARM = 2000
ROOT = str(Path(__file__).resolve().parent.parent)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def fill(sidecar: Sidecar, start: int, count: int, run: str) -> None:
    """``count`` fills of new URLs (``?k=<run><start..>``) on one client and one origin connection."""
    assert sidecar.origin is not None
    protocol, client, origin, app = wired(sidecar)
    for n in range(count):
        head = PASS_REQUEST.replace(b"/pass-1k.json", b"/fill.json?k=%s%d" % (run.encode(), start + n))
        protocol.data_received(head)
        await turns_until(lambda n=n: app.writes > n)
        origin.data_received(ORIGIN_RESPONSE)
    await turns_until(lambda: client.writes >= count)
    for _ in range(50):  # the store writes behind the answers
        await asyncio.sleep(0)
    protocol.connection_lost(None)


async def started() -> tuple[Sidecar, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory()
    settings = SidecarSettings(
        upstream="http://127.0.0.1:9", listen="127.0.0.1:7145", manifest_refresh=3600, log_level="warning"
    )
    cache = CacheSettings(cache_dir=Path(tmp.name), cache_max_entries=10_000_000, cache_max_bytes=2**40)
    sidecar = await start_sidecar(settings, cache)
    sidecar.manifest.rules = RuleSet([Rule(method="GET", path="/fill.json", cache=True, ttl=300)])
    return sidecar, tmp


def breakdown(sidecar: Sidecar) -> list[tuple[str, float]]:
    """Bytes per entry of what the memory store holds (``sys.getsizeof``), as far as it can tell."""
    store: Any = sidecar.store
    shard = getattr(store, "shard", None)
    if shard is None:
        return [("store is not the memory store", 0.0)]
    rows: list[tuple[str, float]] = []
    sizes = getattr(shard, "held_sizes", None)
    if sizes is not None:  # the shard says what it holds
        for name, total in sizes().items():
            rows.append((name, total / max(1, len(shard))))
    else:
        table = shard._entries
        n = max(1, len(table))
        keys = list(table)
        rows.append(("key (str)", sum(sys.getsizeof(k) for k in keys) / n))
        values = list(table.values())
        rows.append(("value (bytes)", sum(sys.getsizeof(v.value) for v in values) / n))
        rows.append(("  of it body", BODY))
        rows.append(("record (namedtuple + float)", sum(sys.getsizeof(v) + 24 for v in values) / n))
        rows.append((f"table ({type(table).__name__})", sys.getsizeof(table) / n))
    rows.append(("near cache items (count)", float(len(sidecar.near))))
    rows.append(("flights in the air (count)", float(len(getattr(sidecar.flights, "_flights", ())))))
    return rows


async def measure(entries: int) -> tuple[int, int, int, list[tuple[str, float]]]:
    sidecar, tmp = await started()
    try:
        await fill(sidecar, 0, WARM, "m")
        gc.collect()
        before = rss_bytes()
        await fill(sidecar, WARM, entries, "m")
        gc.collect()
        after = rss_bytes()
        stored = await sidecar.store.size()
        return before, after, stored, breakdown(sidecar)
    finally:
        await stop_sidecar(sidecar)
        tmp.cleanup()


async def trace(entries: int, top: int) -> list[tuple[str, float, int]]:
    sidecar, tmp = await started()
    try:
        await fill(sidecar, 0, WARM, "t")
        gc.collect()
        tracemalloc.start(12)
        first = tracemalloc.take_snapshot()
        await fill(sidecar, WARM, entries, "t")
        gc.collect()
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        await stop_sidecar(sidecar)
        tmp.cleanup()
    here = ROOT
    grouped: dict[str, list[int]] = {}
    for stat in second.compare_to(first, "traceback"):
        if stat.size_diff <= 0:
            continue
        ours = [f for f in stat.traceback if f.filename.startswith(here) and "/bench/" not in f.filename]
        where = ours[-1] if ours else stat.traceback[-1]  # innermost frame of our code
        name = f"{where.filename.removeprefix(here + '/')}:{where.lineno}"
        slot = grouped.setdefault(name, [0, 0])
        slot[0] += stat.size_diff
        slot[1] += stat.count_diff
    ranked = sorted(grouped.items(), key=lambda item: -item[1][0])
    return [(name, size / entries, count) for name, (size, count) in ranked[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument(
        "--trace", type=int, default=20_000, help="entries filled under tracemalloc (0: skip)"
    )
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    started_at = time.perf_counter()
    before, after, stored, rows = uvloop.run(measure(args.entries))
    per = (after - before) / args.entries
    print(
        f"memory store, {args.entries:,} fills of 1 KB (+ {WARM:,} warm-up), python {sys.version.split()[0]}"
    )
    print()
    print("| entries | stored | RSS before | RSS after | RSS delta | bytes/entry | goal (body + 200) |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.entries:,} | {stored:,} | {before / 2**20:.1f} MB | {after / 2**20:.1f} MB "
        f"| +{(after - before) / 2**20:.1f} MB | {per:,.0f} B "
        f"| {GOAL:,} B ({'met' if per <= GOAL else 'not met'}) |"
    )
    print()
    print("| held per entry (sys.getsizeof) | bytes |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.1f} |")
    if args.trace:
        print()
        print(f"surviving allocations per entry by our innermost line (tracemalloc, {args.trace:,} fills):")
        print()
        print("| where | bytes/entry | blocks |")
        print("|---|---|---|")
        for name, size, count in uvloop.run(trace(args.trace, args.top)):
            print(f"| {name} | {size:,.1f} | {count:,} |")
    print(f"\n({time.perf_counter() - started_at:.0f} s)")


if __name__ == "__main__":
    main()
