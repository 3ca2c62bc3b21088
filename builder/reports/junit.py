"""The JUnit XML test reports a build leaves, read into per-test outcomes that nodes compare.

Every node of the network reads the reports its own run of a build wrote, and the outcomes are
later compared across nodes: a test that passed on one node and failed on another is proven
flaky. So reading is a function of the bytes alone, the same on every node whatever order the
files come in; it is bounded (MAX_REPORT_BYTES a file, MAX_REPORTS files and MAX_TESTS test
cases a build, MAX_NAME_CHARS a test id); and it is safe against a hostile build, which writes
the reports and may write anything.

A report is refused (ReportError, one line naming the file and why) before any parsing if it
is too large or holds a `<!DOCTYPE` or `<!ENTITY` anywhere (in any case). No JUnit writer needs
a document type, and refusing it outright means no entity is ever declared, so none is ever
expanded (billion laughs) or fetched (external entities): nothing to configure or get wrong in
the parser. A report must also be UTF-8, and it is parsed as text, so that a declared or
byte-order-marked encoding (UTF-16, say) cannot hide a DOCTYPE from that search. It is then
parsed as a stream, keeping no tree, so that a file of many tiny or deeply nested elements
costs no more memory than its testcases.

The root is `<testsuites>` or `<testsuite>`; testcases count at any depth under it. A test's
id is `classname::name`, or `name` without a classname; a testcase with a `<failure>` child
failed, else with an `<error>` child is an error, else with a `<skipped>` child was skipped,
else passed. Ids must be printable (no control or format characters, bidi overrides included,
which could make one id read as another) and short. An id seen twice, in one file or across
files, keeps its worse outcome (failed > error > skipped > passed): taking the larger in a
total order does not depend on which came first, so neither does the result.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from xml.etree.ElementTree import ParseError, XMLParser

MAX_REPORT_BYTES = 8 * 1024 * 1024
MAX_REPORTS = 16
MAX_TESTS = 10_000
MAX_NAME_CHARS = 512
OUTCOMES = ("passed", "failed", "error", "skipped")
ROOTS = ("testsuites", "testsuite")
ALL_REPORTS = "(all reports)"

_RANK = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
_MARKS = {"failure": "failed", "error": "error", "skipped": "skipped"}
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class ReportError(ValueError):
    """A report, or a build's reports together, that cannot be read into outcomes."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        # The path is the build's choice: escaped, it cannot break the message's one line.
        shown = path if path.isprintable() else repr(path)
        super().__init__(f"test report {shown}: {reason}")

    def __reduce__(self):
        # A ValueError pickles as cls(*args), and args holds the message, not path and reason.
        return ReportError, (self.path, self.reason)


def _worse(first: str | None, second: str) -> str:
    return second if first is None or _RANK[second] > _RANK[first] else first


def _test_id(path: str, attrib: dict[str, str]) -> str:
    name, classname = attrib.get("name", "").strip(), attrib.get("classname", "").strip()
    if not name:
        raise ReportError(path, "a testcase without a name")
    test_id = f"{classname}::{name}" if classname else name
    if len(test_id) > MAX_NAME_CHARS:
        raise ReportError(path, f"test id {test_id[:60]!r} is over {MAX_NAME_CHARS} characters (MAX_NAME_CHARS)")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in test_id):
        raise ReportError(path, f"test id {test_id[:60]!r} holds a control or format character")
    return test_id


class _Outcomes:
    """An XMLParser target that keeps the outcome of each testcase as the parser streams past."""

    def __init__(self, path: str):
        self.path = path
        self.outcomes: dict[str, str] = {}
        self.tags: list[str] = []  # the open elements, for a mark's parent
        self.cases: list[list[str]] = []  # the open testcases: [test id, outcome so far]
        self.count = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if not self.tags and tag not in ROOTS:
            raise ReportError(self.path, f"the root element is <{tag[:60]}>, not <testsuites> or <testsuite>")
        if tag == "testcase":
            self.count += 1
            if self.count > MAX_TESTS:  # as soon as it is over, so a huge file costs no more
                raise ReportError(self.path, f"more than {MAX_TESTS} test cases (MAX_TESTS)")
            self.cases.append([_test_id(self.path, attrib), "passed"])
        elif tag in _MARKS and self.tags and self.tags[-1] == "testcase":
            self.cases[-1][1] = _worse(self.cases[-1][1], _MARKS[tag])
        self.tags.append(tag)

    def end(self, tag: str) -> None:
        self.tags.pop()
        if tag == "testcase":
            test_id, outcome = self.cases.pop()
            self.outcomes[test_id] = _worse(self.outcomes.get(test_id), outcome)

    def close(self) -> dict[str, str]:
        return dict(sorted(self.outcomes.items()))


def check_size(path: str, size: int) -> None:
    """ReportError if a report of `size` bytes is over the bound: said before a byte of it is read."""
    if size > MAX_REPORT_BYTES:
        raise ReportError(path, f"{size} bytes, over the {MAX_REPORT_BYTES}-byte bound (MAX_REPORT_BYTES)")


def parse_junit(path: str, data: bytes) -> dict[str, str]:
    """The outcomes of one report, `data` as read from `path`: test id -> outcome, sorted by id."""
    check_size(path, len(data))
    if _DECLARATION.search(data):
        raise ReportError(path, "a DOCTYPE or entity declaration is refused")
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReportError(path, f"not UTF-8: byte {error.start}") from None
    parser = XMLParser(target=_Outcomes(path))
    try:
        # Fed as text, the parser ignores any encoding the document declares.
        parser.feed(text)
        return parser.close()
    except ParseError as error:
        line, column = error.position
        raise ReportError(path, f"not well-formed XML: line {line}, column {column}") from None


def merge(reports: Iterable[tuple[str, dict[str, str]]]) -> dict[str, str]:
    """The outcomes of all the reports of a build, by test id, sorted by id; an id in several
    reports takes its worse outcome. Neither the result nor which error is raised depends on
    the order of `reports`: they are taken in order of path (then content)."""
    taken = []
    for report in reports:
        taken.append(report)
        if len(taken) > MAX_REPORTS:  # before reading the rest of what may be endless
            raise ReportError(ALL_REPORTS, f"more than {MAX_REPORTS} reports (MAX_REPORTS)")
    merged: dict[str, str] = {}
    for path, outcomes in sorted(taken, key=lambda report: (report[0], sorted(report[1].items()))):
        for test_id, outcome in outcomes.items():
            if outcome not in _RANK:
                raise ReportError(path, f"test {test_id[:60]!r} has an unknown outcome {outcome[:60]!r}")
            merged[test_id] = _worse(merged.get(test_id), outcome)
    if len(merged) > MAX_TESTS:
        raise ReportError(ALL_REPORTS, f"{len(merged)} test cases, over {MAX_TESTS} (MAX_TESTS)")
    return dict(sorted(merged.items()))


def canonical(outcomes: dict[str, str]) -> bytes:
    """The bytes nodes hash and compare: the same outcomes give the same bytes, in any order."""
    return json.dumps({"tests": outcomes}, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def outcomes_digest(outcomes: dict[str, str]) -> str:
    return "sha256:" + hashlib.sha256(canonical(outcomes)).hexdigest()


def summary(outcomes: dict[str, str]) -> dict[str, int]:
    """How many tests had each outcome, every one of OUTCOMES a key, even at 0."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes.values():
        counts[outcome] += 1
    return counts
