"""``--workers N`` on the memory store: the workers are one cache, sharing a file store on tmpfs.

A memory store is one process's own, so N workers would be N caches (each fetching every key from
the app, each serving its own copy, a purge reaching one of them). The supervisor therefore gives
its workers, before it forks them, one private directory in shared memory (``/dev/shm`` where it
exists, else the temporary directory) and the file store in it. Why the file store there, rather
than a new shared-memory store or a store process: it is the store the project already tests as
the fallback, shared by processes with atomic replaces; ``add`` is atomic across processes (an
``flock``), so the store lock of ``proxy/cluster_lock.py`` makes a cold key one app fetch per
sidecar whatever worker gets it; on tmpfs its reads and writes never touch a disk; and its change
log (``store/backends/file_push.py``) is push invalidation for the workers' near caches, so a HIT
still costs no store read and a purge that reaches any worker reaches every worker's near cache
within the log's poll interval. The directory is removed when the supervisor exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tina4_sidecar.config import Backend, CacheSettings

log = logging.getLogger("tina4_sidecar.workers")

SHM = Path("/dev/shm")


@contextlib.contextmanager
def shared_by_workers(settings: CacheSettings, workers: int) -> Iterator[CacheSettings]:
    """The settings the workers run with: the same, unless N > 1 share the memory store."""
    if workers <= 1 or settings.cache_backend is not Backend.MEMORY:
        yield settings
        return
    parent = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="tina4-sidecar-workers-", dir=parent))
    log.info("%d workers share one memory cache (a file store in %s)", workers, folder)
    try:
        yield settings.model_copy(update={"cache_backend": Backend.FILE, "cache_dir": folder})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
