"""Starting and stopping the sidecar: store, app connection, manifest, then the listener (uvloop).

Signals, as nginx takes them: SIGTERM and SIGINT stop accepting, let every request in flight
finish on both transports (at most TINA4_SIDECAR_DRAIN_TIMEOUT seconds; idle connections close
at once), then exit; SIGHUP reloads (``proxy/reload.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from tina4_sidecar.config import CacheSettings, ConfigError, SidecarSettings
from tina4_sidecar.config.rules import ManifestError, RuleSet, load_rules_file
from tina4_sidecar.config.sidecar import join_host_port
from tina4_sidecar.proxy.admin.api import handle_admin_listener
from tina4_sidecar.proxy.admin.auth import check_token_strength
from tina4_sidecar.proxy.aiohttp_requests import request_factory
from tina4_sidecar.proxy.build_info import start_line
from tina4_sidecar.proxy.control import Announcer
from tina4_sidecar.proxy.front import Front, access_logger_class
from tina4_sidecar.proxy.manifest_watcher import ManifestWatcher
from tina4_sidecar.proxy.near.invalidation import follow_changes
from tina4_sidecar.proxy.origin.upstream import Upstream
from tina4_sidecar.proxy.reload import reload
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.transport.fast_path import FastPath
from tina4_sidecar.proxy.transport.fast_request import SeenRequests
from tina4_sidecar.proxy.workers import PARENT_WATCHED
from tina4_sidecar.proxy.workers_view import follow
from tina4_sidecar.store.backends.memory import MemoryStore
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_key import QueryFilter

log = logging.getLogger("tina4_sidecar")


async def start_sidecar(settings: SidecarSettings, cache_settings: CacheSettings) -> Sidecar:
    check_token_strength(settings.admin_token)
    static: RuleSet | None = None
    if settings.rules_file is not None:
        try:
            static = load_rules_file(settings.rules_file)
        except ManifestError as exc:
            raise ConfigError(f"TINA4_SIDECAR_RULES_FILE: {exc}") from None
    try:
        store = await open_store(cache_settings, "resp")
    except ValueError as exc:  # a malformed URL is a configuration mistake, not an outage
        raise ConfigError(f"TINA4_CACHE_URL: {exc}") from None
    upstream = Upstream(
        settings.upstream, settings.connect_timeout, settings.upstream_timeout, settings.upstream_keepalive
    )
    announcer = Announcer(settings, store)
    manifest = ManifestWatcher(upstream, settings.manifest_path, settings.manifest_refresh, static, announcer)
    await manifest.start()
    sidecar = Sidecar(
        settings, cache_settings, store, upstream, manifest, QueryFilter(settings.ignored_query_params)
    )
    sidecar.near_invalidation = follow_changes(sidecar.near, store, settings, cache_settings.cache_timeout)
    if isinstance(store, MemoryStore):  # in this process: purges made through it reach the near cache at once
        sidecar.unwatch = store.watch(sidecar.near.apply)
    sidecar.snapshots = follow(sidecar)
    return sidecar


async def stop_sidecar(sidecar: Sidecar) -> None:
    sidecar.unwatch()
    if sidecar.snapshots is not None:
        await sidecar.snapshots.stop()
    if sidecar.near_invalidation is not None:
        await sidecar.near_invalidation.stop()
    if sidecar.background:  # let running fetches and refreshes finish storing, briefly
        await asyncio.wait(list(sidecar.background), timeout=5)
    await sidecar.manifest.stop()
    await sidecar.upstream.close()
    if sidecar.origin is not None:
        sidecar.origin.close()
    await sidecar.store.close()


async def listen(sidecar: Sidecar) -> Listening:
    """Accept connections through the front door (``FastPath``), which answers what it can itself
    (with TINA4_SIDECAR_FAST_PATH on) and hands everything else to aiohttp's server."""
    settings = sidecar.settings
    limits = sidecar.limits
    server = web.Server(
        Front(sidecar),
        request_factory=request_factory(asyncio.get_running_loop()),
        access_log=logging.getLogger("tina4_sidecar.access"),  # the hook only: proxy/access_log.py writes
        access_log_class=access_logger_class(sidecar, sidecar.access),
        keepalive_timeout=limits.keepalive_timeout,
        # a margin above ours, so that the pipeline's own check answers 414/431 (transport.limits)
        max_line_size=2 * limits.max_request_line,
        max_field_size=2 * limits.max_header_bytes,
    )
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=settings.drain_timeout)
    await runner.setup()
    host, port = settings.listen_address
    seen = SeenRequests()
    try:
        listener = await asyncio.get_running_loop().create_server(
            lambda: FastPath(sidecar, server, seen, limits),
            host,
            port,
            backlog=1024,
            reuse_port=settings.workers > 1,
        )
    except BaseException:
        await runner.cleanup()
        raise
    sidecar.serving = True
    return Listening(sidecar, runner, server, listener)


