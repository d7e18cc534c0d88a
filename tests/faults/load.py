"""A verifying load generator for the fault tests: mixed traffic, every answer checked.

``Load`` runs ``tasks`` concurrent aiohttp clients against a sidecar until stopped. Each picks at
random: a GET of a few hot cached URLs (HITs), a GET of a fresh URL (a MISS), the same hot URLs as
a user (Cookie or Authorization: bypass), a short-TTL URL (stale-if-error when the app is down), a
POST of random bytes to ``/api/echo`` and, when asked for (``live``), a GET of the uncached
``/api/checked-live/`` route. A purge task bumps the token of one of the purge-only URLs now and
then, through ``tina4_sidecar.store.response_purge`` on the store the sidecar uses. Every body of
``/api/checked*`` is checked against its ``X-Body-SHA256`` header and against the name, query and
user it was requested for; every echo against the sha256 of the bytes sent. Every 200 is checked
against the rules: a cached route carries ``X-Cache``, the uncached route never does. A 5xx counts
as expected only while the test says the app may cause it (down: the sidecar's 502 JSON; too slow:
its 504 JSON; failing: the app's own 5xx marked ``X-Fault``, never served from the cache); any
other 5xx is unexpected.

The helpers every fault test shares come with it: ``fetch`` (one request outside the load),
``wait_for`` with its conditions ``logged`` and ``hit_since``, ``assert_clean``, and ``set_fault``
(the demo app's fault switch).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HOT = [f"hot{i}" for i in range(8)]
PURGEABLE = [f"purge{i}" for i in range(4)]
SHORT = [f"short{i}" for i in range(4)]
USERS = [f"user{i}" for i in range(5)]
UNAVAILABLE = "upstream unavailable"
TIMED_OUT = "upstream timed out"


@dataclass
class Tally:
    """What the load saw; ``wrong`` holds a description of each wrong answer (at most 20).

    ``expected_*`` are the 5xx the test allowed at the time, ``stale_served`` the answers marked
    ``fwd=stale`` (stale-if-error), ``wrong_rules`` the answers against the rules in force.
    """

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    x_cache: Counter[str] = field(default_factory=Counter)
    expected_502: int = 0
    expected_504: int = 0
    expected_app_5xx: int = 0
    unexpected_5xx: int = 0
    wrong_bodies: int = 0
    foreign_bodies: int = 0
    transport_errors: int = 0
    stale_served: int = 0
    wrong_rules: int = 0
    purges: int = 0
    purge_errors: int = 0
    last_hit: float = 0.0
    wrong: list[str] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    ok_by_kind: Counter[str] = field(default_factory=Counter)
    failed_by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def five_xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def note_wrong(self, message: str) -> None:
        self.wrong_bodies += 1
        if len(self.wrong) < 20:
            self.wrong.append(message)


class Load:
    """Mixed, verified traffic against ``base_url`` until ``stop()``.

    ``app_may_be_down`` is set by the test while the app is dead (and until it is back): a 502
    JSON ``upstream unavailable`` then counts as expected. Likewise ``app_may_time_out`` (a 504
    JSON ``upstream timed out``) and ``app_may_fail`` (the app's own 5xx, marked ``X-Fault``, not
    a HIT). Any other 5xx never does. ``live`` adds GETs of the uncached route, that many for
    every request of the default mix (0.1: one in eleven requests).
    """

    def __init__(
        self,
        base_url: str,
        tasks: int = 30,
        purge: Callable[[str], Awaitable[object]] | None = None,
        purge_every: float = 0.5,
        seed: int | None = None,
        live: float = 0.0,
    ) -> None:
        self.base_url = base_url
        self.tasks = tasks
        self.purge = purge
        self.purge_every = purge_every
        self.tally = Tally()
        self.live = live
        self.app_may_be_down = False
        self.app_may_time_out = False
        self.app_may_fail = False
        self._stop = asyncio.Event()
        self._random = random.Random(seed)
        self._runners: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Load:
        connector = aiohttp.TCPConnector(limit=self.tasks + 5)
        timeout = aiohttp.ClientTimeout(total=15)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._runners = [asyncio.create_task(self._client()) for _ in range(self.tasks)]
        if self.purge is not None:
            self._runners.append(asyncio.create_task(self._purger()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        if self._runners:
            await asyncio.gather(*self._runners)
            self._runners = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _purger(self) -> None:
        assert self.purge is not None
        while not self._stop.is_set():
            await asyncio.sleep(self.purge_every)
            name = self._random.choice(PURGEABLE)
            try:
                await self.purge(f"/api/checked/{name}")
                self.tally.purges += 1
            except Exception:  # a store that is down may refuse; that is not the sidecar's fault
                self.tally.purge_errors += 1

    async def _client(self) -> None:
        while not self._stop.is_set():
            roll = self._random.random() * (1 + self.live)
            if roll >= 1:
                await self.get("live", f"/api/checked-live/{self._random.choice(HOT)}")
            elif roll < 0.35:
                await self.get("hot", f"/api/checked/{self._random.choice(HOT)}")
            elif roll < 0.5:
                await self.get("fresh", f"/api/checked/fresh{os.urandom(6).hex()}?q={self._random.random()}")
            elif roll < 0.65:
                user = self._random.choice(USERS)
                if self._random.random() < 0.5:
                    headers = {"Cookie": f"session={user}"}
                else:
                    headers = {"Authorization": f"Bearer {user}"}
                await self.get("user", f"/api/checked/{self._random.choice(HOT)}", headers)
            elif roll < 0.75:
                await self.get("purgeable", f"/api/checked/{self._random.choice(PURGEABLE)}")
            elif roll < 0.85:
                await self.get("short", f"/api/checked-short/{self._random.choice(SHORT)}")
            else:
                await self.post_echo(os.urandom(self._random.choice([0, 1, 100, 4096, 70_000])))

    async def _request(
        self, kind: str, method: str, path: str, headers: dict[str, str] | None, data: bytes | None
    ) -> tuple[int, Mapping[str, str], bytes] | None:
        assert self._session is not None
        self.tally.sent += 1
        self.tally.by_kind[kind] += 1
        try:
            async with self._session.request(
                method, self.base_url + path, headers=headers, data=data
            ) as reply:
                body = await reply.read()
                return reply.status, reply.headers.copy(), body
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.tally.transport_errors += 1
            self.tally.failed_by_kind[kind] += 1
            if len(self.tally.wrong) < 20:
                self.tally.wrong.append(f"transport error on {method} {path}: {exc!r}")
            return None

    def _status(self, kind: str, status: int, headers: Mapping[str, str], body: bytes) -> bool:
        """Counts the status; True when the body is an app answer to verify."""
        self.tally.statuses[status] += 1
        if status != 200:
            self.tally.failed_by_kind[kind] += 1
        if status < 500:
            return True
        if status == 502 and self.app_may_be_down and _is_gateway_json(headers, body, UNAVAILABLE):
            self.tally.expected_502 += 1
        elif status == 504 and self.app_may_time_out and _is_gateway_json(headers, body, TIMED_OUT):
            self.tally.expected_504 += 1
        elif self.app_may_fail and _is_app_fault(headers):
            self.tally.expected_app_5xx += 1
        else:
            self.tally.unexpected_5xx += 1
            if len(self.tally.wrong) < 20:
                cache = headers.get("X-Cache")
                self.tally.wrong.append(f"{status} (X-Cache {cache}) on {kind}: {body[:200]!r}")
        return False

    async def get(self, kind: str, path: str, headers: dict[str, str] | None = None) -> None:
        answer = await self._request(kind, "GET", path, headers, None)
        if answer is None:
            return
        status, reply_headers, body = answer
        if not self._status(kind, status, reply_headers, body):
            return
        if status != 200:
            self.tally.note_wrong(f"GET {path}: status {status}")
            return
        cache = reply_headers.get("X-Cache", "")
        self.tally.x_cache[cache] += 1
        if cache == "HIT":
            self.tally.last_hit = time.monotonic()
        if "fwd=stale" in reply_headers.get("Cache-Status", ""):
            self.tally.stale_served += 1
        self._check_rule(kind, path, cache)
        self.tally.ok_by_kind[kind] += 1
        self._verify(path, headers or {}, reply_headers, body)

    def _check_rule(self, kind: str, path: str, cache: str) -> None:
        """The rules in force: only the uncached route answers without ``X-Cache``."""
        if (kind == "live") == (cache == ""):
            return
        self.tally.wrong_rules += 1
        if len(self.tally.wrong) < 20:
            self.tally.wrong.append(f"GET {path}: X-Cache {cache or 'absent'} on a {kind} route")

    def _verify(self, path: str, sent: dict[str, str], headers: Mapping[str, str], body: bytes) -> None:
        if headers.get("X-Body-SHA256") != hashlib.sha256(body).hexdigest():
            self.tally.note_wrong(f"GET {path}: body does not match X-Body-SHA256")
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self.tally.note_wrong(f"GET {path}: not JSON")
            return
        route, _, query = path.partition("?")
        name = route.rsplit("/", 1)[1]
        expected_query = dict(part.split("=", 1) for part in query.split("&") if part)
        if payload.get("name") != name or payload.get("query") != expected_query:
            self.tally.note_wrong(f"GET {path}: body for {payload.get('name')}?{payload.get('query')}")
        if payload.get("cookie") != sent.get("Cookie") or payload.get("authorization") != sent.get(
            "Authorization"
        ):
            self.tally.foreign_bodies += 1
            self.tally.note_wrong(
                f"GET {path} as {sent}: body of cookie={payload.get('cookie')} "
                f"authorization={payload.get('authorization')}"
            )

    async def post_echo(self, data: bytes) -> None:
        answer = await self._request("echo", "POST", "/api/echo", None, data)
        if answer is None:
            return
        status, headers, body = answer
        if not self._status("echo", status, headers, body):
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self.tally.note_wrong(f"POST /api/echo: status {status}, not JSON")
            return
        if status != 200 or payload != {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}:
            self.tally.note_wrong(f"POST /api/echo of {len(data)} bytes: {status} {payload}")
            return
        self.tally.ok_by_kind["echo"] += 1


def _is_gateway_json(headers: Mapping[str, str], body: bytes, error: str) -> bool:
    """The sidecar's own JSON answer for an app it could not get an answer from."""
    if not headers.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        return bool(json.loads(body).get("error") == error)
    except (ValueError, AttributeError):
        return False


