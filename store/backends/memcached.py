"""The memcached store, over pymemcache's pooled (synchronous) clients run in a small thread pool.

URL: ``memcached://host:port[,host:port...]`` (default ``memcached://localhost:11211``). One
server uses a pooled client; several use pymemcache's ``HashClient`` (rendezvous hashing) with
a FIXED ring: a failing server is never taken out, its keys just fail (counted errors) until it
is back. Taking it out would remap keys, and with them our generation counter, to another
server; once the server returned, every sidecar would see the pre-outage generation again and
entries cleared in between would come back. Memcached has no authentication: credentials in the
URL or in ``TINA4_CACHE_USERNAME``/``PASSWORD`` are ignored (a debug line says so).

Keys (ASCII, far below memcached's 250-byte limit, whatever the caller's key looks like)::

    <namespace>:<layer>:gen                          the generation counter (no expiry)
    <namespace>:<layer>:<gen>:<sha256(key)>          the value, or a chunk manifest
    <namespace>:<layer>:<gen>:<sha256(key)>:<token>:<i>   chunk i of a large value
    <namespace>:<layer>:<gen>:count                  approximate entry count of that generation

Values are the raw bytes (memcached flags 0); no pickle, no serializer.

``clear()`` is one ``incr`` of the generation: every key of the old generation becomes
unreachable and is reclaimed by memcached's LRU or its TTL; ``flush_all`` is never used. A
missing generation (evicted, or a restarted server) is re-created from the wall clock in
microseconds, a value that no earlier generation can have had, so old entries never resurface.
Every read fetches the generation in the same ``get_many`` round trip as the value, so a clear
made by another sidecar is seen at once; writes reuse a generation seen in the last second
(see :data:`GENERATION_REUSE`), so a write made within a second of another sidecar's clear or
of a server restart can be lost (a later miss; never a stale hit).

With several servers, each (namespace, layer) keeps its generation on the one server that
its key hashes to: while that server is down, every call of that layer fails (counted
errors), and a ``get_many`` that touches a dead server fails as a whole.

Large values are chunked, so that operators need not raise memcached's item size (``-I``, 1 MiB
by default): a value longer than ``chunk_bytes`` (1,000,000, leaving room for the key and the
item header under the default 1 MiB) is written as chunks under a random per-write token, then
a small manifest (``<token>:<chunks>:<length>``, flagged :data:`FLAG_CHUNKED`) under the key
itself. Readers need one more round trip for such values, and treat a missing chunk (evicted) or
a length mismatch as a miss. Concurrent writers cannot mix their chunks (distinct tokens). The
chunks of an overwritten or deleted value are left to expire with their TTL or to the LRU.
A server started with an ``-I`` below 1 MiB needs ``chunk_bytes`` lowered to match.

TTL: memcached reads an exptime above 30 days as an absolute unix time, so a ttl above
2,592,000 s is sent as ``now + ttl`` (the server's clock must then agree with ours).

``add()`` (set if absent, the cross-process lock) is memcached's own ``add`` command on the item
key, so the server decides alone which of several sidecars wins. It reads the generation in a
round trip of its own rather than reusing the one seen in the last second: an ``add`` into a
generation that another sidecar has just cleared would take a lock that nobody else can see.
A large value's chunks are written first and the manifest is then ``add``-ed, which keeps the add
one command; the loser deletes its chunks. An item that memcached still holds but no reader can
use (a manifest whose chunk was evicted) is no live value: it is replaced by ``gets`` + ``cas``,
which fails if anyone changed the item in between. Memcached itself decides what has expired
(whole seconds), exactly as for reads.

``size()`` is APPROXIMATE: memcached cannot count keys by prefix. A counter per generation is
incremented when a write creates a key (``add`` succeeded) and decremented when ``delete``
removed one; a clear starts a new generation whose counter is zero. Entries that expire or that
the LRU evicts stay counted until the next ``clear()``, so ``size()`` over-counts then.

``_delete_many`` (the fallback's replay of an outage, ``store.fallback.DeletesMany``) sends each
server its share of the deletes in one round trip: pymemcache's ``HashClient.delete_many`` would
send one command per key and wait for each. Memcached answers a batch without saying which keys
existed, so the keys it removes stay counted by ``size()`` until the next ``clear()``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.retrying import RetryingClient
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

from tina4_sidecar.store.contract import Store

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

log = logging.getLogger(__name__)

DEFAULT_PORT = 11211
MAX_RELATIVE_TTL = 30 * 24 * 3600
"""Memcached reads a larger exptime as an absolute unix timestamp."""

DEFAULT_CHUNK_BYTES = 1_000_000
"""Largest value stored as one item: memcached's default item limit (1 MiB) less key and header."""

