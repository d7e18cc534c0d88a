"""Memcached servers for tests, each on a free loopback port, and a raw pymemcache client.

``memcached_server()`` runs the ``memcached`` on PATH with its default item size limit (1 MiB),
so the store's chunking of large values is exercised against the limit operators really have.
``listable=True`` is for tests that list the keys a server holds (``lru_crawler metadump``).
Memcached keeps everything in memory: a server stopped and started again is empty.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pymemcache.client.base import Client

from tests.servers.process import ServerProcess, require_binary


def memcached_binary() -> str:
    return require_binary("memcached", "install memcached 1.6 or later (apt-get install memcached)")


LISTABLE = ("-o", "no_lru_maintainer")
"""A flat LRU, for servers whose keys a test lists with ``lru_crawler metadump``.

With the default segmented LRU, the LRU maintainer thread moves items that were just read from
one segment to another in the background, and a metadump that runs meanwhile misses the items
it moved behind the crawler: measured here (memcached 1.6.18), 46 keys written, read back, then
dumped, 1,500 rounds: some keys missing in 1,001 rounds with the default LRU, in 0 with this
one. (That is how ``test_two_servers_share_the_keys_and_all_are_readable`` once counted 45 of
46 keys.) Without the maintainer a read bumps an item within its one LRU, under the lock, and
the crawler sees every item. Storage and expiry behave the same either way.
"""


def memcached_server(extra_args: Sequence[str] = (), listable: bool = False) -> ServerProcess:
    """An unstarted memcached on a free port (64 MiB of memory, no UDP); ``listable``: see LISTABLE."""
    binary = memcached_binary()
    if listable:
        extra_args = (*LISTABLE, *extra_args)

    def argv(port: int) -> list[str]:
        args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-t", "2"]
        if os.geteuid() == 0:  # memcached refuses to run as root without a user to switch to
            args += ["-u", "nobody"]
        return [*args, *extra_args]

    return ServerProcess("memcached", argv)


def kill(server: ServerProcess) -> None:
    """Stop ``server`` at once, as a crash would (memcached spends a second on a SIGTERM)."""
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(timeout=10)


@contextmanager
def serving(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Start ``servers`` and kill them afterwards (nothing of theirs is worth a clean shutdown)."""
    started: list[ServerProcess] = []
    try:
        for server in servers:
            started.append(server.start())
        yield servers
    finally:
        for server in started:
            kill(server)


def server_url(*servers: ServerProcess) -> str:
    """``memcached://127.0.0.1:p1,127.0.0.1:p2`` for one or several servers."""
    return "memcached://" + ",".join(server.url_host for server in servers)


def raw_client(server: ServerProcess) -> Client:
    """A plain pymemcache client on one server: reads and writes keys behind the store's back."""
    return Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5, default_noreply=False)
