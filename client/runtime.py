"""The bridge between app code and the async stores: one private event loop in a daemon thread.

Store clients (redis.asyncio pools, psycopg pools, the fallback's probe task) belong to the
event loop that created them, and the spec's key/value API is synchronous and must also work
inside Tina4's async handlers, where ``asyncio.run`` refuses to start. So every store of the
client library lives on ONE loop that this module runs in a thread of its own:

* ``run_sync(coro)`` runs ``coro`` there and blocks the caller (plain code or a running loop);
* ``await run_async(coro)`` runs it there without blocking the caller's loop;
* ``await store_for(layer)`` (only on the bridge loop) opens each store once and keeps it.

The sync API does not come here: ``sync_store(layer)`` opens the backend's sync twin
(``store/sync/``), whose driver runs in the caller's own thread. Only a backend without a sync
twin (Redis Cluster) still runs its coroutines here, through that twin.

Forks (uvicorn workers, gunicorn, multiprocessing) copy the parent's memory but not its
threads: the child gets a fresh bridge on first use, detected through ``os.register_at_fork``
and, as a second line, a PID check. The parent's loop and stores are left untouched in the
child (see ``_Bridge.abandon``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from tina4_sidecar.config import Backend, CacheSettings, ConfigError, load_settings
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.factory import open_sync_store

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds ``reset()`` and interpreter exit wait for the stores to close."""

type StoreKey = tuple[str, Backend | None, str | None]


class _Bridge:
    """The private loop, its thread, and the stores opened on it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.stores: dict[StoreKey, Store] = {}
        self.opening: dict[StoreKey, asyncio.Task[Store]] = {}
        self.thread = threading.Thread(target=self._serve, name="tina4-sidecar-bridge", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def on_loop(self) -> bool:
        """True when called from the bridge thread itself."""
        return threading.get_ident() == self.thread.ident

    def submit[T](self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run[T](self, coro: Coroutine[Any, Any, T]) -> T:
        """``submit(coro).result()`` in half the time: the task starts eagerly, so a coroutine that
        needs no I/O finishes in the loop's first callback, and a bare lock wakes the caller."""
        done = threading.Lock()
        done.acquire()
        outcome: list[asyncio.Task[T] | BaseException] = []

        def finish(result: asyncio.Task[T] | BaseException) -> None:
            outcome.append(result)
            done.release()

        def start() -> None:
            try:
                task = asyncio.Task(coro, loop=self.loop, eager_start=True)
            except BaseException as exc:  # never leave the caller waiting
                finish(exc)
                return
            if task.done():
                finish(task)
            else:
                task.add_done_callback(finish)

        if not self.thread.is_alive():
            coro.close()
            raise RuntimeError("the cache bridge thread has stopped")
        self.loop.call_soon_threadsafe(start)
        done.acquire()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0].result()

    async def store_for(self, key: StoreKey) -> Store:
        store = self.stores.get(key)
        if store is not None:
            return store
        task = self.opening.get(key)
        if task is None:
            task = self.loop.create_task(_open(*key), name=f"tina4-open-{key[0]}")
            self.opening[key] = task
            task.add_done_callback(lambda done: self._opened(key, done))
        # shield: a caller that gives up must not cancel the open that other callers await
        return await asyncio.shield(task)

    def _opened(self, key: StoreKey, task: asyncio.Task[Store]) -> None:
        self.opening.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self.stores[key] = task.result()

    async def close_stores(self) -> None:
        stores, self.stores = list(self.stores.values()), {}
        for store in stores:
            await store.close()

    def abandon(self) -> None:
        """In a forked child: never touch this bridge again, and never let it be collected.

        The child's copy of the loop shares the parent's epoll instance and sockets; closing
        or garbage-collecting it would unregister the parent's file descriptors or close its
        connections' TLS sessions. Keeping a reference costs one object per fork.
        """
        _ABANDONED.append(self)


_ABANDONED: list[_Bridge] = []
_lock = threading.Lock()
_bridge: _Bridge | None = None
_settings: CacheSettings | None = None
_reset_hooks: list[Callable[[], None]] = []
_sync_stores: dict[StoreKey, SyncStore] = {}
_sync_pid = os.getpid()


def _current() -> _Bridge:
    """The bridge of this process, started on first use and again after a fork."""
    global _bridge
    bridge = _bridge
    if bridge is not None and bridge.pid == os.getpid():
        return bridge
    if bridge is not None:  # forked without os.fork's hooks running (a raw fork syscall)
        _after_fork_in_child()
    with _lock:
        if _bridge is None:
            _bridge = _Bridge()
        return _bridge