GENERATION_REUSE = 1.0
"""Seconds a write may reuse the generation this process last saw instead of fetching it.

Staleness this implies: for up to this long after ANOTHER process cleared, a write from here
can land in the old generation. Such an entry is unreachable, i.e. lost (a later miss); it is
never served, because every read checks the generation in its own round trip.
"""

DEFAULT_THREADS = 8
"""Blocking memcached calls in flight at once per store (and pooled connections per server)."""

FLAG_CHUNKED = 1 << 8
"""Memcached flags of a chunk manifest; 0 is a plain value. Avoids the bits that python-memcache
style clients use for pickle, int and str, so a foreign client never unpickles our manifests."""

_STALE_CONNECTION_ERRORS = (MemcacheUnexpectedCloseError, BrokenPipeError, ConnectionResetError)
"""A pooled connection that a restarted server dropped; retried at once on another connection."""

_SAFE_PREFIX = re.compile(r"[!-~]{1,140}")  # printable ASCII without space: room for the suffixes


class _FlagsSerde:
    """Bytes in, bytes out: reads also hand back memcached's flags, which mark chunk manifests."""

    def serialize(self, key: bytes, value: bytes) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: bytes, value: bytes, flags: int) -> tuple[int, bytes]:
        return flags, value


_SERDE = _FlagsSerde()


def memcached_exptime(ttl: int, now: float | None = None) -> int:
    """Memcached's exptime for ``ttl`` seconds: relative up to 30 days, absolute above, 0 = never."""
    if ttl <= MAX_RELATIVE_TTL:
        return ttl
    return int(now if now is not None else time.time()) + ttl


