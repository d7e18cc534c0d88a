"""Push invalidation for the app's near cache of query results on Redis/Valkey (opt-in).

With ``TINA4_DB_CACHE_PUSH=true`` and the persistent query cache on Redis or Valkey, a daemon
thread follows the channel on which the store's token layer announces every token it writes
(``store/push.py``: the store announces, whoever writes). While that subscription is confirmed,
tokens read once are trusted here until a change of their scope is announced, so a near-cache HIT
(``near.py``) costs no round trip at all: the same push invalidation the sidecar's near cache
uses. Staleness bound: the pub/sub delivery time after another process's write; this process's
own writes forget their scopes here at once (``forget``, before and after the token write).

Races: a token read is learned only if no change was announced since the read began (a
generation counter), so a read that raced with an invalidation is never trusted. A lost or
silent subscription (no answer to a ping within ``TINA4_CACHE_TIMEOUT`` + 0.5 s) forgets every
token and stops trusting until a new subscription is confirmed; HITs then read the tokens from
the store, as without push.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tina4_sidecar.client import runtime
from tina4_sidecar.store import push

log = logging.getLogger("tina4_sidecar.client.query")

PING_EVERY = 0.5


class TrustedTokens:
    """Tokens of one store's token layer, trusted while its change channel is followed."""

    def __init__(self, client: Any, channel: str, timeout: float) -> None:
        self.client = client
        self.channel = channel
        self.timeout = timeout
        self.pid = os.getpid()
        self._tokens: dict[str, str] = {}
        self._generation = 0
        self._live = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="tina4-query-push", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return self._live

    def known(self, names: Sequence[str]) -> dict[str, str | None] | None:
        """The trusted tokens of ``names``, or None when any is not trusted (read the store)."""
        if not self._live or self.pid != os.getpid():  # a forked child has no follower thread
            return None
        tokens = self._tokens
        found: dict[str, str | None] = {}
        for name in names:
            token = tokens.get(name)
            if token is None:
                return None
            found[name] = token
        return found

    def begin(self) -> int:
        """Call before reading tokens from the store; give the answer to ``learn``."""
        return self._generation

    def learn(self, generation: int, tokens: Mapping[str, str | None]) -> None:
        with self._lock:
            if self._live and generation == self._generation:
                self._tokens.update({name: token for name, token in tokens.items() if token is not None})

    def forget(self, scopes: Iterable[str] | None = None) -> None:
        """Stop trusting ``scopes`` (None: every token)."""
        with self._lock:
            self._generation += 1
            if scopes is None:
                self._tokens.clear()
            else:
                for name in scopes:
                    self._tokens.pop(name, None)

    def stop(self) -> None:
        self._stopped.set()
        self._lost()

    def _lost(self) -> None:
        with self._lock:
            self._live = False
            self._generation += 1
            self._tokens.clear()

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                self._subscribe_and_listen()
            except Exception as exc:
                log.debug("query cache push: subscription lost: %s", exc)
            self._lost()
            self._stopped.wait(1.0)

    def _subscribe_and_listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            last_pong = time.monotonic()
            next_ping = last_pong + PING_EVERY
            while not self._stopped.is_set():
                message = pubsub.get_message(timeout=0.1)
                now = time.monotonic()
                if message is not None:
                    kind = message.get("type")
                    if kind == "subscribe":
                        with self._lock:
                            self._generation += 1
                            self._tokens.clear()
                            self._live = True
                        last_pong = now
                    elif kind == "message":
                        change = push.decode(message.get("data") or b"")
                        self.forget(None if change.everything else change.scopes)
                    elif kind == "pong":
                        last_pong = now
                if now >= next_ping:
                    pubsub.ping()
                    next_ping = now + PING_EVERY
                if now - last_pong > PING_EVERY + self.timeout:
                    raise ConnectionError("no answer to a ping on the change channel")
        finally:
            pubsub.close()


_trusts: dict[str, TrustedTokens] = {}
_trusts_lock = threading.Lock()


def trusted_tokens(where: str, client: Any, channel: str, timeout: float) -> TrustedTokens:
    """The one follower of ``channel`` for the store ``where`` in this process."""
    found = _trusts.get(where)
    if found is not None and found.pid == os.getpid():
        return found
    with _trusts_lock:
        found = _trusts.get(where)
        if found is None or found.pid != os.getpid():
            found = _trusts[where] = TrustedTokens(client, channel, timeout)
    return found


def _stop_all() -> None:
    with _trusts_lock:
        trusts = list(_trusts.values())
        _trusts.clear()
    for trust in trusts:
        trust.stop()


runtime.on_reset(_stop_all)