class Listening:
    """A listening sidecar; ``close()`` stops accepting, drains and ends every connection."""

    def __init__(
        self, sidecar: Sidecar, runner: web.ServerRunner, server: web.Server, listener: asyncio.Server
    ) -> None:
        self.sidecar, self.runner, self.server, self.listener = sidecar, runner, server, listener

    async def close(self, drain: float = 0.0) -> None:
        """Stop accepting; give requests in flight ``drain`` seconds to finish, then close all."""
        self.sidecar.serving = False  # readiness answers 503 from here on
        self.listener.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        fast = self.sidecar.fast_connections
        for transport in list(fast):
            protocol = transport.get_protocol()
            if drain > 0 and isinstance(protocol, FastPath):
                protocol.drain()  # closes once the request it is answering is out
            else:
                transport.close()
        # aiohttp's connections: idle ones close now, busy ones after their request (or the deadline)
        slow = asyncio.ensure_future(self.server.shutdown(drain))
        while fast and loop.time() < deadline:  # noqa: ASYNC110 - connections close on their own
            await asyncio.sleep(0.02)
        if fast:
            log.warning("%d connections still busy after %gs: closing them", len(fast), drain)
        for transport in list(fast):
            transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(slow, max(deadline - loop.time(), 0) + 1)
        await self.runner.cleanup()


async def serve(
    settings: SidecarSettings,
    cache_settings: CacheSettings,
    until: Callable[[], Awaitable[object]] | None = None,
    load: Callable[[], SidecarSettings] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or until ``until()`` returns, for embedding and tests);
    ``load`` reads the settings again for SIGHUP (None: SIGHUP re-fetches the manifest only)."""
    sidecar = await start_sidecar(settings, cache_settings)
    listening: Listening | None = None
    admin: web.ServerRunner | None = None
    stopped_by_signal = False
    try:
        listening = await listen(sidecar)
        host, port = settings.listen_address
        log.info(
            "listening on http://%s in front of %s (store: %s, HIT fast path: %s)",
            join_host_port(host, port),
            settings.upstream,
            sidecar.store.backend_name,
            "on" if settings.fast_path else "off",
        )
        if settings.admin_address is not None:
            admin = await _listen_admin(sidecar, *settings.admin_address)
        if until is not None:
            await until()
        else:
            await _signals(sidecar, load or (lambda: sidecar.settings))
            stopped_by_signal = True
    finally:
        drain = sidecar.settings.drain_timeout if stopped_by_signal else 0.0
        log.info("shutting down%s", f": draining requests in flight (up to {drain:g}s)" if drain else "")
        if listening is not None:
            await listening.close(drain)
        if admin is not None:
            await admin.cleanup()
        await stop_sidecar(sidecar)
        sidecar.access.flush()


async def _listen_admin(sidecar: Sidecar, host: str, port: int) -> web.ServerRunner:
    """The separate admin listener: the admin API without a token, and nothing else."""
    server = web.Server(functools.partial(handle_admin_listener, sidecar), access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:  # every worker of --workers N listens here too: each answers for all (admin/workers_view)
        await web.TCPSite(runner, host, port, reuse_port=sidecar.settings.workers > 1).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(exc.errno, exc.strerror, sidecar.settings.admin_listen) from exc
    log.info(
        "admin API on http://%s%s without a token: keep it on localhost or a private network",
        join_host_port(host, port),
        sidecar.settings.admin_prefix,
    )
    return runner


async def _signals(sidecar: Sidecar, load: Callable[[], SidecarSettings]) -> None:
    """Until SIGINT or SIGTERM; each SIGHUP meanwhile reloads."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: sidecar.keep(reload(sidecar, load)))
    if PARENT_WATCHED:  # a worker whose kernel cannot signal it when the supervisor goes
        sidecar.keep(_watch_parent(PARENT_WATCHED[0], stop))
    await stop.wait()


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's exit here
        await asyncio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: stopping", parent)
    stop.set()


def run(
    settings: SidecarSettings,
    cache_settings: CacheSettings,
    load: Callable[[], SidecarSettings] | None = None,
) -> int:
    """Blocking entry point: one process, or ``settings.workers`` under a supervisor."""
    log.info("tina4-sidecar starting: %s", start_line())  # once, not once per worker
    if settings.workers > 1:
        from tina4_sidecar.proxy.worker_store import shared_by_workers
        from tina4_sidecar.proxy.workers import supervise
        from tina4_sidecar.proxy.workers_view import run_folder

        with shared_by_workers(cache_settings, settings.workers) as shared, run_folder():
            return supervise(settings.workers, lambda: run_one(settings, shared, load))
    run_one(settings, cache_settings, load)
    return 0


def run_one(
    settings: SidecarSettings,
    cache_settings: CacheSettings,
    load: Callable[[], SidecarSettings] | None = None,
) -> None:
    """One sidecar process on uvloop (plain asyncio where uvloop is unavailable)."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    settle_garbage_collector()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(settings, cache_settings, load=load))


def settle_garbage_collector() -> None:
    """Collect less often than Python's default, and never again over what was loaded at start.

    Every request allocates short-lived objects, so with the default threshold (700) the cyclic
    collector ran every few requests and traversed every module and cache entry; measured under
    wrk it took about a sixth of the forwarding path's CPU. Nothing on the request path relies
    on cycles being freed quickly, so a larger young generation costs little memory.
    """
    gc.collect()
    gc.freeze()  # what start-up loaded (modules, settings) is never garbage: out of every scan
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


GC_YOUNG_THRESHOLD = 20_000
