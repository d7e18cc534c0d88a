"""The sidecars in front of this app, as they announce themselves when they fetch the manifest.

A sidecar's manifest request carries ``X-Tina4-Sidecar``: JSON with its id, the address of its
admin API (a port, taken with the request's peer address, or a URL it was told to announce:
``TINA4_SIDECAR_CONTROL_URL``), a control token that authorises purges there, the id of its store
and its manifest refresh interval. ``register()`` (called by the manifest route) keeps it in
``<TINA4_CACHE_DIR>/sidecars/<id>.json``, so that every worker process of the app finds every
sidecar, whichever worker happened to answer its manifest request. A registration lapses when
the sidecar stops fetching the manifest (three refresh intervals, at least a minute): a sidecar
that went away is not purged forever.

The store id (``~store-id`` in the response layer, created once by whoever opens the store first)
says whether two processes share a store: the app delivers a purge over a sidecar's admin API
only when that sidecar's store is not its own (``client/purge.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tina4_sidecar.client import runtime

log = logging.getLogger("tina4_sidecar.client")

HEADER = "X-Tina4-Sidecar"
STORE_HEADER = "X-Tina4-Store"
STORE_ID_KEY = "~store-id"
MIN_LIFETIME = 60.0
_warned: set[str] = set()


@dataclass(frozen=True)
class Sidecar:
    id: str
    control: str
    """Base URL of its admin API, e.g. ``http://10.0.0.5:7145/__sidecar/``."""
    token: str
    store: str
    backend: str
    expires: float

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "control", "token", "store", "backend", "expires")}


def directory() -> Path:
    return Path(runtime.settings().cache_dir) / "sidecars"


def parse(header: str, peer: str) -> Sidecar | None:
    """The sidecar an ``X-Tina4-Sidecar`` value announces (``peer``: the request's socket peer)."""
    try:
        data = json.loads(header)
        ident, token, store = str(data["id"]), str(data["token"]), str(data["store"])
        prefix = str(data.get("prefix") or "/__sidecar/")
        refresh = float(data.get("refresh") or 30)
        url = data.get("url")
        if not url:
            port = int(data["port"])
            host = f"[{peer}]" if ":" in peer else peer
            url = f"http://{host or '127.0.0.1'}:{port}"
    except (ValueError, KeyError, TypeError):
        return None
    if (
        not ident.replace("-", "").isalnum()
        or len(ident) > 64
        or not str(url).startswith(("http://", "https://"))
    ):
        return None
    lifetime = max(3 * refresh, MIN_LIFETIME)
    base = str(url).rstrip("/") + "/" + prefix.strip("/") + "/"
    return Sidecar(ident, base, token, store, str(data.get("backend", "?")), time.time() + lifetime)


def register(sidecar: Sidecar) -> None:
    """Keep ``sidecar`` where every worker of this app finds it (an atomic file replace)."""
    folder = directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".reg-")
        with os.fdopen(fd, "w") as handle:
            json.dump(sidecar.as_json(), handle)
        os.chmod(temp, 0o600)  # it holds the sidecar's control token
        os.replace(temp, folder / f"{sidecar.id}.json")
    except OSError as exc:
        if str(folder) not in _warned:
            _warned.add(str(folder))
            log.warning("cannot keep the sidecar registration in %s (%s): purges may miss it", folder, exc)


def known() -> list[Sidecar]:
    """Every sidecar whose registration has not lapsed."""
    found: list[Sidecar] = []
    now = time.time()
    try:
        paths = sorted(directory().glob("*.json"))
    except OSError:
        return found
    for path in paths:
        try:
            data = json.loads(path.read_text())
            sidecar = Sidecar(
                **{k: data[k] for k in ("id", "control", "token", "store", "backend")},
                expires=float(data["expires"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if sidecar.expires > now:
            found.append(sidecar)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def own_store_id() -> str:
    """The id of the response layer of this process's store, created if the store has none."""
    store = runtime.sync_store("resp")
    found = store.get(STORE_ID_KEY)
    if found is None:
        candidate = secrets.token_hex(12).encode()
        if not store.add(STORE_ID_KEY, candidate, 0):
            found = store.get(STORE_ID_KEY)
        found = found or candidate
    return found.decode("ascii", "replace")


def warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)
