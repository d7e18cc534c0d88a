"""One warning per store and reason in the whole process, whichever path (sync or async) and
however many layers (``kv``, ``meta``, ``query``, ``resp``) meet the same failure."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("tina4_sidecar.store")

_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def warn_once(where: str, message: str) -> bool:
    """Log ``message`` unless this process already said it for ``where``; True when logged."""
    with _lock:
        if (where, message) in _warned:
            return False
        _warned.add((where, message))
    log.warning(message)
    return True


def recovered(where: str) -> bool:
    """``where`` answers again: its next failure is worth a warning again. True when a warning
    had been given for it (so that one line, not one per layer, says it is back)."""
    with _lock:
        gone = {item for item in _warned if item[0] == where}
        _warned.difference_update(gone)
    return bool(gone)
