"""Score a cache-tests results file the way cache-tests.fyi does.

The suite (http-tests/cache-tests) writes one JSON object per run: test id -> ``true`` (passed)
or ``[error name, message]`` (failed). This script reads such a file plus the suite's own test
definitions (``tests/index.mjs``, loaded through ``node`` because they are JavaScript modules)
and classifies every test with the rules of ``test-engine/lib/results.mjs``
(``determineTestResult``):

* a test's ``kind`` is ``required`` (the default), ``optimal`` (optional: failing it is not a
  conformance problem) or ``check`` (informational yes/no);
* a test only counts as passed when every test in its ``depends_on`` passed (or answered
  "yes") too, recursively; otherwise it is a dependency failure (the site's grey circle);
* ``Setup`` errors are setup failures (or retries), ``AbortError`` (a request timed out) is a
  harness failure; neither counts as passed.

The denominators are the tests the CLI runs for that kind of cache: reverse proxies and CDNs
skip ``browser_only`` tests; browsers skip ``browser_skip`` and ``cdn_only`` ones
(``test-engine/client/runner.mjs``).

Usage::

    python tests/conformance/score.py RESULTS.json [--suite DIR] [--failures]
    python tests/conformance/score.py --published [RESULTS.json ...] [--suite DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SUITE = "/work/shared/cache-tests"

# Result classes, named as in test-engine/lib/results.mjs (resultTypes).
UNTESTED = "untested"
PASS = "pass"
FAIL = "fail"
OPTIONAL_FAIL = "optional_fail"
YES = "yes"
NO = "no"
SETUP_FAIL = "setup_fail"
HARNESS_FAIL = "harness_fail"
DEPENDENCY_FAIL = "dependency_fail"
RETRY = "retry"
PASS_TYPES = frozenset({PASS, YES})

# RFC 9111 anchors (https://httpwg.org/specs/rfc9111.html#<anchor>) -> section numbers.
RFC9111_SECTIONS: dict[str, str] = {
    "delta-seconds": "1.2.2",
    "caching.overview": "2",
    "response.cacheability": "3",
    "storing.fields": "3.1",
    "update": "3.2",
    "incomplete.responses": "3.3",
    "combining.responses": "3.4",
    "caching.authenticated.responses": "3.5",
    "constructing.responses.from.caches": "4",
    "caching.negotiated.responses": "4.1",
    "expiration.model": "4.2",
    "calculating.freshness.lifetime": "4.2.1",
    "heuristic.freshness": "4.2.2",
    "age.calculations": "4.2.3",
    "serving.stale.responses": "4.2.4",
    "validation.model": "4.3",
    "validation.sent": "4.3.1",
    "validation.received": "4.3.2",
    "validation.response": "4.3.3",
    "freshening.responses": "4.3.4",
    "head.effects": "4.3.5",
    "invalidation": "4.4",
    "header.field.definitions": "5",
    "field.age": "5.1",
    "field.cache-control": "5.2",
    "cache-request-directive": "5.2.1",
    "cache-request-directive.max-age": "5.2.1.1",
    "cache-request-directive.max-stale": "5.2.1.2",
    "cache-request-directive.min-fresh": "5.2.1.3",
    "cache-request-directive.no-cache": "5.2.1.4",
    "cache-request-directive.no-store": "5.2.1.5",
    "cache-request-directive.no-transform": "5.2.1.6",
    "cache-request-directive.only-if-cached": "5.2.1.7",
    "cache-response-directive": "5.2.2",
    "cache-response-directive.max-age": "5.2.2.1",
    "cache-response-directive.must-revalidate": "5.2.2.2",
    "cache-response-directive.must-understand": "5.2.2.3",
    "cache-response-directive.no-cache": "5.2.2.4",
    "cache-response-directive.no-store": "5.2.2.5",
    "cache-response-directive.no-transform": "5.2.2.6",
    "cache-response-directive.private": "5.2.2.7",
    "cache-response-directive.proxy-revalidate": "5.2.2.8",
    "cache-response-directive.public": "5.2.2.9",
    "cache-response-directive.s-maxage": "5.2.2.10",
    "cache.control.extensions": "5.2.3",
    "field.expires": "5.3",
    "field.pragma": "5.4",
    "field.warning": "5.5",
}
# Anchors the suite uses that are not RFC 9111's (it links them to rfc9111.html regardless).
OTHER_ANCHORS: dict[str, str] = {"field.date": "RFC 9110 §6.6.1 (Date)"}


@dataclass(frozen=True, slots=True)
class Test:
    """One test definition from the suite, with what scoring needs."""

    id: str
    name: str
    kind: str
    suite: str
    depends_on: tuple[str, ...] = ()
    spec_anchors: tuple[str, ...] = ()
    suite_anchors: tuple[str, ...] = ()
    browser_only: bool = False
    cdn_only: bool = False
    browser_skip: bool = False

    def runs_on(self, cache_type: str) -> bool:
        """Whether the CLI (or the browser runner) runs this test for that kind of cache."""
        if cache_type == "browser":
            return not (self.cdn_only or self.browser_skip)
        return not self.browser_only


@dataclass(slots=True)
class Score:
    """Classified results of one results file."""

    label: str
    cache_type: str
    classes: dict[str, str] = field(default_factory=dict)
    """test id -> result class, for the tests that run on this kind of cache"""
    raw: dict[str, Any] = field(default_factory=dict)
    unknown_ids: list[str] = field(default_factory=list)
    """result ids that the suite does not define (a results file from another suite version)"""

    def count(self, tests: Mapping[str, Test], kind: str) -> tuple[int, int, Counter[str]]:
        """Passed, total and the class histogram of the tests of one kind."""
        histogram: Counter[str] = Counter(
            cls for test_id, cls in self.classes.items() if tests[test_id].kind == kind
        )
        passed = sum(n for cls, n in histogram.items() if cls in PASS_TYPES)
        return passed, sum(histogram.values()), histogram

    def raw_passed(self, tests: Mapping[str, Test], kind: str) -> int:
        """Tests of one kind whose own result is ``true``, dependencies ignored."""
        return sum(
            1 for test_id in self.classes if tests[test_id].kind == kind and self.raw.get(test_id) is True
        )


# ---------------------------------------------------------------------------------------------
# Loading


def _node_json(suite: Path, script: str) -> Any:
    node = shutil.which("node")
    if node is None:
        sys.exit("score.py: node not found on PATH; it is needed to read the suite's test definitions")
    proc = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"score.py: node could not load the suite at {suite}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def load_tests(suite: Path) -> dict[str, Test]:
    """Every test of the suite by id, in suite order (``tests/index.mjs``, loaded with node)."""
    index = suite / "tests" / "index.mjs"
    if not index.is_file():
        sys.exit(f"score.py: no test definitions at {index} (use --suite DIR)")
    suites = _node_json(
        suite,
        f"import t from {json.dumps(index.resolve().as_uri())}; process.stdout.write(JSON.stringify(t))",
    )
    tests: dict[str, Test] = {}
    for test_suite in suites:
        for raw in test_suite["tests"]:
            test = Test(
                id=raw["id"],
                name=raw.get("name", ""),
                kind=raw.get("kind") or "required",
                suite=test_suite.get("name", test_suite.get("id", "")),
                depends_on=tuple(raw.get("depends_on") or ()),
                spec_anchors=tuple(raw.get("spec_anchors") or ()),
                suite_anchors=tuple(test_suite.get("spec_anchors") or ()),
                browser_only=raw.get("browser_only") is True,
                cdn_only=raw.get("cdn_only") is True,
                browser_skip=raw.get("browser_skip") is True,
            )
            if test.kind not in ("required", "optimal", "check"):
                sys.exit(f"score.py: test {test.id} has an unknown kind {test.kind!r}")
            tests[test.id] = test
    return tests


def load_published_index(suite: Path) -> list[dict[str, Any]]:
    """``results/index.mjs``: file, name, type (browser, rev-proxy, cdn) and version per entry."""
    index = suite / "results" / "index.mjs"
    if not index.is_file():
        sys.exit(f"score.py: no published results index at {index}")
    entries: list[dict[str, Any]] = _node_json(
        suite,
        f"import t from {json.dumps(index.resolve().as_uri())}; process.stdout.write(JSON.stringify(t))",
    )
    return entries


def load_results(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"score.py: cannot read results {path}: {exc}")
    if not isinstance(document, dict):
        sys.exit(f"score.py: {path} is not a cache-tests results object (test id -> result)")
    return document


# ---------------------------------------------------------------------------------------------
# Scoring: a port of determineTestResult() in test-engine/lib/results.mjs


def classify(tests: Mapping[str, Test], results: Mapping[str, Any], test_id: str) -> str:
    """The result class of one test, dependencies honoured (as the site shows it)."""
    memo: dict[str, str] = {}

    def visit(tid: str, seen: frozenset[str]) -> str:
        if tid in memo:
            return memo[tid]
        test = tests.get(tid)
        result = results.get(tid)
        if test is None or result is None:
            return UNTESTED
        if tid in seen:  # a dependency cycle would recurse forever in results.mjs; call it failed
            return DEPENDENCY_FAIL
        cls = _own_class(test, result)
        for dependency in test.depends_on:
            if visit(dependency, seen | {tid}) not in PASS_TYPES:
                cls = DEPENDENCY_FAIL
                break
        memo[tid] = cls
        return cls

    return visit(test_id, frozenset())


def _own_class(test: Test, result: Any) -> str:
    if isinstance(result, list) and result and result[0] == "Setup":
        return RETRY if len(result) > 1 and result[1] == "retry" else SETUP_FAIL
    if result is False or (isinstance(result, list) and result and result[0] == "AbortError"):
        return HARNESS_FAIL
    passed = result is True
    if test.kind == "required":
        return PASS if passed else FAIL
    if test.kind == "optimal":
        return PASS if passed else OPTIONAL_FAIL
    return YES if passed else NO


def guess_cache_type(tests: Mapping[str, Test], results: Mapping[str, Any]) -> str:
    """``browser`` when the file has results of browser-only tests, else ``proxy``."""
    return "browser" if any(tid in results and t.browser_only for tid, t in tests.items()) else "proxy"


def score(
    tests: Mapping[str, Test], results: Mapping[str, Any], label: str, cache_type: str | None = None
) -> Score:
    kind = cache_type or guess_cache_type(tests, results)
    scored = Score(label=label, cache_type=kind, raw=dict(results))
    scored.unknown_ids = sorted(tid for tid in results if tid not in tests)
    for test_id, test in tests.items():
        if test.runs_on(kind):
            scored.classes[test_id] = classify(tests, results, test_id)
    return scored


# ---------------------------------------------------------------------------------------------
# Output


def spec_sections(test: Test) -> str:
    """``RFC 9111 §5.2.2.1 (cache-response-directive.max-age)`` for each anchor of the test; the
    suite's anchors, marked so, when the test has none."""
    anchors, from_suite = (test.spec_anchors, False) if test.spec_anchors else (test.suite_anchors, True)
    parts = [_anchor_text(anchor) for anchor in anchors]
    text = "; ".join(parts) if parts else "-"
    return f"{text} [suite-level]" if from_suite and parts else text


