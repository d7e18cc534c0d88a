"""The sidecar's control announcement: who it is, where its admin API is, and the token that lets
the app purge there, sent on every manifest request (``X-Tina4-Sidecar``, see
``client/sidecars.py``).

The id and the control token are made once per sidecar (the supervisor of ``--workers N``, before
it forks, so every worker answers to the same token and the app registers the sidecar once). The
token authorises ``POST <prefix>purge`` only, on the public listener too, whether or not an admin
token is set. The store id is read from the store (``~store-id`` in the response layer, created by
whoever opens the store first): the app compares it with its own to tell whether it must deliver
its purges here or whether their shared store already does. The app's answer names its store
(``X-Tina4-Store``); a sidecar on a network store that finds the app on another store says so,
once.
"""

from __future__ import annotations

import json
import logging
import secrets

from tina4_sidecar.config import SidecarSettings
from tina4_sidecar.store.contract import Store

log = logging.getLogger("tina4_sidecar.manifest")

HEADER = "X-Tina4-Sidecar"
STORE_HEADER = "X-Tina4-Store"
STORE_ID_KEY = "~store-id"

SIDECAR_ID = secrets.token_hex(8)
CONTROL_TOKEN = secrets.token_urlsafe(32)
"""Made at import, in the process that forks the workers: all of them share these."""


async def store_id(store: Store) -> str:
    found = await store.get(STORE_ID_KEY)
    if found is None:
        candidate = secrets.token_hex(12).encode()
        if not await store.add(STORE_ID_KEY, candidate, 0):
            found = await store.get(STORE_ID_KEY)
        found = found or candidate
    return found.decode("ascii", "replace")


class Announcer:
    """The headers of a manifest request, and the check of the app's answer."""

    def __init__(self, settings: SidecarSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.store_id: str | None = None
        self._warned: set[str] = set()

    async def headers(self) -> dict[str, str]:
        self.store_id = await store_id(self.store)
        _, port = self.settings.admin_address or self.settings.listen_address
        body: dict[str, object] = {
            "id": SIDECAR_ID,
            "port": port,
            "prefix": self.settings.admin_prefix,
            "token": CONTROL_TOKEN,
            "store": self.store_id,
            "backend": self.store.backend_name,
            "refresh": self.settings.manifest_refresh,
        }
        if self.settings.control_url:
            body["url"] = self.settings.control_url
        return {HEADER: json.dumps(body, separators=(",", ":"))}

    def answered(self, app_store: str | None) -> None:
        """The app's store id (None: a client without the announcement)."""
        if app_store is None or app_store == self.store_id or self.store.backend_name in ("memory", "file"):
            return
        if app_store not in self._warned:
            self._warned.add(app_store)
            log.warning(
                "the app caches in another store than this sidecar (%s): its purges reach this sidecar "
                "over the admin API, but key/value values and query results are not shared; point both "
                "at one TINA4_CACHE_BACKEND/TINA4_CACHE_URL",
                self.store.backend_name,
            )