def parse_servers(url: str) -> list[tuple[str, int]]:
    """``memcached://h1:p1,h2:p2`` -> ``[(h1, p1), (h2, p2)]``; ValueError for anything else."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != "memcached":
        raise ValueError(f"the memcached store needs a memcached:// URL, not {url.split('://')[0]}://")
    netloc = rest.split("/", 1)[0].rpartition("@")[2]  # credentials are meaningless here
    servers: list[tuple[str, int]] = []
    for spec in filter(None, (part.strip() for part in netloc.split(","))):
        if spec.startswith("["):  # [IPv6]:port
            host, _, port_text = spec[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = spec.rpartition(":") if ":" in spec else (spec, "", "")
        if not host or (port_text and not port_text.isdigit()):
            raise ValueError(f"bad memcached server {spec!r} in {url!r}: expected host:port")
        servers.append((unquote(host), int(port_text) if port_text else DEFAULT_PORT))
    if not servers:
        raise ValueError(f"the memcached URL {url!r} names no server")
    return servers


def _url_has_credentials(url: str) -> bool:
    return "@" in url.partition("://")[2].split("/", 1)[0]


class MemcachedStore(Store):
    """One namespace and layer in one memcached server or a hashed set of them."""

    backend_name: ClassVar[str] = "memcached"
    default_url: ClassVar[str] = f"memcached://localhost:{DEFAULT_PORT}"

    def __init__(
        self,
        namespace: str,
        layer: str,
        url: str | None = None,
        *,
        timeout: float = 1.0,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        threads: int = DEFAULT_THREADS,
        credentials_given: bool = False,
    ) -> None:
        """``credentials_given`` only decides whether to log that memcached ignores them."""
        super().__init__(namespace, layer, timeout)
        if not _SAFE_PREFIX.fullmatch(self.prefix):
            raise ValueError(
                f"namespace {namespace!r} cannot prefix memcached keys: printable ASCII without "
                "spaces, at most 130 characters"
            )
        if chunk_bytes < 1024:
            raise ValueError("chunk_bytes must be at least 1024 (memcached's smallest item limit)")
        self.url = url or self.default_url
        self.servers = parse_servers(self.url)
        self.chunk_bytes = chunk_bytes
        self.threads = threads
        if credentials_given or _url_has_credentials(self.url):
            log.debug("memcached is unauthenticated: the cache username and password are ignored")
        self._gen_key = f"{self.prefix}gen"
        self._generation: tuple[int, float] | None = None  # (value, time.monotonic() when seen)
        self._client: Any = None
        self._servers: list[tuple[str, Any]] = []  # ("host:port", client of that server alone)
        self._ring: Any = None  # HashClient's hasher: which "host:port" holds a key (several servers)
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> MemcachedStore:
        return cls(
            settings.cache_namespace,
            layer,
            url or settings.cache_url,
            timeout=settings.cache_timeout,
            credentials_given=bool(settings.cache_username or settings.cache_password),
        )

    @property
    def location(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.servers)

    # -- the contract: each call is one hop to the thread pool --------------------------------

    async def _get(self, key: str) -> bytes | None:
        return (await self._run(self._read_values, [key]))[0]

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self._run(self._read_values, keys)

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        await self._run(self._write_value, key, value, ttl)

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return await self._run(self._add_value, key, value, ttl)

    async def _delete(self, key: str) -> bool:
        return await self._run(self._delete_value, key)

    async def _delete_many(self, keys: list[str]) -> None:
        """Delete every key, one round trip per server; raises on failure (see the module docstring)."""
        if keys:
            await self._run(self._delete_values, keys)

    async def _clear(self) -> None:
        await self._run(self._advance_generation)

    async def _size(self) -> int:
        return await self._run(self._read_count)

    async def _ping(self) -> None:
        await self._run(self._ping_servers)

    async def _open(self) -> None:
        await self._run(self._open_sync)

    async def _close(self) -> None:
        client, self._client = self._client, None
        executor, self._executor = self._executor, None
        self._servers, self._ring = [], None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            # closing sockets does not block on the network
            client.close()

    # -- the blocking side (runs in the pool) ---------------------------------------------------

    def _open_sync(self) -> None:
        self._ping_servers()
        self._remember(self._load_generation())

    def _ping_servers(self) -> None:
        """Every server must answer: a dead one would make its share of the keys fail."""
        self._memcache()
        for address, server in self._servers:
            try:
                server.version()
            except Exception as exc:
                raise ConnectionError(f"memcached at {address} is unreachable: {exc}") from exc

    def _read_values(self, keys: list[str], client: Any = None) -> list[bytes | None]:
        """The values of ``keys`` (None: missing); ``client``: a connection of the caller's own
        (the sync twin's per-thread one) for the reads, else the pooled client."""
        client = self._memcache() if client is None else client
        hashes = {key: _hash(key) for key in keys}
        generation, found = self._read_current([*hashes.values()], client)
        chunked: dict[str, list[str]] = {}  # item key -> its chunk keys
        for item_key, (flags, payload) in found.items():
            if flags == FLAG_CHUNKED:
                chunked[item_key] = _chunk_keys(item_key, payload)
        values: dict[str, bytes] = {k: p for k, (f, p) in found.items() if f == 0}
        if chunked:
            chunks = client.get_many([c for names in chunked.values() for c in names])
            for item_key, names in chunked.items():
                value = _assemble(found[item_key][1], [chunks.get(name) for name in names])
                if value is not None:
                    values[item_key] = value
        return [values.get(self._item_key(generation, hashes[key])) for key in keys]

    def _write_value(self, key: str, value: bytes, ttl: int) -> None:
        client = self._memcache()
        generation = self._generation_for_write()
        item_key = self._item_key(generation, _hash(key))
        expire = memcached_exptime(ttl)
        payload, flags = value, 0
        if len(value) > self.chunk_bytes:
            payload, flags = self._write_chunks(item_key, value, expire), FLAG_CHUNKED
        # add first: it tells a new key (counted by size()) from an overwrite
        if client.add(item_key, payload, expire=expire, noreply=False, flags=flags):
            self._adjust_count(generation, 1)
        elif not client.set(item_key, payload, expire=expire, noreply=False, flags=flags):
            raise MemcacheError("memcached did not store the value")

    def _add_value(self, key: str, value: bytes, ttl: int) -> bool:
        """memcached's ``add`` on the item key of the CURRENT generation: True when this call stored it."""
        client = self._memcache()
        generation, _ = self._read_current([])  # not a reused one: see add() in the module docstring
        item_key = self._item_key(generation, _hash(key))
        expire = memcached_exptime(ttl)
        payload, flags = value, 0
        if len(value) > self.chunk_bytes:
            payload, flags = self._write_chunks(item_key, value, expire), FLAG_CHUNKED
        if client.add(item_key, payload, expire=expire, noreply=False, flags=flags):
            self._adjust_count(generation, 1)  # a new key
            return True
        stored = self._replace_unreadable(item_key, payload, flags, expire)
        if not stored and flags == FLAG_CHUNKED:  # ours lost: nothing will ever read these chunks
            client.delete_many(_chunk_keys(item_key, payload), noreply=False)
        return stored

    def _replace_unreadable(self, item_key: str, payload: bytes, flags: int, expire: int) -> bool:
        """After a failed ``add``: replace the item only if no reader could use it (a manifest with
        a lost chunk), and only if nobody changed it since we looked (``cas``). The key stays
        counted: it existed."""
        client = self._memcache()
        found, token = client.gets(item_key)
        if found is None or token is None:
            return False  # gone meanwhile (expired, deleted): someone else's add may have won already
        held_flags, manifest = found
        if held_flags != FLAG_CHUNKED:
            return False  # a plain value: live
        names = _chunk_keys(item_key, manifest)
        chunks = client.get_many(names) if names else {}
        if _assemble(manifest, [chunks.get(name) for name in names]) is not None:
            return False  # a whole chunked value: live
        return bool(client.cas(item_key, payload, token, expire=expire, noreply=False, flags=flags))

    def _write_chunks(self, item_key: str, value: bytes, expire: int) -> bytes:
        """Store ``value``'s chunks under a fresh token; the manifest that points to them."""
        token = secrets.token_hex(8)
        step = self.chunk_bytes
        count = -(-len(value) // step)
        chunks = {f"{item_key}:{token}:{i}": value[i * step : (i + 1) * step] for i in range(count)}
        failed = self._memcache().set_many(chunks, expire=expire, noreply=False)
        if failed:
            raise MemcacheError(f"memcached did not store {len(failed)} of {count} chunks")
        return f"{token}:{count}:{len(value)}".encode()

    def _delete_value(self, key: str) -> bool:
        generation, _ = self._read_current([])  # a delete must hit the current generation
        existed = bool(self._memcache().delete(self._item_key(generation, _hash(key)), noreply=False))
        if existed:
            self._adjust_count(generation, -1)
        return existed

    def _delete_values(self, keys: list[str]) -> None:
        generation, _ = self._read_current([])  # the current generation, as for one delete
        batches: dict[str, list[str]] = {}
        for key in keys:
            item_key = self._item_key(generation, _hash(key))
            batches.setdefault(self._server_of(item_key), []).append(item_key)
        clients = dict(self._servers)
        for address, item_keys in batches.items():
            clients[address].delete_many(item_keys, noreply=False)

    def _read_count(self) -> int:
        _, found = self._read_current(["count"])
        entry = next(iter(found.values()), None)
        return max(0, int(entry[1])) if entry is not None else 0

    def _advance_generation(self) -> None:
        client = self._memcache()
        generation = _as_int(client.incr(self._gen_key, 1, noreply=False))
        if generation is None:  # missing: a fresh one is as good as an increment
            generation = self._create_generation() or _as_int(client.incr(self._gen_key, 1, noreply=False))
        if generation is None:
            raise MemcacheError("memcached did not advance the generation")
        self._remember(generation)

    def _adjust_count(self, generation: int, delta: int) -> None:
        client, count_key = self._memcache(), self._item_key(generation, "count")
        if delta < 0:
            client.decr(count_key, -delta, noreply=True)  # memcached stops decrements at 0
        elif _as_int(client.incr(count_key, delta, noreply=False)) is None and not client.add(
            count_key, str(delta).encode(), expire=0, noreply=False
        ):
            client.incr(count_key, delta, noreply=False)  # another writer created it meanwhile

    # -- generations ------------------------------------------------------------------------------

    def _read_current(
        self, suffixes: list[str], client: Any = None
    ) -> tuple[int, dict[str, tuple[int, bytes]]]:
        """The current generation and the items ``<prefix><gen>:<suffix>`` found under it.

        One round trip when this process's generation is still current: the generation rides
        along in the same ``get_many``. A second one only after another process cleared.
        """
        client = self._memcache() if client is None else client
        seen = self._generation[0] if self._generation is not None else self._load_generation()
        found = client.get_many([self._gen_key, *(self._item_key(seen, s) for s in suffixes)])
        current = _parse_generation(found.pop(self._gen_key, None))
        if current is None:  # evicted or restarted: nothing under a new generation yet
            current = self._load_generation()
            found = {}
        if current != seen:
            found = client.get_many([self._item_key(current, s) for s in suffixes]) if suffixes else {}
        self._remember(current)
        return current, found

    def _generation_for_write(self) -> int:
        seen = self._generation
        if seen is not None and time.monotonic() - seen[1] < GENERATION_REUSE:
            return seen[0]
        generation = self._load_generation()
        self._remember(generation)
        return generation

    def _load_generation(self) -> int:
        current = _parse_generation(self._memcache().get(self._gen_key))
        if current is None:
            current = self._create_generation()
        if current is None:  # lost the race to create it: read the winner's
            current = _parse_generation(self._memcache().get(self._gen_key))
        if current is None:
            raise MemcacheError("memcached did not keep the generation counter")
        return current

    def _create_generation(self) -> int | None:
        """A generation no earlier one can equal (microseconds since the epoch); None if one exists."""
        fresh = time.time_ns() // 1000
        stored = self._memcache().add(self._gen_key, str(fresh).encode(), expire=0, noreply=False)
        return fresh if stored else None

    def _remember(self, generation: int) -> None:
        # one tuple assignment: atomic for the pool's threads
        self._generation = (generation, time.monotonic())

    # -- plumbing -----------------------------------------------------------------------------------

    def _item_key(self, generation: int, suffix: str) -> str:
        return f"{self.prefix}{generation}:{suffix}"

    def _server_of(self, item_key: str) -> str:
        """The "host:port" that holds ``item_key``: HashClient's own choice (the fixed ring)."""
        return self._servers[0][0] if self._ring is None else str(self._ring.get_node(item_key))

    async def _run[T](self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="tina4-memcached")
        self._memcache()  # built on the loop's thread: pool threads never race to build two
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    def _memcache(self) -> Any:
        """The client, built on first use (no I/O: pymemcache connects lazily)."""
        if self._client is None:
            options: dict[str, Any] = {
                "serde": _SERDE,
                "connect_timeout": self.timeout,
                "timeout": self.timeout,
                "no_delay": True,
                "max_pool_size": self.threads,
                "default_noreply": False,
            }
            if len(self.servers) == 1:
                inner: Any = PooledClient(self.servers[0], **options)
                per_server = {f"{inner.server[0]}:{inner.server[1]}": inner}
            else:
                inner = HashClient(
                    self.servers,
                    use_pooling=True,
                    # the fixed ring of the module docstring: never mark a server dead, retry
                    # a failing one on every call and let its errors reach the caller. (Its
                    # failure bookkeeping is not thread-safe; a race there costs one error.)
                    retry_attempts=2**62,
                    retry_timeout=0,
                    ignore_exc=False,
                    **options,
                )
                per_server = dict(inner.clients)  # keyed by "host:port", as its ring names them
                self._ring = inner.hasher
            self._client = _retrying(inner, self.threads)
            self._servers = [(address, _retrying(c, self.threads)) for address, c in per_server.items()]
        return self._client


def _retrying(client: Any, pool_size: int) -> RetryingClient:
    """``client`` retried at once on another connection when a pooled one turns out dead.

    A restarted server leaves a dead socket in each pooled connection; these errors come
    without waiting for a timeout, so trying up to the whole pool costs little.
    """
    return RetryingClient(client, attempts=pool_size + 1, retry_for=_STALE_CONNECTION_ERRORS)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _as_int(result: object) -> int | None:
    """An ``incr`` result: None for NOT_FOUND and for HashClient's ``False`` of a failing server."""
    return result if type(result) is int else None


def _parse_generation(entry: tuple[int, bytes] | None) -> int | None:
    if entry is None:
        return None
    try:
        return int(entry[1])
    except ValueError:
        return None


def _chunk_keys(item_key: str, manifest: bytes) -> list[str]:
    """The chunk keys a manifest names; none for a malformed one (then the read is a miss)."""
    parts = manifest.decode("ascii", "replace").split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return []
    return [f"{item_key}:{parts[0]}:{i}" for i in range(int(parts[1]))]


def _assemble(manifest: bytes, chunks: list[tuple[int, bytes] | None]) -> bytes | None:
    """The value behind a manifest, or None when a chunk is missing or the length is wrong."""
    if not chunks or any(chunk is None for chunk in chunks):
        return None
    value = b"".join(chunk[1] for chunk in chunks if chunk is not None)
    length = manifest.rsplit(b":", 1)[-1]
    return value if length.isdigit() and int(length) == len(value) else None
