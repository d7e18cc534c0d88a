"""Private data never crosses between clients, through every way a response can leave the cache.

A real demo Tina4 app behind real sidecar processes, once on the memory store and once on Redis
(two sidecars sharing it, so entries, locks and coalescing cross processes). Bursts of a few
hundred concurrent requests interleave anonymous clients with users who send ``Cookie``,
``Authorization`` or both, as GET and HEAD, with and without validators (``If-None-Match`` with
their own, someone else's or ``*``; ``If-Modified-Since``), over cold keys (coalesced misses;
``/api/slow`` keeps its one fetch in flight for 100 ms), warm keys (HITs, the fast path, 304s),
expired keys within stale-while-revalidate, and expired keys while the app is down
(stale-if-error); and pipelined on one connection, where the HIT fast path answers some requests
and hands the rest to aiohttp. Every single response is checked against the identity that asked:

- a body from ``/api/checked*`` and ``/api/whoami`` names the cookie and credentials it was
  made for: they must be the requester's own (anonymous bodies name none);
- a user's request is never answered from the cache (``Cache-Status: ...; fwd=bypass``, never a
  hit, a collapsed wait, a stale entry or a 304 of ours), and an anonymous one always may be;
- a body hash (``X-Body-SHA256``) or ETag seen by one identity is never seen by another, HEADs and
  304s included; each user's body of ``/api/slow`` ran the handler for that user alone; bodies of
  ``/api/private`` (``Cache-Control: private``) and ``Set-Cookie`` values of
  ``/api/with-cookie`` are never given to two clients;
- while the app is down a user gets a 502, never the anonymous stale entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tests.servers import memcached, redis
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

SHORT_TTL = 2.0
"""TTL of ``/api/checked-short/{name}`` (``ResponseCache:2``)."""
SWR_SECONDS = 30
BURST = 240
"""Requests sent at once per burst; the connector lets CONCURRENCY of them be in flight together."""
CONCURRENCY = 80


@dataclass(frozen=True, slots=True)
class Identity:
    """Who asks: the Cookie and Authorization headers sent (None: not sent at all)."""

    cookie: str | None = None
    authorization: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.cookie is None and self.authorization is None

    def headers(self) -> dict[str, str]:
        sent = {"Cookie": self.cookie, "Authorization": self.authorization}
        return {name: value for name, value in sent.items() if value is not None}

    def __str__(self) -> str:
        return (
            "anonymous" if self.anonymous else f"cookie={self.cookie!r} authorization={self.authorization!r}"
        )


ANONYMOUS = Identity()
USERS = (
    *(Identity(cookie=f"session=user{i}") for i in range(3)),
    *(Identity(authorization=f"Bearer user{i}") for i in range(3)),
    Identity(cookie="session=user0", authorization="Bearer user1"),
    Identity(authorization="Basic dXNlcjA6c2VjcmV0"),
    Identity(cookie=""),  # an empty Cookie header is a Cookie header all the same
)


@dataclass(frozen=True, slots=True)
class Probe:
    """One request to send: to which sidecar, what, as whom, with which validators."""

    port: int
    method: str
    path: str
    identity: Identity
    validators: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Reply:
    probe: Probe
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def outcome(self) -> str:
        return outcome(self.headers)

    def where(self) -> str:
        p = self.probe
        return (
            f"{p.method} {p.path} as {p.identity} with {dict(p.validators)} -> {self.status} {self.outcome}"
        )


def outcome(headers: CIMultiDictProxy[str]) -> str:
    """How the sidecar answered, from its (last) Cache-Status member."""
    member = headers.get("Cache-Status", "").rsplit(",", 1)[-1]
    if "fwd=bypass" in member:
        return "bypass"
    if "collapsed" in member:
        return "collapsed"
    if "fwd=stale" in member:
        return "revalidated" if "fwd-status=304" in member else "stale-if-error"
    if "; hit" in member:
        return "stale-while-revalidate" if "ttl=-" in member else "hit"
    if "fwd=uri-miss" in member:
        return "miss"
    return "none"


FROM_THE_CACHE = frozenset({"hit", "collapsed", "stale-while-revalidate", "stale-if-error", "revalidated"})


@dataclass
class Ledger:
    """Every reply, checked against its requester; ``problems`` lists each leak or wrong answer."""

    app_down: bool = False
    problems: list[str] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(anonymous|user, method, outcome or status) -> count."""
    body_owner: dict[str, tuple[Identity, str]] = field(default_factory=dict)
    etag_owner: dict[str, tuple[Identity, str]] = field(default_factory=dict)

    def problem(self, reply: Reply, what: str) -> None:
        self.problems.append(f"{what}: {reply.where()}")

    def count(self, anonymous: bool, method: str, what: str) -> int:
        return self.outcomes["anonymous" if anonymous else "user", method, what]

    # -- each reply as it comes -------------------------------------------------------------------

    def check(self, reply: Reply) -> None:
        self.replies.append(reply)
        probe = reply.probe
        who = "anonymous" if probe.identity.anonymous else "user"
        label = {200: reply.outcome, 304: f"{reply.outcome} 304"}.get(reply.status, str(reply.status))
        self.outcomes[who, probe.method, label] += 1
        if reply.status == 502 and self.app_down:
            self._check_gateway_error(reply)
            return
        if reply.status not in (200, 304):
            self.problem(reply, "unexpected status")
            return
        self._check_route(reply)
        if reply.status == 200 and probe.method == "GET":
            self._check_body(reply)

    def _check_gateway_error(self, reply: Reply) -> None:
        if not reply.probe.identity.anonymous:
            return  # a user's request reached for the app and found it down: right
        if reply.probe.path.startswith("/api/checked-short/") and not reply.probe.path.endswith("-cold"):
            self.problem(reply, "an anonymous request for an expired entry got no stale-if-error answer")

    def _check_route(self, reply: Reply) -> None:
        """Who may be answered from the cache: anonymous clients, never users."""
        if reply.probe.identity.anonymous:
            if reply.outcome in ("bypass", "none"):
                self.problem(reply, "an anonymous request bypassed the cache")
            if reply.status == 304 and reply.outcome not in FROM_THE_CACHE:
                self.problem(reply, "an anonymous 304 that the cache did not give")
        elif reply.outcome != "bypass" or reply.headers.get("X-Cache") != "MISS":
            self.problem(reply, "a user's request was answered from the cache")

    def _check_body(self, reply: Reply) -> None:
        path = reply.probe.path
        if path.startswith("/api/checked"):
            self._check_checked(reply)
        elif path.startswith("/api/whoami"):
            self._check_names_requester(reply, json.loads(reply.body))
        self._own(self.body_owner, hashlib.sha256(reply.body).hexdigest(), reply, "a body")
        etag = reply.headers.get("ETag")
        if etag is not None:
            self._own(self.etag_owner, etag, reply, "an ETag")

    def _check_checked(self, reply: Reply) -> None:
        if reply.headers.get("X-Body-SHA256") != hashlib.sha256(reply.body).hexdigest():
            self.problem(reply, "body does not match its X-Body-SHA256")
            return
        payload = json.loads(reply.body)
        route, _, query = reply.probe.path.partition("?")
        expected_query = dict(part.split("=", 1) for part in query.split("&") if part)
        if payload["name"] != route.rsplit("/", 1)[1] or payload["query"] != expected_query:
            self.problem(reply, f"body of another URL ({payload['name']}?{payload['query']})")
        self._check_names_requester(reply, payload)

    def _check_names_requester(self, reply: Reply, payload: dict[str, object]) -> None:
        identity = reply.probe.identity
        if payload.get("cookie") != identity.cookie or payload.get("authorization") != identity.authorization:
            self.problem(
                reply,
                f"LEAK: body made for cookie={payload.get('cookie')!r} "
                f"authorization={payload.get('authorization')!r}",
            )

    def _own(self, owners: dict[str, tuple[Identity, str]], value: str, reply: Reply, what: str) -> None:
        """``value`` (a body hash or ETag) belongs to the first identity and URL that got it."""
        mine = (reply.probe.identity, reply.probe.path)
        owner = owners.setdefault(value, mine)
        if owner != mine:
            self.problem(reply, f"LEAK: {what} first served to {owner[0]} for {owner[1]}")

    # -- what only all replies together show -------------------------------------------------------

    def finish(self) -> None:
        for reply in self.replies:
            if reply.status == 304 or (reply.status == 200 and reply.probe.method == "HEAD"):
                self._check_bodiless(reply)
        self._check_handler_runs()
        self._check_set_cookies()

    def _check_bodiless(self, reply: Reply) -> None:
        """A HEAD or 304 names its body by hash and ETag: that body must be the requester's."""
        if reply.body:
            self.problem(reply, "a HEAD or 304 with a body")
        mine = (reply.probe.identity, reply.probe.path)
        for owners, value in (
            (self.body_owner, reply.headers.get("X-Body-SHA256")),
            (self.etag_owner, reply.headers.get("ETag")),
        ):
            if value is not None and owners.get(value, mine) != mine:
                self.problem(reply, f"LEAK: names {value}, which was served to {owners[value][0]}")

    def _check_handler_runs(self) -> None:
        """``/api/slow`` and ``/api/whoami`` bodies differ by ``generated_at`` alone: a user's GET must
        have run the handler for that user (a stamp nobody else got); ``/api/private`` is never
        stored, so no stamp of it is ever served twice."""
        stamps: defaultdict[str, list[Reply]] = defaultdict(list)
        for reply in self.replies:
            if (
                reply.status == 200
                and reply.probe.method == "GET"
                and not reply.probe.path.startswith("/api/checked")
            ):
                stamps[str(json.loads(reply.body).get("generated_at"))].append(reply)
        for stamp, got in stamps.items():
            private = any(r.probe.path.startswith("/api/private") for r in got)
            shared = len(got) > 1 and (private or any(not r.probe.identity.anonymous for r in got))
            if shared:
                self.problem(
                    got[0], f"LEAK: the body stamped {stamp} went to {[str(r.probe.identity) for r in got]}"
                )

    def _check_set_cookies(self) -> None:
        seen: dict[str, Reply] = {}
        for reply in self.replies:
            for value in reply.headers.getall("Set-Cookie", ()):
                if value in seen:
                    self.problem(
                        reply, f"LEAK: Set-Cookie {value!r} also went to {seen[value].probe.identity}"
                    )
                seen[value] = reply


