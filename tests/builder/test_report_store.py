"""The node's store of builds' test outcomes (builder/workspace/testreports.py), on disk."""

import os
from pathlib import Path

from builder.reports.junit import outcomes_digest
from builder.workspace.testreports import ReportStore, reports_record

JUNIT = b'<testsuite><testcase classname="a" name="b"/><testcase name="c"><error/></testcase></testsuite>'


def record(build: str, **more) -> dict:
    return {"build": build, "repository": "example", "commit": "c" * 40, "tests": {}, **more}


def test_the_newest_records_of_each_repository_are_kept(tmp_path):
    store = ReportStore(tmp_path, keep=2)
    for index, build in enumerate(["b1", "b2", "b3"]):
        store.store(record(build))
        os.utime(tmp_path / "reports" / "example" / f"{build}.json", (1_000 + index, 1_000 + index))
    store.store(record("b4"))
    kept = sorted(path.name for path in (tmp_path / "reports" / "example").iterdir())
    assert kept == ["b3.json", "b4.json"]
    assert store.read(("other", "example"), "b4")["build"] == "b4"
    assert store.read(("example",), "b1") is None


def test_a_torn_or_foreign_file_reads_as_no_record(tmp_path):
    store = ReportStore(tmp_path, keep=5)
    directory = tmp_path / "reports" / "example"
    directory.mkdir(parents=True)
    (directory / "torn.json").write_text('{"build": "torn", "tes')
    (directory / "list.json").write_text("[1, 2]")
    assert store.read(("example",), "torn") is None and store.read(("example",), "list") is None


def test_copies_are_swept_and_each_pattern_has_its_directory(tmp_path):
    store = ReportStore(tmp_path, keep=5)
    copy = store.copy("b1", ("reports/*.xml", "out/t.xml"))
    assert [each.patterns for each in copy.each()] == [("reports/*.xml",), ("out/t.xml",)]
    assert all(each.dest.is_dir() for each in copy.each())
    store.sweep()
    assert not copy.dest.exists()


def test_the_record_reads_each_copied_file_and_names_what_it_could_not(tmp_path):
    store = ReportStore(tmp_path, keep=5)
    copy = store.copy("b1", ("reports/*.xml", "more/*.xml"))
    (copy.dest / "0" / "reports").mkdir()
    (copy.dest / "0" / "reports" / "unit.xml").write_bytes(JUNIT)
    found = {"reports/unit.xml": "sha256:1", "reports/gone.xml": "sha256:2"}
    made = reports_record(copy, found, "artifacts[0] 'more/*.xml' matched no file")
    assert made["tests"] == {"a::b": "passed", "c": "error"}
    assert made["digest"] == outcomes_digest(made["tests"])
    assert made["summary"] == {"passed": 1, "failed": 0, "error": 1, "skipped": 0}
    assert made["problems"] == ["reports.junit 'more/*.xml' matched no file",
                                "test report reports/gone.xml: not copied to this node"]


def test_a_report_over_the_bound_is_refused_by_its_size_without_being_read(tmp_path, monkeypatch):
    store = ReportStore(tmp_path, keep=5)
    copy = store.copy("b1", ("reports/*.xml",))
    (copy.dest / "0" / "reports").mkdir()
    (copy.dest / "0" / "reports" / "unit.xml").write_bytes(JUNIT)
    with open(copy.dest / "0" / "reports" / "huge.xml", "wb") as huge:
        huge.truncate(100_000_000)  # sparse: 100 MB as the build wrote it, no disk spent here
    read: list[str] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or real(self))

    made = reports_record(copy, {"reports/unit.xml": "sha256:1", "reports/huge.xml": "sha256:2"}, "")

    assert made["tests"] == {"a::b": "passed", "c": "error"}
    assert made["problems"] == [
        "test report reports/huge.xml: 100000000 bytes, over the 8388608-byte bound (MAX_REPORT_BYTES)"]
    assert read == ["unit.xml"]
