"""``--workers N``: N sidecar processes accepting on one port (SO_REUSEPORT), under one supervisor.

The supervisor forks the workers before any event loop exists, passes SIGINT/SIGTERM on to them,
starts a new one when one dies unexpectedly (at most a few times a minute, so a worker that
cannot start does not spin), and exits when all have stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger("tina4_sidecar.workers")

RESTARTS_PER_MINUTE = 5


def supervise(count: int, work: Callable[[], None]) -> int:
    """Run ``work`` in ``count`` forked processes; returns the exit status for the supervisor."""
    children: dict[int, int] = {}  # pid -> worker number
    restarts: list[float] = []
    stopping = False

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            status = 0
            try:
                work()
            except BaseException as exc:  # report and exit; the supervisor decides what next
                if not isinstance(exc, KeyboardInterrupt | SystemExit):
                    print(f"tina4-sidecar: worker {number} failed: {exc}", file=sys.stderr)
                    status = 1
            os._exit(status)
        children[pid] = number

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for number in range(count):
        spawn(number)
    log.info("%d workers started: %s", count, ", ".join(str(pid) for pid in children))
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        number = children.pop(pid)
        if os.waitstatus_to_exitcode(code) != 0:
            status = 1
        if stopping:
            continue
        now = time.monotonic()
        restarts[:] = [at for at in restarts if now - at < 60]
        if len(restarts) >= RESTARTS_PER_MINUTE:
            log.error("worker %d exited again; too many restarts, stopping", number)
            stop(signal.SIGTERM, None)
            continue
        restarts.append(now)
        log.warning("worker %d (pid %d) exited; starting a new one", number, pid)
        spawn(number)
    return status