def run_sync[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and block until it is done; its exception is raised here.

    Works from plain code and from inside a running event loop (which it blocks meanwhile,
    as any synchronous call does). Calling it from the bridge loop itself would deadlock:
    that raises RuntimeError; await the coroutine there instead.
    """
    bridge = _current()
    if bridge.on_loop():
        coro.close()
        raise RuntimeError("run_sync() called on the bridge loop: await the coroutine instead")
    return bridge.run(coro)


async def run_async[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and await it from any loop without blocking that loop.

    Cancelling the caller cancels ``coro`` on the bridge loop too.
    """
    bridge = _current()
    if bridge.on_loop():
        return await coro
    return await asyncio.wrap_future(bridge.submit(coro))


def settings() -> CacheSettings:
    """The ``TINA4_CACHE_*`` settings, read once (again after ``reset()``); ConfigError when bad."""
    global _settings
    found = _settings
    if found is None:
        with _lock:
            if _settings is None:
                _settings = load_settings(CacheSettings)
            found = _settings
    return found


def sync_store(layer: str, backend: Backend | None = None, url: str | None = None) -> SyncStore:
    """The opened sync store of ``layer``, opened once per process (again after a fork or ``reset()``).

    Its driver runs in the caller's thread. An unreachable store does not raise (the file store
    stands in); a bad configuration value raises ConfigError with a one-line message.
    """
    global _sync_pid
    key = (layer, backend, url)
    if _sync_pid == os.getpid():
        found = _sync_stores.get(key)
        if found is not None:
            return found
    config = settings()  # before the lock, which settings() takes too
    with _lock:
        if _sync_pid != os.getpid():  # forked: the parent's connections are not ours
            _sync_stores.clear()
            _sync_pid = os.getpid()
        found = _sync_stores.get(key)
        if found is None:
            try:
                found = open_sync_store(config, layer, run_sync, backend, url)
            except ConfigError:
                raise
            except ValueError as exc:
                source = "TINA4_CACHE_URL" if url is None else f"the {layer} store's URL"
                raise ConfigError(f"{source}: {exc}") from None
            _sync_stores[key] = found
    return found


async def store_for(layer: str, backend: Backend | None = None, url: str | None = None) -> Store:
    """The opened store of ``layer`` (``resp``, ``kv``, ``query``, ``meta``), opened once and kept.

    ``backend`` and ``url`` default to ``TINA4_CACHE_BACKEND`` and ``TINA4_CACHE_URL``. Must run
    on the bridge loop, i.e. inside a coroutine given to ``run_sync`` or ``run_async``. An
    unreachable store does not raise (the file store stands in); a bad configuration value
    raises ConfigError with a one-line message.
    """
    bridge = _current()
    if not bridge.on_loop():
        raise RuntimeError("store_for() must run on the bridge loop: wrap the caller in run_sync/run_async")
    return await bridge.store_for((layer, backend, url))


def opened_in_process(*layers: str) -> tuple[Store, ...] | None:
    """The already opened stores of ``layers`` (default backend and URL) when every one of them is
    in-process (the memory store), else None.

    Such stores never wait on I/O, so their coroutines finish without suspending: the caller may
    run them in its own thread with ``run_inline``, saving the two thread switches of the bridge
    (about 25 us) on the default backend.
    """
    bridge = _bridge
    if bridge is None or bridge.pid != os.getpid():
        return None
    found: list[Store] = []
    for layer in layers:
        store = bridge.stores.get((layer, None, None))
        if store is None or not store.in_process:
            return None
        found.append(store)
    return tuple(found)


def run_inline[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run, in the caller's thread and without a loop, a coroutine that never suspends (one that
    only uses the stores of ``opened_in_process``); RuntimeError if it does suspend."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a coroutine run inline suspended: it may only use in-process stores")


async def _open(layer: str, backend: Backend | None, url: str | None) -> Store:
    config = settings()
    try:
        return await open_store(config, layer, backend, url)
    except ConfigError:
        raise
    except ValueError as exc:  # a malformed URL: the operator's mistake, said in one line
        source = "TINA4_CACHE_URL" if url is None else f"the {layer} store's URL"
        raise ConfigError(f"{source}: {exc}") from None


def on_reset(hook: Callable[[], None]) -> None:
    """Call ``hook`` at every ``reset()`` (modules that keep state derived from the stores)."""
    if hook not in _reset_hooks:
        _reset_hooks.append(hook)


def reset() -> None:
    """Close the stores on the bridge loop and forget the settings; the next use re-reads env.

    For tests, and for code that changes ``TINA4_CACHE_*`` at run time. Not callable from the
    bridge loop.
    """
    global _settings
    bridge = _bridge
    if bridge is not None and bridge.pid == os.getpid():
        if bridge.on_loop():
            raise RuntimeError("reset() called on the bridge loop")
        future = bridge.submit(bridge.close_stores())
        with contextlib.suppress(concurrent.futures.TimeoutError):
            future.result(CLOSE_TIMEOUT)
    with _lock:
        _settings = None
        stores = list(_sync_stores.values()) if _sync_pid == os.getpid() else []
        _sync_stores.clear()
    for store in stores:
        store.close()
    for hook in list(_reset_hooks):
        hook()


def _forget_after_fork() -> None:
    """In a forked child: drop the parent's bridge and locks; a new bridge starts on first use."""
    global _bridge, _lock
    if _bridge is not None:
        _bridge.abandon()
    _bridge = None
    _lock = threading.Lock()  # the parent may have held it in another thread at the fork


def _after_fork_in_child() -> None:
    """Forget the parent's bridge and sync stores (their connections are the parent's sockets):
    the reset hooks drop what was derived from them, e.g. ``kv_sync``'s opened stores."""
    global _sync_pid
    forked_bridge = _bridge is not None and _bridge.pid != os.getpid()
    if forked_bridge:
        _forget_after_fork()
    had_sync = _sync_pid != os.getpid() and bool(_sync_stores)
    if had_sync:  # never closed here: closing would shut the parent's connections
        _sync_stores.clear()
        _sync_pid = os.getpid()
    if forked_bridge or had_sync:
        for hook in list(_reset_hooks):
            hook()


def _close_at_exit() -> None:
    bridge = _bridge
    if bridge is None or bridge.pid != os.getpid() or not bridge.thread.is_alive():
        return
    # The loop keeps running: another exit handler may still use the cache (a stopped loop
    # would leave it waiting forever); the daemon thread ends with the interpreter.
    with contextlib.suppress(Exception):
        bridge.submit(bridge.close_stores()).result(CLOSE_TIMEOUT)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
