"""What the fast path knows of a request's header block: llhttp's parse, and the decision drawn
from it, remembered per distinct block.

A header block is parsed by llhttp (httptools, fed one whole block at a time) into a
``RequestHead``, and then decided: answerable from the cache (a cached rule, no credentials, no
validators), forwardable (a GET no cached rule covers), or neither (aiohttp takes it). Clients
repeat the very same bytes (a load balancer's health check, the same page polled, a benchmark),
and the same bytes always parse and decide the same way under the same rules, so decisions are
remembered by the exact bytes of the block, bounded in number, and dropped when the rules change.
Only blocks the fast path answers are remembered (one per user would be no use).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
from multidict import CIMultiDict

from tina4_sidecar.config.rules import Rule, RuleSet
from tina4_sidecar.proxy.bounded import BoundedDict
from tina4_sidecar.proxy.http import cacheability, fields
from tina4_sidecar.proxy.http.request_head import RequestHead, normalized_host

# A body, a protocol switch or an expectation: aiohttp handles these requests.
_FRAMING_HEADERS = ("content-length", "transfer-encoding", "upgrade", "expect")
# Conditional requests are answered from the cache by the slow path (304 logic lives there).
_VALIDATORS = ("if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range")
REMEMBERED = 1024
REMEMBERED_BYTES = 4 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Seen:
    """A parsed block and what the fast path does with it under ``rules``."""

    head: RequestHead
    target: bytes
    """The request target as sent."""
    rules: RuleSet
    rule: Rule | None
    cached: bool
    """Answer from the cache when a fresh entry is at hand."""
    forward: bool
    """Forward on the fast path's own connections."""
    forwarded: dict[str | None, bytes] = field(default_factory=dict)
    """The request for the app by client address (X-Forwarded-For differs), for a few addresses."""

    @property
    def route(self) -> str | None:
        """The metrics label of an answer: the cached rule's path pattern, None without one."""
        return self.rule.path if self.rule is not None and self.rule.cache else None


class _Parsed:
    """Callbacks for httptools: collects the one message of a header block."""

    __slots__ = ("complete", "headers", "messages", "url")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.messages = 0
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_message_complete(self) -> None:
        self.messages += 1
        self.complete = True


class BlockParser:
    """One llhttp parser (a connection's), fed one whole header block at a time (keep-alive)."""

    def __init__(self) -> None:
        self.parsed = _Parsed()
        self.parser = httptools.HttpRequestParser(self.parsed)
        self.closing = False
        """The last block parsed was a bodiless request with ``Connection: close``: the last one
        the connection may carry (RFC 9112 section 9.6)."""

    def parse(self, block: bytes) -> tuple[RequestHead, bytes] | None:
        """The head and raw target of a bodiless GET or HEAD on HTTP/1.1 keep-alive, else None."""
        parsed, parser = self.parsed, self.parser
        parsed.reset()
        self.closing = False
        try:
            parser.feed_data(block)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None
        if not parsed.complete or parsed.messages != 1 or parser.get_http_version() != "1.1":
            return None
        method = parser.get_method().decode("ascii")
        if method not in ("GET", "HEAD") or not parser.should_keep_alive():
            return None
        headers = parsed.headers
        if any(name in headers for name in _FRAMING_HEADERS):
            return None
        # llhttp's keep-alive flag is reset once the message is complete; the header says it.
        if "close" in fields.tokens(headers, "Connection"):
            self.closing = True
            return None  # aiohttp answers it with Connection: close (and nothing after it)
        try:
            url = httptools.parse_url(parsed.url)
        except httptools.HttpParserInvalidURLError:
            return None
        if url.schema is not None or url.fragment is not None:
            return None  # absolute-form or fragments: leave them to aiohttp
        raw_path = url.path.decode("latin-1") if url.path else "/"
        if not raw_path.startswith("/"):
            return None  # asterisk-form and other odd targets: aiohttp refuses them
        if "%" in raw_path or "\\" in raw_path:
            return None  # decoding rules differ between servers: the slow path handles them
        hosts = headers.getall("Host", ())
        host = normalized_host(hosts[0]) if len(hosts) == 1 else None
        if host is None:
            return None  # none, two or an invalid one: aiohttp's path answers 400
        head = RequestHead(
            method=method,
            scheme="http",
            host=host,
            path=raw_path,
            raw_path=raw_path,
            query=url.query.decode("latin-1") if url.query else "",
            headers=headers,
        )
        return head, parsed.url


def answerable(head: RequestHead, decision: cacheability.Decision, honor: bool) -> bool:
    """The cache takes part (``decision``: ``cacheability.decide`` of the request), the request
    may share its entries and needs nothing but a fresh entry: no validators, no credentials and
    (standards mode) no directives of its own."""
    if not decision.cached or decision.bypass is not None or decision.credentials:
        return False
    if honor and ("cache-control" in head.headers or "pragma" in head.headers):
        return False  # request directives are the aiohttp path's to weigh
    return not any(name in head.headers for name in _VALIDATORS)


def decide(
    head: RequestHead,
    target: bytes,
    rules: RuleSet,
    forwarding: bool,
    admin_prefix: str,
    honor: bool = False,
    manifest_path: str | None = None,
) -> Seen:
    """What to do with ``head``; ``forwarding``: the fast path has connections to the app. The
    admin API and the app's manifest are never forwarded, looked up or filled from here (aiohttp's
    path answers them)."""
    rule = rules.match(head.method, head.path)
    decision = cacheability.decide(head, rule, honor)
    reserved = head.path.startswith(admin_prefix) or head.path == manifest_path
    forward = not decision.cached and forwarding and head.method == "GET" and not reserved
    # The admin API and the manifest are never answered from the cache or filled from the app: a
    # catch-all rule, or standards mode, must not put the app's answer in place of the sidecar's.
    cached = not reserved and answerable(head, decision, honor)
    return Seen(head, target, rules, rule, cached, forward)


class SeenRequests:
    """Decisions by header block, at most ``REMEMBERED`` of them and ``REMEMBERED_BYTES`` of
    blocks (all forgotten when full)."""

    def __init__(self) -> None:
        self._seen: BoundedDict[bytes, Seen] = BoundedDict(REMEMBERED, REMEMBERED_BYTES)

    def get(self, block: bytes, rules: RuleSet) -> Seen | None:
        seen = self._seen.get(block)
        return seen if seen is not None and seen.rules is rules else None

    def remember(self, block: bytes, seen: Seen) -> None:
        if not (seen.cached or seen.forward):
            return
        self._seen.put(block, seen, 2 * len(block) + 500)  # the block, and the head parsed from it