def _anchor_text(anchor: str) -> str:
    if anchor in RFC9111_SECTIONS:
        return f"RFC 9111 §{RFC9111_SECTIONS[anchor]} ({anchor})"
    if anchor in OTHER_ANCHORS:
        return OTHER_ANCHORS[anchor]
    if anchor.startswith("http"):
        # e.g. https://www.rfc-editor.org/rfc/rfc5861.html#section-3 -> RFC 5861 §3
        name = anchor.rsplit("/", 1)[-1]
        doc, _, frag = name.partition("#")
        number = doc.removesuffix(".html").removeprefix("rfc")
        if number.isdigit():
            section = frag.removeprefix("section-")
            return f"RFC {number}" + (f" §{section}" if section else "")
        return anchor
    return f"RFC 9111 #{anchor}"


def root_causes(tests: Mapping[str, Test], results: Mapping[str, Any], test_id: str) -> list[str]:
    """The tests that make ``test_id`` a dependency failure: not passed on their own account
    (not merely because of their own dependencies), found along ``depends_on``."""
    found: list[str] = []
    stack = list(tests[test_id].depends_on) if test_id in tests else []
    seen: set[str] = set()
    while stack:
        tid = stack.pop(0)
        if tid in seen:
            continue
        seen.add(tid)
        cls = classify(tests, results, tid)
        if cls in PASS_TYPES:
            continue
        if cls == DEPENDENCY_FAIL and tid in tests:
            stack.extend(tests[tid].depends_on)
        else:
            found.append(tid)
    return found


