"""A spec's `reports:`: the test reports a build writes, which each node reads after the
build whatever its end (builder/reports/junit.py), and keeps beside its verdict.

    reports:
      junit: [reports/*.xml]        # paths or globs of /workspace, as artifacts' are

The patterns follow `artifacts:` (builder/plan/artifactpatterns.py). A report the
build did not write is noted in its log; a report refused (too large, not JUnit, a
DOCTYPE) is noted with the reason. Neither changes the verdict: the nodes agree on
the build's exit, and its reports are evidence beside it.
"""

from __future__ import annotations

from builder.plan.artifactpatterns import pattern_list
from shared.schema import Section, section, setting

MAX_REPORT_PATTERNS = 16


JUNIT = pattern_list("junit", MAX_REPORT_PATTERNS)


@section
class ReportsSpec:
    """The test reports a build writes in /workspace."""

    junit: tuple[str, ...] = setting(
        JUNIT, doc="JUnit XML files the build writes, paths or globs relative to /workspace, read whatever its end")


# The spec's `reports:` (builder/plan/spec.py reads it through builder/plan/specvalues.py).
REPORTS = Section(ReportsSpec, refusal="must be a mapping with a 'junit' list")
