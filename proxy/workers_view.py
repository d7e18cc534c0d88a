"""One view of a sidecar run with ``--workers N``: stats and metrics summed over every worker.

Each scrape or ``stats`` call lands on whichever worker the kernel picks (SO_REUSEPORT), so
each worker writes its counters (``Metrics.snapshot()``) to a file in a folder the supervisor
made before forking (``run_folder``: ``/dev/shm`` where it exists), every
``WRITE_SECONDS`` and when it stops; the worker that answers writes its own first, then sums
every file. Why files rather than prometheus-client's multiprocess mode: the sidecar's counters
are plain numbers bumped on the HIT path (``proxy/metrics.py`` says why: a sixth of the cost of
prometheus-client's own metric objects), and its multiprocess mode works only with those
objects; a snapshot of the plain numbers, summed at scrape time, keeps the HIT path as it is.

Counters of a worker that died stay in the sum (its file stays), so totals never go down when
the supervisor replaces a worker; gauges of the moment (requests in flight) count live workers
only. The counters of peers are at most ``WRITE_SECONDS`` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tina4_sidecar.proxy.metrics import Metrics
from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.workers")

WRITE_SECONDS = 0.5
SHM = Path("/dev/shm")

FOLDER: list[Path] = []
"""The supervisor's folder (empty without ``--workers``); set before the workers are forked."""


@contextlib.contextmanager
def run_folder() -> Iterator[Path]:
    """The folder the workers write their counters to; removed when the supervisor exits."""
    parent = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="tina4-sidecar-view-", dir=parent))
    FOLDER[:] = [folder]
    try:
        yield folder
    finally:
        FOLDER.clear()
        shutil.rmtree(folder, ignore_errors=True)


def in_flight(sidecar: Sidecar) -> int:
    """Requests being answered now by this process, on both transports."""
    busy = 0
    for transport in sidecar.fast_connections:
        protocol: Any = transport.get_protocol()
        forwarder = getattr(protocol, "forwarder", None)
        if getattr(protocol, "lookup", None) is not None or (forwarder is not None and forwarder.busy):
            busy += 1
    return busy + sidecar.slow_in_flight


@dataclass
class View:
    """What the admin API reports: these counters, over ``workers`` live processes."""

    metrics: Metrics
    workers: list[int]
    in_flight: int


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Snapshots:
    """This worker's file, and the sum of all of them."""

    def __init__(self, sidecar: Sidecar, folder: Path) -> None:
        self.sidecar = sidecar
        self.folder = folder
        self.pid = os.getpid()
        self.path = folder / f"{self.pid}.json"
        self._task: asyncio.Task[None] | None = None

    def write(self) -> None:
        metrics = self.sidecar.metrics.snapshot()
        data = {"pid": self.pid, "metrics": metrics, "in_flight": in_flight(self.sidecar)}
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(data, separators=(",", ":")))
            temporary.replace(self.path)
        except OSError as exc:  # a full /dev/shm: the view lacks this worker until it can write
            log.warning("cannot write this worker's counters to %s: %s", self.path, exc)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(WRITE_SECONDS)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.write()

    def view(self) -> View:
        self.write()
        total = Metrics()
        total.started = self.sidecar.metrics.started
        workers: list[int] = []
        busy = 0
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                total.add(data["metrics"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.debug("skipping %s: %s", path, exc)
                continue
            pid = int(data["pid"])
            if _alive(pid):
                workers.append(pid)
                busy += int(data.get("in_flight", 0))
        return View(total, workers, busy)


def view_of(sidecar: Sidecar) -> View:
    """The whole sidecar's counters: this process's, or every worker's summed."""
    snapshots = sidecar.snapshots
    if isinstance(snapshots, Snapshots):
        return snapshots.view()
    return View(sidecar.metrics, [os.getpid()], in_flight(sidecar))


def follow(sidecar: Sidecar) -> Snapshots | None:
    """Start writing this worker's counters (under ``--workers`` only)."""
    if not FOLDER:
        return None
    snapshots = Snapshots(sidecar, FOLDER[0])
    snapshots.start()
    return snapshots