def _failure_detail(test: Test, scored: Score, tests: Mapping[str, Test]) -> str:
    cls = scored.classes[test.id]
    if cls == DEPENDENCY_FAIL:
        failed = [d for d in test.depends_on if classify(tests, scored.raw, d) not in PASS_TYPES]
        detail = "depends on " + ", ".join(f"{d} ({classify(tests, scored.raw, d)})" for d in failed)
        roots = [r for r in root_causes(tests, scored.raw, test.id) if r not in failed]
        if roots:
            detail += "; root: " + ", ".join(f"{r} ({classify(tests, scored.raw, r)})" for r in roots)
        own = scored.raw.get(test.id)
        return detail + ("; its own result: pass" if own is True else "")
    if cls == UNTESTED:
        return "no result in the file"
    result = scored.raw.get(test.id)
    if isinstance(result, list):
        return ": ".join(str(part) for part in result)
    return str(result)


def print_summary(scored: Score, tests: Mapping[str, Test], *, failures: bool) -> None:
    print(f"Results: {scored.label} (scored as a {scored.cache_type} cache)")
    for kind, title in (("required", "REQUIRED"), ("optimal", "OPTIONAL (optimal)")):
        passed, total, histogram = scored.count(tests, kind)
        rest = ", ".join(f"{cls} {n}" for cls, n in sorted(histogram.items()) if cls not in PASS_TYPES)
        raw = scored.raw_passed(tests, kind)
        print(f"  {title:<19} passed {passed:>3} / {total:<3}  ({rest or 'no failures'})")
        print(f"  {'':<19} raw passes, dependencies ignored: {raw}")
    yes, total, histogram = scored.count(tests, "check")
    print(
        f"  {'CHECK (info only)':<19} yes {yes:>3} / {total:<3}  (no {histogram.get(NO, 0)}, other "
        f"{total - yes - histogram.get(NO, 0)})"
    )
    if scored.unknown_ids:
        print(
            f"  note: {len(scored.unknown_ids)} result ids are not in this suite version, ignored: "
            + ", ".join(scored.unknown_ids[:8])
            + (" ..." if len(scored.unknown_ids) > 8 else "")
        )
    blockers: Counter[str] = Counter()
    for test_id, cls in scored.classes.items():
        if cls == DEPENDENCY_FAIL and tests[test_id].kind == "required":
            blockers.update(root_causes(tests, scored.raw, test_id))
    if blockers:
        print(
            "  required tests not counted because of (root dependency: tests blocked): "
            + ", ".join(
                f"{tid} [{classify(tests, scored.raw, tid)}]: {n}" for tid, n in blockers.most_common(6)
            )
        )
    if not failures:
        return
    order = [FAIL, DEPENDENCY_FAIL, SETUP_FAIL, HARNESS_FAIL, RETRY, UNTESTED]
    failed = [t for t in tests.values() if t.kind == "required" and scored.classes.get(t.id) in order]
    failed.sort(key=lambda t: order.index(scored.classes[t.id]))
    print(f"\nRequired tests not passed ({len(failed)}):")
    for test in failed:
        print(f"- [{scored.classes[test.id]}] {test.id}  ({test.suite})")
        print(f"    {test.name}")
        print(f"    spec: {spec_sections(test)}")
        print(f"    why:  {_failure_detail(test, scored, tests)}")


