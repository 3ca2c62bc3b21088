"""The JUnit XML reports a build leaves (builder/reports/junit.py): the outcomes read from them,
the same on every node whatever the order of the files, and the hostile reports refused."""

from __future__ import annotations

import pickle

import pytest

from builder.reports.junit import (
    MAX_NAME_CHARS, MAX_REPORT_BYTES, MAX_REPORTS, MAX_TESTS, OUTCOMES, ReportError, canonical, merge,
    outcomes_digest, parse_junit, summary,
)

PYTEST_REPORT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.120"
             timestamp="2024-05-01T10:00:00" hostname="runner">
    <testcase classname="tests.test_app" name="test_ok" time="0.001" />
    <testcase classname="tests.test_app" name="test_broken" time="0.002">
      <failure message="assert 1 == 2">def test_broken():
&gt;       assert 1 == 2
E       assert 1 == 2</failure>
    </testcase>
    <testcase classname="tests.test_app" name="test_later" time="0.000">
      <skipped type="pytest.skip" message="not yet">tests/test_app.py:9: not yet</skipped>
    </testcase>
    <testcase classname="tests.test_db" name="test_connect[sqlite]" time="0.010">
      <error message="failed on setup with &quot;OSError&quot;">fixture failed</error>
    </testcase>
  </testsuite>
