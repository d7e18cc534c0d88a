"""``PerThread``: one connection per calling thread, bounded, given back when a thread ends, never
the parent's in a forked child."""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import pytest

from tina4_sidecar.store.sync.per_thread import PerThread


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.closed = False
        self.thread = threading.get_ident()


def per_thread(limit: int = 4) -> PerThread[Conn]:
    def close(conn: Conn) -> None:
        conn.closed = True

    return PerThread(Conn, close, limit)


def in_thread(work: Any) -> Any:
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(work()))
    thread.start()
    thread.join()
    gc.collect()
    return found[0]


def test_each_thread_keeps_its_own_connection() -> None:
    conns = per_thread()
    mine = conns.get()
    assert mine is not None
    assert conns.get() is mine
    theirs = in_thread(conns.get)
    assert theirs is not None
    assert theirs is not mine
    assert conns.get() is mine


def test_a_thread_that_ends_gives_its_connection_to_the_next_thread() -> None:
    conns = per_thread()
    first = in_thread(conns.get)
    assert in_thread(conns.get) is first  # reused, not made again
    assert conns.count() == 1


def test_past_the_limit_get_answers_none_and_the_caller_uses_its_pool() -> None:
    conns = per_thread(limit=1)
    assert conns.get() is not None
    assert in_thread(conns.get) is None
    assert conns.count() == 1


def test_discard_closes_the_callers_connection_and_the_next_get_makes_one() -> None:
    conns = per_thread(limit=1)
    first = conns.get()
    assert first is not None
    conns.discard()
    assert first.closed
    second = conns.get()
    assert second is not None
    assert second is not first
    assert not second.closed


def test_close_closes_held_and_idle_connections_and_later_gets_answer_none() -> None:
    conns = per_thread()
    idle = in_thread(conns.get)
    held = conns.get()
    conns.close()
    assert idle.closed
    assert held is not None
    assert held.closed
    assert conns.get() is None


def test_a_failing_connect_raises_and_leaves_no_slot_taken() -> None:
    def refuse() -> Conn:
        raise ConnectionRefusedError("down")

    conns: PerThread[Conn] = PerThread(refuse, lambda conn: None, 1)
    with pytest.raises(ConnectionRefusedError):
        conns.get()
    assert conns.count() == 0
    with pytest.raises(ConnectionRefusedError):
        conns.get()  # tried again: a failed connect takes no slot


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_never_uses_nor_closes_the_parents_connection() -> None:
    conns = per_thread()
    parent = conns.get()
    assert parent is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once
        child = conns.get()
        ok = child is not None and child is not parent and not parent.closed
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert conns.get() is parent
    assert not parent.closed
