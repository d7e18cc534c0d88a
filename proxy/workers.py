"""``--workers N``: N sidecar processes accepting on one port (SO_REUSEPORT), under one supervisor.

The supervisor forks the workers before any event loop exists, passes SIGINT, SIGTERM, SIGQUIT
(stop, draining) and SIGHUP (reload) on to them, starts a new one when one dies unexpectedly (at
most a few times a minute, so a worker that cannot start does not spin), and exits when all have
stopped. It never dies of a signal it handles; and its workers die with it even when it is
killed outright (SIGKILL, an OOM kill): each worker asks the kernel for SIGTERM when its parent
goes (``PR_SET_PDEATHSIG``), and where that is unavailable checks its parent every second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger("tina4_sidecar.workers")

RESTARTS_PER_MINUTE = 5
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Ask Linux to send this process SIGTERM when its parent exits; False where it cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent went before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
    return True


PARENT_WATCHED: list[int] = []
"""The supervisor's pid, in a worker where ``die_with_parent`` failed (``server`` polls it)."""


def supervise(count: int, work: Callable[[], None]) -> int:
    """Run ``work`` in ``count`` forked processes; returns the exit status for the supervisor."""
    children: dict[int, int] = {}  # pid -> worker number
    restarts: list[float] = []
    stopping = False

    def spawn(number: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in STOPPING:
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop takes it (reload)
            if not die_with_parent(parent):
                PARENT_WATCHED.append(parent)
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
        forward(signal.SIGTERM if signum == signal.SIGQUIT else signum, _frame)

    def forward(signum: int, _frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in STOPPING:
        signal.signal(sig, stop)
    signal.signal(signal.SIGHUP, forward)
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