</testsuites>
"""

EXPECTED = {
    "tests.test_app::test_broken": "failed",
    "tests.test_app::test_later": "skipped",
    "tests.test_app::test_ok": "passed",
    "tests.test_db::test_connect[sqlite]": "error",
}


def suite(*cases: str, root: str = "testsuite") -> bytes:
    return f"<{root}>{''.join(cases)}</{root}>".encode()


def case(name: str, mark: str = "", classname: str = "") -> str:
    attribute = f' classname="{classname}"' if classname else ""
    return f'<testcase{attribute} name="{name}">{mark}</testcase>'


def refusal(data: bytes, path: str = "reports/a.xml") -> str:
    with pytest.raises(ReportError) as raised:
        parse_junit(path, data)
    message = str(raised.value)
    assert message.startswith(f"test report {path}: ") and "\n" not in message
    return message


def test_a_pytest_report_gives_each_test_its_outcome():
    outcomes = parse_junit("reports/pytest.xml", PYTEST_REPORT)
    assert outcomes == EXPECTED
    assert list(outcomes) == sorted(EXPECTED)


def test_a_root_testsuite_and_a_test_without_classname():
    data = suite(case("first"), case("second", "<failure/>"), case("third", classname="   "))
    assert parse_junit("r.xml", data) == {"first": "passed", "second": "failed", "third": "passed"}


def test_testcases_count_at_any_depth_of_nested_suites():
    inner = f"<testsuite><testsuite>{case('deep', '<error/>', 'pkg.mod')}</testsuite></testsuite>"
    data = suite(f"<testsuite>{case('top', classname='pkg')}{inner}</testsuite>", root="testsuites")
    assert parse_junit("r.xml", data) == {"pkg.mod::deep": "error", "pkg::top": "passed"}


def test_suites_nested_far_past_the_recursion_limit_are_read_without_a_tree():
    depth = 100_000
    data = b"<testsuite>" * depth + case("deep", "<skipped/>").encode() + b"</testsuite>" * depth
    assert parse_junit("r.xml", data) == {"deep": "skipped"}


def test_a_mark_counts_only_as_a_child_of_its_testcase():
    data = suite(case("quiet", "<system-out><failure/></system-out>"), "<failure/>")
    assert parse_junit("r.xml", data) == {"quiet": "passed"}


def test_of_several_marks_failed_beats_error_beats_skipped():
    data = suite(case("a", "<skipped/><error/>"), case("b", "<error/><failure/><skipped/>"), case("c", "<skipped/>"))
    assert parse_junit("r.xml", data) == {"a": "error", "b": "failed", "c": "skipped"}


def test_names_are_stripped_and_a_nameless_testcase_refused():
    assert parse_junit("r.xml", suite(case("  spaced  ", classname=" Cls "))) == {"Cls::spaced": "passed"}
    assert refusal(suite("<testcase classname='Cls' name='  '/>")).endswith("a testcase without a name")
    assert refusal(suite("<testcase classname='Cls'/>")).endswith("a testcase without a name")


def test_an_id_twice_in_one_report_keeps_the_worse_outcome_in_either_order():
    for marks in (("<failure/>", ""), ("", "<failure/>")):
        assert parse_junit("r.xml", suite(*(case("t", mark, "C") for mark in marks))) == {"C::t": "failed"}
    assert parse_junit("r.xml", suite(case("t", "<skipped/>"), case("t", "<error/>"), case("t"))) == {"t": "error"}


def test_the_billion_laughs_is_refused_before_any_expansion():
    names = ["lol", *(f"lol{level}" for level in range(2, 10))]
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY {name} "{f"&{below};" * 10}">' for below, name in zip(names, names[1:])
    ]
    data = f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]><testsuite>&lol9;</testsuite>'.encode()
    assert refusal(data).endswith("a DOCTYPE or entity declaration is refused")


def test_an_external_entity_is_refused():
    data = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><testsuite><testcase name="&e;"/></testsuite>'
    assert refusal(data) == "test report reports/a.xml: a DOCTYPE or entity declaration is refused"


def test_a_declaration_is_found_in_any_case_and_anywhere():
    assert "DOCTYPE" in refusal(b"<!doctype testsuite><testsuite/>")
    assert "DOCTYPE" in refusal(b'<testsuite><!-- <!EnTiTy e "x"> --></testsuite>')


def test_an_encoding_cannot_hide_a_declaration_from_the_search():
    # In UTF-16 the bytes of "<!DOCTYPE" are not those the search looks for; expat would read them.
    hidden = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE t [<!ENTITY a "x">]><testsuite/>'.encode("utf-16")
    assert "not UTF-8" in refusal(hidden)
    # Read as text, a declared encoding is ignored: these bytes are UTF-8 whatever they say.
    declared = '<?xml version="1.0" encoding="ISO-8859-1"?><testsuite>' + case("café") + "</testsuite>"
    assert parse_junit("r.xml", declared.encode()) == {"café": "passed"}
    assert parse_junit("r.xml", b"\xef\xbb\xbf" + suite(case("bom"))) == {"bom": "passed"}


def test_a_report_over_the_size_bound_is_refused_unparsed():
    message = refusal(b"<" * (MAX_REPORT_BYTES + 1))
    assert f"{MAX_REPORT_BYTES + 1} bytes" in message and str(MAX_REPORT_BYTES) in message
    assert "MAX_REPORT_BYTES" in message and "XML" not in message
    padded = suite(case("fits")).replace(b"<testsuite>", b"<testsuite>" + b" " * (MAX_REPORT_BYTES - 100))
    assert parse_junit("r.xml", padded) == {"fits": "passed"}


def test_malformed_xml_is_refused_with_line_and_column():
    message = refusal(b"<testsuite>\n  <testcase name='a'>\n</testsuite>")
    assert message == "test report reports/a.xml: not well-formed XML: line 3, column 2"
    assert "not well-formed XML: line 1" in refusal(b"")
    assert "not well-formed XML" in refusal(suite(case("a & b")))


def test_a_root_other_than_a_suite_is_refused():
    message = refusal(b"<html><testcase name='a'/></html>")
    assert message.endswith("the root element is <html>, not <testsuites> or <testsuite>")


# XML itself refuses most C0 controls; these are the ones it lets through, by reference or as is.
@pytest.mark.parametrize(("written", "name"), [
    ("new&#10;line", "new\nline"), ("tab&#9;bed", "tab\tbed"), ("del\x7f", "del\x7f"), ("n\x85el", "n\x85el"),
    ("admin\u202etxt.exe", "admin\u202etxt.exe"), ("zero\u200bwidth", "zero\u200bwidth"), ("bom\ufeff!", "bom\ufeff!"),
])
def test_a_control_or_format_character_in_an_id_is_refused(written, name):
    message = refusal(suite(case(written, classname="Cls")))
    assert message.endswith(f"test id {f'Cls::{name}'!r} holds a control or format character")


def test_a_control_character_in_the_classname_is_refused_too():
    assert "control or format" in refusal(suite(case("fine", classname="pkg\u202e")))


def test_an_id_over_the_name_bound_is_refused_and_shown_cut():
    assert parse_junit("r.xml", suite(case("n" * (MAX_NAME_CHARS - 3), classname="C"))) != {}
    long_name = "n" * (MAX_NAME_CHARS - 2)
    message = refusal(suite(case(long_name, classname="C")))
    assert repr(f"C::{long_name}"[:60]) in message and str(MAX_NAME_CHARS) in message
    assert long_name not in message


def test_more_test_cases_than_the_bound_are_refused():
    assert len(parse_junit("r.xml", suite(*(case(f"t{index}") for index in range(MAX_TESTS))))) == MAX_TESTS
    message = refusal(suite(*(case("same") for _ in range(MAX_TESTS + 1))))
    assert f"more than {MAX_TESTS} test cases" in message


def test_an_unprintable_path_is_escaped_in_the_one_line_message():
    with pytest.raises(ReportError) as raised:
        parse_junit("reports/a\nb.xml", b"<nope/>")
    assert str(raised.value).startswith("test report 'reports/a\\nb.xml': ") and "\n" not in str(raised.value)
    copied = pickle.loads(pickle.dumps(raised.value))
    assert (copied.path, str(copied)) == ("reports/a\nb.xml", str(raised.value))
    assert isinstance(raised.value, ValueError)


REPORTS = [
    ("reports/unit.xml", {"a::one": "passed", "a::two": "failed", "shared": "passed"}),
    ("reports/integration.xml", {"b::one": "skipped", "shared": "error"}),
    ("reports/more.xml", {"c::x": "passed", "shared": "skipped", "a::two": "passed"}),
]


def test_merge_takes_the_worse_outcome_and_sorts_by_id():
    merged = merge(REPORTS)
    assert merged == {"a::one": "passed", "a::two": "failed", "b::one": "skipped", "c::x": "passed", "shared": "error"}
    assert list(merged) == sorted(merged)


def test_merge_does_not_depend_on_the_order_of_the_reports():
    forward, backward = merge(REPORTS), merge(list(reversed(REPORTS)))
    assert forward == backward and canonical(forward) == canonical(backward)
    assert merge(iter([REPORTS[1], REPORTS[2], REPORTS[0]])) == forward
    bad = [("z.xml", {"t": "weird"}), ("a.xml", {"t": "odd"})]
    messages = set()
    for order in (bad, bad[::-1]):
        with pytest.raises(ReportError) as raised:
            merge(order)
        messages.add(str(raised.value))
    assert messages == {"test report a.xml: test 't' has an unknown outcome 'odd'"}


def test_merge_refuses_more_reports_than_the_bound_without_reading_them_all():
    assert len(merge((f"r{index}.xml", {f"t{index}": "passed"}) for index in range(MAX_REPORTS))) == MAX_REPORTS

    def endless():
        index = 0
        while True:
            yield f"r{index}.xml", {}
            index += 1

    with pytest.raises(ReportError, match=rf"^test report \(all reports\): more than {MAX_REPORTS} reports"):
        merge(endless())


def test_merge_refuses_more_tests_than_the_bound_in_all_reports_together():
    half = MAX_TESTS // 2 + 1
    reports = [("a.xml", {f"a{index}": "passed" for index in range(half)}),
               ("b.xml", {f"b{index}": "passed" for index in range(half)})]
    with pytest.raises(ReportError, match=r"^test report \(all reports\): ") as raised:
        merge(reports)
    assert f"{2 * half} test cases, over {MAX_TESTS}" in str(raised.value)
    shared = [("a.xml", reports[0][1]), ("b.xml", reports[0][1])]  # the same ids twice count once
    assert len(merge(shared)) == half


def test_canonical_bytes_and_digest_are_stable_and_follow_every_outcome():
    outcomes = parse_junit("r.xml", PYTEST_REPORT)
    assert canonical(dict(reversed(list(outcomes.items())))) == canonical(outcomes)
    assert canonical({"z": "passed", "é": "failed"}) == '{"tests":{"z":"passed","é":"failed"}}'.encode()
    digest = outcomes_digest(outcomes)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert outcomes_digest(dict(outcomes)) == digest
    changed = {**outcomes, "tests.test_app::test_ok": "failed"}
    assert outcomes_digest(changed) != digest
    assert outcomes_digest({}) == outcomes_digest({}) != digest


def test_summary_counts_every_outcome():
    assert summary(EXPECTED) == {"passed": 1, "failed": 1, "error": 1, "skipped": 1}
    assert summary({}) == dict.fromkeys(OUTCOMES, 0)
    assert list(summary({"x": "failed", "y": "failed"})) == list(OUTCOMES)
    assert summary({"x": "failed", "y": "failed"})["failed"] == 2