def _is_app_fault(headers: Mapping[str, str]) -> bool:
    """The app's own injected 5xx, passed on by the sidecar, not replayed from its cache."""
    return headers.get("X-Fault") == "error" and headers.get("X-Cache") != "HIT"


def print_table(title: str, rows: list[tuple[str, Tally, int]]) -> None:
    """One line per run: faults injected, requests sent, 5xx (expected 502s, 504s and app 5xx
    apart), wrong bodies, answers against the rules, stale answers after an error."""
    print(f"\n{title}")
    header = f"{'run':<30}{'faults':>7}{'sent':>8}{'5xx':>6}{'exp502':>8}{'exp504':>8}{'expApp':>8}"
    header += f"{'unexp5xx':>9}{'wrong':>7}{'foreign':>8}{'rules':>7}{'neterr':>7}{'HITs':>7}"
    header += f"{'stale':>7}{'purges':>7}"
    print(header)
    for name, tally, faults in rows:
        print(
            f"{name:<30}{faults:>7}{tally.sent:>8}{tally.five_xx:>6}{tally.expected_502:>8}"
            f"{tally.expected_504:>8}{tally.expected_app_5xx:>8}{tally.unexpected_5xx:>9}"
            f"{tally.wrong_bodies:>7}{tally.foreign_bodies:>8}{tally.wrong_rules:>7}"
            f"{tally.transport_errors:>7}{tally.x_cache['HIT']:>7}{tally.stale_served:>7}{tally.purges:>7}"
        )


