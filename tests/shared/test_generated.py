"""shared/generated.py: a generated file is written, or with --check a stale one is named."""

from shared.generated import write_or_check


def test_check_names_each_stale_or_missing_file_and_writes_nothing(tmp_path, capsys):
    fresh, stale, missing = tmp_path / "fresh.md", tmp_path / "stale.md", tmp_path / "docs" / "missing.json"
    fresh.write_text("a\n")
    stale.write_text("old\n")
    made = {fresh: "a\n", stale: "new\n", missing: "{}\n"}
    assert write_or_check(made, tmp_path, "scripts/x.py", "x", ["--check"]) == 1
    said = capsys.readouterr().err.splitlines()
    assert said == ["stale.md is out of date: run scripts/x.py", "docs/missing.json is out of date: run scripts/x.py"]
    assert stale.read_text() == "old\n" and not missing.exists()


def test_writing_makes_the_check_pass(tmp_path):
    made = {tmp_path / "page.md": "text\n", tmp_path / "docs" / "schema.json": "{}\n"}
    assert write_or_check(made, tmp_path, "scripts/x.py", "x", []) == 0
    assert (tmp_path / "docs" / "schema.json").read_text() == "{}\n"
    assert write_or_check(made, tmp_path, "scripts/x.py", "x", ["--check"]) == 0