def print_table(rows: Iterable[tuple[str, str, Score]], tests: Mapping[str, Test]) -> None:
    header = (
        f"{'implementation':<26} {'type':<9} {'required':>9} {'raw':>4} {'fail':>4} {'dep':>4} "
        f"{'other':>5} {'optional':>9} {'check yes':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, kind, scored in rows:
        passed, total, hist = scored.count(tests, "required")
        opt_passed, opt_total, _ = scored.count(tests, "optimal")
        yes, checks, _ = scored.count(tests, "check")
        other = total - passed - hist.get(FAIL, 0) - hist.get(DEPENDENCY_FAIL, 0)
        print(
            f"{name[:26]:<26} {kind:<9} {f'{passed}/{total}':>9} {scored.raw_passed(tests, 'required'):>4} "
            f"{hist.get(FAIL, 0):>4} {hist.get(DEPENDENCY_FAIL, 0):>4} {other:>5} "
            f"{f'{opt_passed}/{opt_total}':>9} {f'{yes}/{checks}':>9}"
        )
    print(
        "\nrequired/optional: passed with dependencies honoured / tests run for that type of cache;"
        "\nraw: required tests whose own result is true; fail: required failures (the red ones);"
        "\ndep: required tests not counted because a test they depend on did not pass;"
        "\nother: setup or harness failures, retries, untested."
    )


def published_rows(
    suite: Path, tests: Mapping[str, Test], extra: Sequence[Path]
) -> list[tuple[str, str, Score]]:
    rows: list[tuple[str, str, Score]] = []
    for entry in load_published_index(suite):
        path = suite / "results" / entry["file"]
        if not path.is_file():
            continue
        kind = "browser" if entry.get("type") == "browser" else "proxy"
        label = f"{entry['name']} {entry.get('version', '')}".strip()
        rows.append((label, str(entry.get("type", kind)), score(tests, load_results(path), label, kind)))
    listed = {entry["file"] for entry in load_published_index(suite)}
    for path in sorted((suite / "results").glob("*.json")):  # files the index does not name
        if path.name not in listed:
            rows.append((path.stem, "?", score(tests, load_results(path), path.stem)))
    for path in extra:
        rows.append((path.name, "ours", score(tests, load_results(path), path.name, "proxy")))
    rows.sort(key=lambda row: (row[2].cache_type == "browser", -row[2].count(tests, "required")[0]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score cache-tests results (cache-tests.fyi rules: dependencies honoured)."
    )
    parser.add_argument(
        "results", nargs="*", type=Path, help="results JSON file(s) written by the suite's CLI"
    )
    parser.add_argument(
        "--suite",
        type=Path,
        default=Path(os.environ.get("CACHE_TESTS_DIR") or DEFAULT_SUITE),
        help=f"the cache-tests checkout (default: $CACHE_TESTS_DIR or {DEFAULT_SUITE})",
    )
    parser.add_argument("--failures", action="store_true", help="list the required tests not passed")
    parser.add_argument(
        "--published",
        action="store_true",
        help="print a table scoring every file in the suite's results/ (plus any RESULTS given)",
    )
    parser.add_argument(
        "--type",
        choices=("proxy", "browser"),
        help="kind of cache the results are from (default: guessed from the results)",
    )
    args = parser.parse_args(argv)
    tests = load_tests(args.suite)
    if args.published:
        print_table(published_rows(args.suite, tests, args.results), tests)
        return 0
    if not args.results:
        parser.error("give a results file, or --published")
    for index, path in enumerate(args.results):
        if index:
            print()
        print_summary(score(tests, load_results(path), str(path), args.type), tests, failures=args.failures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
