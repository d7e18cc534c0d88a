"""Size bounds of the file store: TINA4_CACHE_MAX_ENTRIES and TINA4_CACHE_MAX_BYTES, with eviction.

Each layer directory (responses, key/value, query results) is bounded on its own, as each
memory store is. A store that wrote since the last check lists its layer's files (names and
``stat`` only, never contents) at most once per ``CHECK_SECONDS`` and, when there are more
files or more bytes than allowed, removes the oldest written until both are under 90% of the
bounds (so that one write does not trigger the next eviction at once). Oldest written, not least
recently read: a read does not touch the file, which keeps reads free of writes. Several
processes sharing the directory may evict at once; a file removed twice is simply gone.
Evicting an invalidation token or a lock only ever causes a miss (``store/invalidation.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECK_SECONDS = 1.0
TARGET = 0.9


@dataclass(frozen=True)
class Bounds:
    max_entries: int
    max_bytes: int


def enforce(directory: Path, bounds: Bounds) -> int:
    """Remove the oldest entry files of ``directory`` (a layer) over ``bounds``; how many."""
    files: list[tuple[float, int, str]] = []
    total = 0
    try:
        fanout = [entry.path for entry in os.scandir(directory) if entry.is_dir() and len(entry.name) == 2]
    except FileNotFoundError:
        return 0
    for sub in fanout:
        try:
            entries = list(os.scandir(sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if len(entry.name) != 64:  # temporary files and locks are not entries
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, entry.path))
            total += stat.st_size
    if len(files) <= bounds.max_entries and total <= bounds.max_bytes:
        return 0
    files.sort()
    keep_entries = int(bounds.max_entries * TARGET)
    keep_bytes = int(bounds.max_bytes * TARGET)
    count = len(files)
    removed = 0
    for _, size, path in files:
        if count <= keep_entries and total <= keep_bytes:
            break
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
        count -= 1
        total -= size
    return removed
