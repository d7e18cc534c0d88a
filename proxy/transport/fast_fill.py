"""Cacheable misses filled on the fast path: fetched on a pooled raw connection to the app, relayed to
the client as they arrive, kept for the cache, and shared with the requests that waited.

A fill is the aiohttp path's miss (``pipeline.fetch_and_stream``) for the simplest case: a GET of
a cached route with no entry at all (nothing stale to revalidate or to serve on an error) and no
variant index. It makes the same decisions through the same functions: the request for the app
(``fetch.origin_headers``), the storage decision (``fetch.storage_for``), the entry
(``fetch.untagged_entry``/``make_entry``), the headers of the answer (``cache_headers``). The
flight (``proxy/flights.py``) is the same one the aiohttp path's requests wait on.

The entry goes into the near cache and to its waiters before the last bytes go to the client, and
is written to the store behind the response (a network store's round trip is not the client's to
wait for); a write that fails is counted by the store. A fill outlives a client that leaves: the
answer is still read whole for the store and the waiters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol

from multidict import CIMultiDict

from tina4_sidecar.proxy.cluster_lock import acquire_lock, fresh_entry
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cache_headers import Kind
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.storage import Storage
from tina4_sidecar.proxy.near.cache import prebuild
from tina4_sidecar.proxy.origin.fetch import (
    entry_tags,
    make_entry,
    origin_headers,
    storage_for,
    store_entry,
    untagged_entry,
)
from tina4_sidecar.proxy.origin.pool import OriginConnection
from tina4_sidecar.proxy.origin.relay import Relay, gateway_error_bytes, serialised
from tina4_sidecar.proxy.transaction import Transaction

if TYPE_CHECKING:
    from tina4_sidecar.proxy.http.request_head import RequestHead
    from tina4_sidecar.proxy.origin.forwarder import Forwarder

log = logging.getLogger("tina4_sidecar.proxy")


def answer_bytes(entry: Entry, kind: Kind, name: str, head_only: bool) -> bytes:
    """A whole answer from ``entry`` as bytes (a coalesced waiter's, ``Kind.COLLAPSED``)."""
    head, replayed = prebuild(entry)
    lines = [] if replayed.dated else [b"Date: " + formatdate(usegmt=True).encode()]
    lines.extend(
        f"{header}: {value}".encode("latin-1", "surrogateescape")
        for header, value in ch.answer_headers(kind, entry, time.time(), name, replayed.inner_status)
    )
    return b"".join((head, b"\r\n".join(lines), b"\r\n\r\n", b"" if head_only else entry.body))


class Connection(Protocol):
    """What a fill needs of the client's connection (``fast_path.FastPath``)."""

    forwarder: Forwarder
    client_ip: str | None

    def buffer_answered(self, block_length: int) -> None: ...

    def starting(self, head: RequestHead) -> str:
        """The fetch begins (timing, the access log): the request id to send the app."""
        ...

    def write_answer(
        self, data: bytes, status: int, outcome: str, head: RequestHead, route: str | None, block_length: int
    ) -> None: ...


async def miss(conn: Connection, tx: Transaction, generation: int, block_length: int) -> bool:
    """A cached route's GET with no entry: wait for the fetch already running for it, or become
    that fetch. False when the aiohttp path must take it (another sidecar holds the store lock)."""
    sidecar = tx.sidecar
    waiting = sidecar.flights.waiting_list(tx.key)
    if waiting is not None:
        sidecar.metrics.coalesced_waiter(tx.route)
        shared = await asyncio.shield(waiting)
        entry = shared.entry
        if entry is not None and not entry.vary:
            answer = answer_bytes(entry, Kind.COLLAPSED, sidecar.name, tx.head.method == "HEAD")
            conn.write_answer(answer, entry.status, "miss", tx.head, tx.route, block_length)
            return True
        if shared.error is not None:
            answer = gateway_error_bytes(sidecar.upstream.base_url, shared.error)
            conn.write_answer(answer, int(answer[9:12]), "error", tx.head, tx.route, block_length)
            return True
        return False  # not shareable: aiohttp's path asks the app for this one
    lock = await acquire_lock(sidecar, tx.key)
    if lock is None:
        return False  # another sidecar is fetching it: aiohttp's path waits for its entry
    if sidecar.store.backend_name != "memory":
        entry = await fresh_entry(tx)  # stored meanwhile, by a fetch that ended after our lookup
        if entry is not None:
            await sidecar.store.delete(lock)
            answer = answer_bytes(entry, Kind.COLLAPSED, sidecar.name, tx.head.method == "HEAD")
            conn.write_answer(answer, entry.status, "miss", tx.head, tx.route, block_length)
            return True
    tx.flight = sidecar.flights.take_off(tx.key)
    job = FillJob(tx, generation, lock)
    headers = origin_headers(tx)
    request_id = conn.starting(tx.head)
    if "X-Request-ID" not in headers:  # made here: the app and the access log see the same id
        headers["X-Request-ID"] = request_id
    request = serialised("GET", tx.fetch_target, headers)
    conn.buffer_answered(block_length)
    conn.forwarder.start(request, job)
    return True


class FillJob:
    """One request's fill, over however many attempts it takes (``forwarder.Exchanges``)."""

    def __init__(self, tx: Transaction, generation: int, lock: str | None) -> None:
        self.tx = tx
        self.generation = generation
        """``NearCache.generation`` as read before the lookup (see ``NearCache.put``)."""
        self.lock = lock
        self.started = time.monotonic()
        self.attempt: Fill | None = None
        tx.request_time = time.time()

    @property
    def route(self) -> str | None:
        return self.tx.route

    def __call__(self, forwarder: Forwarder, origin: OriginConnection, request: bytes, reused: bool) -> Relay:
        self.attempt = Fill(forwarder, origin, request, reused, self)
        return self.attempt

    def given_up(self, exc: Exception) -> None:
        written = self.attempt is not None and self.attempt.written
        self.tx.share(NOT_SHAREABLE if written else Shared(error=exc))  # waiters answer as this one did
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            lock, self.lock = self.lock, None
            self.tx.sidecar.keep(self.tx.sidecar.store.delete(lock))

    def stored(self, entry: Entry) -> None:
        """The entry is made: near cache, waiters, then the store behind the response."""
        sidecar = self.tx.sidecar
        # Only an entry without Vary answers every request for the URL; a variant never goes near.
        # On the memory store the entry is in this process already (written before the next request
        # is read): the near copy comes with its first HIT, as on aiohttp's path, not with every fill.
        kept_near = (
            not entry.vary
            and sidecar.store.backend_name != "memory"
            and sidecar.near.put(self.tx.key, entry, self.generation) is not None
        )
        self.tx.share(Shared(entry))
        sidecar.keep(self._write(entry, kept_near))

    async def _write(self, entry: Entry, kept_near: bool) -> None:
        try:
            await store_entry(self.tx.sidecar, self.tx.key, entry, near_has_it=kept_near)
        finally:
            self.release()

    async def tagged(self, storage: Storage, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        """An answer with tags: their tokens are read first (a tag purge meanwhile: not stored)."""
        try:
            entry = await make_entry(self.tx, storage, status, headers, body)
        except Exception:
            self.tx.share(NOT_SHAREABLE)
            self.release()
            raise
        if entry is None:
            self.tx.share(NOT_SHAREABLE)
            self.release()
        else:
            self.stored(entry)


class Fill(Relay):
    """One attempt: the app's answer relayed like ``Relay``'s, with the cache's headers, and kept."""

    __slots__ = ("body", "job", "response", "status", "storage")

    outcome = "miss"
    outlives_client = True

    def __init__(
        self, forwarder: Forwarder, origin: OriginConnection, request: bytes, reused: bool, job: FillJob
    ) -> None:
        super().__init__(forwarder, origin, request, reused)
        self.job = job
        self.body: bytearray | None = None
        self.storage: Storage | None = None
        self.status = 0
        self.response: CIMultiDict[str] = CIMultiDict()

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        tx = self.job.tx
        sidecar = tx.sidecar
        settings = sidecar.settings
        tx.response_time, tx.fetch_seconds = time.time(), time.monotonic() - self.job.started
        sidecar.metrics.origin_fetch(tx.route, status, tx.fetch_seconds)
        response = CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
        storage = storage_for(tx, status, response)
        length = response.get("Content-Length", "")
        if isinstance(storage, Storage) and not (length.isdigit() and int(length) > tx.object_limit):
            self.storage, self.body = storage, bytearray()
        self.status, self.response = status, response
        out = ch.miss_answer(response, settings.tag_header, settings.honor_cache_control)
        stored_ttl = self.storage.ttl if self.storage is not None else None
        out.extend(ch.miss_headers(response.items(), sidecar.name, status, stored_ttl))
        if "Date" not in out:
            out["Date"] = formatdate(usegmt=True)
        if status not in (204, 304) and "Content-Length" not in out:
            self.chunked = True
            out["Transfer-Encoding"] = "chunked"
        lines = [b"HTTP/1.1 %d %s" % (status, reason)]
        lines.extend(f"{name}: {value}".encode("latin-1", "surrogateescape") for name, value in out.items())
        lines.append(b"\r\n")
        self.pending.append(b"\r\n".join(lines))

    def response_body(self, chunk: bytes) -> None:
        if self.body is not None:
            self.body += chunk
            if len(self.body) > self.job.tx.object_limit:
                self.body = None  # relayed, not stored
        super().response_body(chunk)

    def response_end(self) -> None:
        job = self.job
        if self.body is None or self.storage is None:
            job.tx.share(NOT_SHAREABLE)
            job.release()
        elif entry_tags(job.tx, self.response):
            job.tx.sidecar.keep(job.tagged(self.storage, self.status, self.response, bytes(self.body)))
        else:
            # Before the last bytes reach the client: one that asks again at once finds the entry.
            job.stored(untagged_entry(job.tx, self.storage, self.status, self.response, bytes(self.body)))
        super().response_end()
