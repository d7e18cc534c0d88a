"""Running wrk and reading its report: requests/s, p50/p99 latency, errors, bytes per response.

``run_wrk`` runs for a fixed duration; ``run_wrk_until`` runs until a Lua script writes a marker
file (wrk's ``thread:stop()`` does not end the run early, so the bench interrupts wrk itself).
Every argv that ran is kept in ``WrkResult.argv`` for the report.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as its report says."""

    argv: list[str]
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses."""
    bytes_read: int

    @property
    def bytes_per_response(self) -> float:
        """Average bytes read per response, status line and headers included."""
        return self.bytes_read / self.requests if self.requests else 0.0


def wrk_argv(url: str, duration: int, connections: int, script: Path | None = None) -> list[str]:
    """The wrk command line: one thread (wrk keeps one core, the server the other), --latency."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


def run_wrk(url: str, duration: int, connections: int, script: Path | None = None) -> WrkResult:
    """Run wrk for ``duration`` seconds and parse its report."""
    argv = wrk_argv(url, duration, connections, script)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_report(done.stdout, argv)


def run_wrk_until(
    url: str, marker: Path, connections: int, script: Path, max_seconds: int
) -> tuple[WrkResult, float]:
    """Run wrk until ``script`` writes ``marker`` (or ``max_seconds`` pass); returns the report and
    the seconds it ran."""
    argv = wrk_argv(url, max_seconds, connections, script)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not marker.exists():
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # wrk stops and prints its report
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip() or out.strip()}")
    return parse_report(out, argv), elapsed


def parse_report(out: str, argv: list[str]) -> WrkResult:
    """The numbers of one wrk report (as printed with --latency)."""
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)([KMGT]?B) read", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if total is None or rps is None:
        raise RuntimeError(f"cannot read wrk's report:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        argv=argv,
        requests=int(total.group(1)),
        requests_per_second=float(rps.group(1)),
        p50_ms=_latency_ms(out, "50%"),
        p99_ms=_latency_ms(out, "99%"),
        errors=errors + (int(non2xx.group(1)) if non2xx else 0),
        bytes_read=int(float(total.group(2)) * _UNITS[total.group(3)]),
    )


def _latency_ms(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk_version() -> str:
    """wrk's version line (``wrk --version`` prints it and exits 1)."""
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"