@dataclass
class Stack:
    """The app, the sidecars with stale-while-revalidate on (two sharing one store on Redis) and a
    sidecar without it, on which an expired entry is only served while the app fails."""

    store: str
    app: DemoApp
    swr: list[ServerProcess]
    plain: ServerProcess
    run: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def sidecars(self) -> list[ServerProcess]:
        return [*self.swr, self.plain]


@pytest.fixture(scope="module", params=["memory", "redis"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    store: str = request.param
    workdir: Path = tmp_path_factory.mktemp(f"private-{store}")
    with contextlib.ExitStack() as cleanup:
        store_env: dict[str, str | None] = {"TINA4_CACHE_BACKEND": "memory"}
        if store == "redis":
            server = cleanup.enter_context(redis.serving(redis.redis_server()))
            store_env = {"TINA4_CACHE_BACKEND": "redis", "TINA4_CACHE_URL": redis.server_url(server)}
        app = start_demo_app(workdir / "app")
        cleanup.callback(app.stop)

        def sidecar(name: str, swr: int, namespace: str) -> ServerProcess:
            env: dict[str, str | None] = {
                **store_env,
                "TINA4_CACHE_NAMESPACE": namespace,
                "TINA4_SIDECAR_STALE_WHILE_REVALIDATE": str(swr),
                "TINA4_SIDECAR_LOG_LEVEL": "warning",
            }
            started = start_sidecar(app.port, workdir / name, env=env)
            cleanup.callback(started.stop)
            return started

        swr = [sidecar(f"swr{i}", SWR_SECONDS, "private:swr") for i in range(2 if store == "redis" else 1)]
        built = Stack(store, app, swr, sidecar("plain", 0, "private:plain"))
        yield built
        for server in built.sidecars:
            log = server.log_text()
            assert "Traceback" not in log, log
            assert "_handle_request" not in log, log


# -- Sending ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # No cookie jar: a cookie the app sets must never ride along on another identity's request.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY),
        timeout=aiohttp.ClientTimeout(total=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    try:
        yield session
    finally:
        await session.close()


async def send(http: aiohttp.ClientSession, probe: Probe) -> Reply:
    headers = {**probe.identity.headers(), **dict(probe.validators)}
    url = f"http://127.0.0.1:{probe.port}{probe.path}"
    async with http.request(probe.method, url, headers=headers, allow_redirects=False) as response:
        body = await response.read()
        return Reply(probe, response.status, response.headers.copy(), body)


async def burst(http: aiohttp.ClientSession, ledger: Ledger, probes: Sequence[Probe]) -> None:
    """All ``probes`` at once; each reply is checked against its requester."""
    for reply in await asyncio.gather(*(send(http, probe) for probe in probes)):
        ledger.check(reply)


def probes(
    rng: random.Random,
    ports: Sequence[int],
    paths: Sequence[str],
    count: int,
    ledger: Ledger | None = None,
) -> list[Probe]:
    """``count`` interleaved requests: about 45% anonymous, 15% HEAD and, given the ``ledger`` of
    earlier replies, a third with validators (the requester's own, another identity's, or ``*``)."""
    out = []
    for _ in range(count):
        identity = ANONYMOUS if rng.random() < 0.45 else rng.choice(USERS)
        path = rng.choice(paths)
        method = "HEAD" if rng.random() < 0.15 else "GET"
        validators = validators_for(rng, ledger, identity, path) if ledger and rng.random() < 0.33 else ()
        out.append(Probe(rng.choice(ports), method, path, identity, validators))
    return out


def validators_for(
    rng: random.Random, ledger: Ledger, identity: Identity, path: str
) -> tuple[tuple[str, str], ...]:
    own = [etag for etag, (who, url) in ledger.etag_owner.items() if url == path and who == identity]
    foreign = [etag for etag, (who, url) in ledger.etag_owner.items() if url == path and who != identity]
    choices: list[tuple[tuple[str, str], ...]] = [
        (("If-None-Match", "*"),),
        (("If-Modified-Since", formatdate(time.time() + 3600, usegmt=True)),),
        (("If-Modified-Since", formatdate(time.time() - 3600, usegmt=True)),),
    ]
    choices += [(("If-None-Match", etag),) for etag in rng.sample(own, min(3, len(own)))]
    choices += [(("If-None-Match", etag),) for etag in rng.sample(foreign, min(3, len(foreign)))]
    return rng.choice(choices)


def assert_no_leak(ledger: Ledger) -> None:
    ledger.finish()
    assert not ledger.problems, "\n".join(ledger.problems[:30])


def print_outcomes(title: str, ledger: Ledger) -> None:
    print(f"\n{title}: {len(ledger.replies)} replies")
    for (who, method, what), count in sorted(ledger.outcomes.items()):
        print(f"  {who:<10}{method:<5}{what:<24}{count:>6}")


# -- The paths -------------------------------------------------------------------------------------


async def test_fresh_coalesced_head_and_304_answers_belong_to_their_requester(stack: Stack) -> None:
    """Cold keys hit at once by everyone (coalesced misses, across sidecars on Redis), then warm
    (HITs, the fast path, 304s from the cache, HEADs answered from the GET entry)."""
    rng = random.Random(f"fresh-{stack.store}")
    run = stack.run
    paths = [
        *(f"/api/checked/fresh-{run}-{i}" for i in range(6)),
        f"/api/checked/fresh-{run}-0?page=2",
        f"/api/whoami?run={run}",
        f"/api/slow?run={run}",
        f"/api/private?run={run}",
        f"/api/with-cookie?run={run}",
    ]
    ports = [server.port for server in stack.swr]
    ledger = Ledger()
    async with client() as http:
        await burst(http, ledger, probes(rng, ports, paths, BURST))
        for _ in range(2):
            await burst(http, ledger, probes(rng, ports, paths, BURST, ledger))
    print_outcomes(f"fresh, coalesced, HEAD, 304 ({stack.store})", ledger)
    assert_no_leak(ledger)
    assert ledger.count(True, "GET", "collapsed") > 0
    assert ledger.count(True, "GET", "hit") > 0
    assert ledger.count(True, "HEAD", "hit") + ledger.count(True, "HEAD", "collapsed") > 0
    assert ledger.count(False, "GET", "bypass") > 0
    assert ledger.count(False, "HEAD", "bypass") > 0
    assert any(r.status == 304 and r.probe.identity.anonymous for r in ledger.replies)


async def test_stale_while_revalidate_answers_belong_to_their_requester(stack: Stack) -> None:
    """Entries past their 2 s TTL, within stale-while-revalidate: anonymous clients get the stale
    entry at once (and one refresh runs), users still get their own answer."""
    rng = random.Random(f"swr-{stack.store}")
    paths = [f"/api/checked-short/swr-{stack.run}-{i}" for i in range(4)]
    ports = [server.port for server in stack.swr]
    ledger = Ledger()
    async with client() as http:
        await burst(http, ledger, probes(rng, ports, paths, BURST // 2))
        await asyncio.sleep(SHORT_TTL + 0.5)
        await burst(http, ledger, probes(rng, ports, paths, BURST, ledger))
    print_outcomes(f"stale-while-revalidate ({stack.store})", ledger)
    assert_no_leak(ledger)
    assert ledger.count(True, "GET", "stale-while-revalidate") > 0


# -- Pipelining: one connection, several identities -----------------------------------------------


async def read_response(reader: asyncio.StreamReader, head_only: bool) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off a pipelined connection (Content-Length or chunked body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_only or status in (204, 304):
        return status, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return status, headers, body
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def pipeline(port: int, requests: Sequence[tuple[str, str, Identity, dict[str, str]]]) -> list[Reply]:
    """``requests`` (method, path, identity, extra headers) written at once on one connection; the
    replies in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        wire = b""
        for method, path, identity, extra in requests:
            fields = {"Host": f"127.0.0.1:{port}", **identity.headers(), **extra}
            wire += f"{method} {path} HTTP/1.1\r\n".encode()
            wire += "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode("latin-1")
            wire += b"\r\n"
        writer.write(wire)
        await writer.drain()
        replies = []
        for method, path, identity, extra in requests:
            status, headers, body = await asyncio.wait_for(read_response(reader, method == "HEAD"), 10)
            probe = Probe(port, method, path, identity, tuple(extra.items()))
            replies.append(Reply(probe, status, CIMultiDictProxy(CIMultiDict(headers)), body))
        return replies
    finally:
        writer.close()


async def test_pipelined_requests_of_different_identities_get_their_own_answers(stack: Stack) -> None:
    """Anonymous and user requests pipelined on one keep-alive connection: the HIT fast path answers
    some and hands the connection (with the bytes it has not answered) to aiohttp for the rest;
    every answer still goes to the request it was made for, in order."""
    port = stack.swr[0].port
    warm = f"/api/checked/pipe-{stack.run}"
    ledger = Ledger()
    async with client() as http:
        await burst(http, ledger, [Probe(port, "GET", warm, ANONYMOUS)])
    etag = ledger.replies[0].headers["ETag"]
    user, other = USERS[0], USERS[4]
    orders = [
        [ANONYMOUS, user, ANONYMOUS, ANONYMOUS, other, ANONYMOUS],
        [user, ANONYMOUS, other, ANONYMOUS, ANONYMOUS, user],
    ]
    for identities in orders:
        cold = f"/api/checked/pipe-{stack.run}-{secrets.token_hex(3)}"
        requests = [
            (("HEAD" if index == 3 else "GET"), (cold if index == 2 else warm), identity, {})
            for index, identity in enumerate(identities)
        ]
        requests.append(("GET", warm, ANONYMOUS, {"If-None-Match": etag}))
        for reply in await pipeline(port, requests):
            ledger.check(reply)
    assert_no_leak(ledger)
    assert [r.status for r in ledger.replies[-7:]] == [200] * 6 + [304]


# -- Last on each stack: the app goes down ---------------------------------------------------------


async def test_stale_if_error_answers_belong_to_their_requester(stack: Stack) -> None:
    """The app down and entries past their TTL: anonymous clients get the stale entry (or a 304 from
    it), users a 502, never the anonymous entry. Runs last on its stack: it stops the app."""
    rng = random.Random(f"sie-{stack.store}")
    paths = [f"/api/checked-short/sie-{stack.run}-{i}" for i in range(4)]
    ports = [stack.plain.port]
    ledger = Ledger()
    async with client() as http:
        # One anonymous GET per key first, so that every key has an entry to fall back on.
        await burst(http, ledger, [Probe(port, "GET", path, ANONYMOUS) for path in paths for port in ports])
        await burst(http, ledger, probes(rng, ports, paths, BURST // 2))
        memcached.kill(stack.app)  # SIGKILL, as a crash (a SIGTERM'd Tina4 takes seconds to go)
        try:
            ledger.app_down = True
            await asyncio.sleep(SHORT_TTL + 0.5)
            down = [*paths, f"/api/checked-short/sie-{stack.run}-cold"]
            await burst(http, ledger, probes(rng, ports, down, BURST, ledger))
        finally:
            await asyncio.to_thread(stack.app.start)
    print_outcomes(f"stale-if-error ({stack.store})", ledger)
    assert_no_leak(ledger)
    assert ledger.count(True, "GET", "stale-if-error") > 0
    assert ledger.count(False, "GET", "502") > 0
    user_answers_while_down = [
        r for r in ledger.replies[-BURST:] if not r.probe.identity.anonymous and r.status != 502
    ]
    assert not user_answers_while_down, [r.where() for r in user_answers_while_down[:5]]
