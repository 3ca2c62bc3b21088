"""Where a node keeps each build's test outcomes, read from the JUnit reports the build
wrote (`reports: {junit: [...]}`, builder/plan/reportspec.py; parsed by
builder/reports/junit.py).

Layout under the node's data directory:

    reports/<repository>/<build id>.json       the build's test record
    reports/.incoming-<build id>/              its report files being copied; swept at start

The record is `{"build", "repository", "commit", "files", "tests": {id: outcome},
"summary": {outcome: count}, "digest", "problems"}`: `files` the report files read
(path -> sha256 of the bytes), `digest` over the canonical outcomes (the same on every
node that read the same outcomes), `problems` the reasons a report was not taken, one
line each. The records of the newest `keep` builds of each repository are kept.

A build's reports never change its verdict: a report missing, too large or refused is
a problem in its record and a line in its log, nothing more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.reports.junit import (MAX_REPORT_BYTES, MAX_REPORTS, ReportError, check_size, merge, outcomes_digest,
                                   parse_junit)
from builder.reports.junit import summary as outcome_summary
from builder.workspace.artifacts import ArtifactCopy
from builder.workspace.caches import newest_first

_INCOMING = ".incoming-"
# The copy's reasons name its patterns as artifacts' (builder/workspace/artifacts.py): here, reports'.
_AS_REPORTS = re.compile(r"^artifacts(\[\d+\])?")
_SUFFIX = ".json"


@dataclass(frozen=True)
class ReportCopy:
    """A build's report patterns, each copied into a directory of its own under `dest`
    (its index), so that one that matched nothing costs the others nothing."""

    patterns: tuple[str, ...]
    dest: Path

    def each(self) -> list[ArtifactCopy]:
        return [ArtifactCopy((pattern,), self.dest / str(index), max_bytes=MAX_REPORTS * MAX_REPORT_BYTES,
                             max_files=MAX_REPORTS) for index, pattern in enumerate(self.patterns)]

    def file(self, path: str) -> Path | None:
        """Where the engine copied the report at `path` (any pattern's copy will do: the same bytes)."""
        places = (self.dest / str(index) / path for index in range(len(self.patterns)))
        return next((place for place in places if place.is_file()), None)


class ReportStore:
    def __init__(self, data_dir: Path, *, keep: int):
        self._root = Path(data_dir) / "reports"
        self._keep = keep

    def copy(self, build_id: str, patterns: tuple[str, ...]) -> ReportCopy:
        """Where the build's report files are copied to: fresh, empty directories."""
        directory = self._root / f"{_INCOMING}{build_id}"
        shutil.rmtree(directory, ignore_errors=True)
        for index in range(len(patterns)):
            (directory / str(index)).mkdir(parents=True)
        return ReportCopy(patterns, directory)

    def discard(self, copy: ReportCopy) -> None:
        shutil.rmtree(copy.dest, ignore_errors=True)

    def sweep(self) -> None:
        """Delete what builds of a killed earlier process were copying."""
        if self._root.is_dir():
            for leftover in self._root.glob(f"{_INCOMING}*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def store(self, record: dict) -> None:
        """Keep `record` (see the module's docstring) as its build's, replacing an earlier run's."""
        directory = self._root / record["repository"]
        directory.mkdir(parents=True, exist_ok=True)
        staged = directory / f".{record['build']}{_SUFFIX}.tmp"
        staged.write_text(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        os.replace(staged, directory / f"{record['build']}{_SUFFIX}")
        for old in newest_first(directory, lambda name: name.endswith(_SUFFIX) and not name.startswith("."))[self._keep:]:
            old.unlink(missing_ok=True)

    def read(self, repositories: tuple[str, ...], build_id: str) -> dict | None:
        """The test record of `build_id`, looked for under each repository, or None."""
        for repository in repositories:
            try:
                record = json.loads((self._root / repository / f"{build_id}{_SUFFIX}").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and isinstance(record.get("tests"), dict):
                return record
        return None


def reports_record(copy: ReportCopy, found: dict[str, str] | None, problem: str) -> dict:
    """The outcomes of the report files the engine copied (`found`: path -> digest, None when
    it could not copy them), and the problems: the engine's (`problem`) and the parser's."""
    problems = [_AS_REPORTS.sub("reports.junit", each) for each in problem.split("; ")] if problem else []
    parsed = []
    for path in sorted(found or {}):
        file = copy.file(path)
        try:
            if file is None:
                raise ReportError(path, "not copied to this node")
            check_size(path, file.stat().st_size)  # a hostile build's 100 MB report is never read into memory
            parsed.append((path, parse_junit(path, file.read_bytes())))
        except ReportError as exc:
            problems.append(str(exc))
    try:
        tests = merge(parsed)
    except ReportError as exc:
        tests, problems = {}, problems + [str(exc)]
    return {
        "files": dict(sorted((found or {}).items())), "tests": tests, "summary": outcome_summary(tests),
        "digest": outcomes_digest(tests), "problems": problems,
    }