def fetch(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request outside the load (status, headers, body); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition()`` held, polled every 0.1 s; AssertionError after ``within``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > within:
            raise AssertionError(f"{what} not within {within}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def logged(log_path: Path, text: str, times: int = 1) -> Callable[[], bool]:
    """A condition for ``wait_for``: ``text`` is in the log at ``log_path`` at least ``times`` times."""
    return lambda: log_path.read_text(errors="replace").count(text) >= times


def hit_since(tally: Tally, since: float) -> Callable[[], bool]:
    """A condition for ``wait_for``: the load has seen a HIT after ``since`` (monotonic)."""
    return lambda: tally.last_hit > since


def assert_clean(tally: Tally) -> None:
    """No wrong or foreign body, no answer against the rules, every POST intact, no transport error."""
    assert tally.wrong_bodies == 0, tally.wrong
    assert tally.foreign_bodies == 0, tally.wrong
    assert tally.wrong_rules == 0, tally.wrong
    assert tally.transport_errors == 0, tally.wrong
    assert tally.ok_by_kind["echo"] > 0
    assert tally.ok_by_kind["user"] > 0


def set_fault(app_url: str, **modes: str | float) -> None:
    """Switch the demo app's injected faults (``app``, ``slow_seconds``, ``manifest``; needs
    ``DEMO_FAULTS=true`` in its environment), asking the app itself, not through the sidecar."""
    status, _, body = fetch(f"{app_url}/api/fault", json.dumps(modes).encode())
    assert status == 200, body
