"""The CI variables every build gets: what the agreed request and the built commit say,
under the names Woodpecker gives them (docs/pipelines.md has the table).

Derived only from the ordered operation, the build's id (the request's, the same on
every node) and the commit every node resolved alike, so a build that prints them prints
the same on every honest node. Nothing here comes from a node's own configuration,
clock or disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.plan.containerpaths import WORKSPACE_DIR
from pbft.build import pull_request_number


@dataclass(frozen=True)
class BuildFacts:
    """What the variables are made of."""

    build_id: str
    repository: str
    event: str  # pbft.build.EVENTS
    branch: str  # the pushed branch, the tag of a tag push, a pull request's target
    commit: str
    message: str
    author_name: str
    author_email: str
    pull_ref: str | None = None
    before: str | None = None


def ci_variables(facts: BuildFacts) -> dict[str, str]:
    variables = {
        "CI": "true",
        "CI_SYSTEM_NAME": "pbft-ci",
        "CI_BUILD_ID": facts.build_id,
        "CI_PIPELINE_EVENT": facts.event,
        "CI_REPO": facts.repository,
        "CI_REPO_NAME": facts.repository,
        "CI_WORKSPACE": WORKSPACE_DIR,
        "CI_COMMIT_SHA": facts.commit,
        "CI_COMMIT_MESSAGE": facts.message,
        "CI_COMMIT_AUTHOR": facts.author_name,
        "CI_COMMIT_AUTHOR_EMAIL": facts.author_email,
    }
    if facts.event == "tag":
        variables["CI_COMMIT_TAG"] = facts.branch
        variables["CI_COMMIT_REF"] = f"refs/tags/{facts.branch}"
    elif facts.pull_ref is not None:
        variables["CI_COMMIT_PULL_REQUEST"] = str(pull_request_number(facts.pull_ref))
        variables["CI_COMMIT_TARGET_BRANCH"] = facts.branch
        variables["CI_COMMIT_REF"] = facts.pull_ref
    else:
        variables["CI_COMMIT_BRANCH"] = facts.branch
        variables["CI_COMMIT_REF"] = f"refs/heads/{facts.branch}"
    if facts.before is not None:
        variables["CI_PREV_COMMIT_SHA"] = facts.before
    return variables


BUILD_TZ = "UTC"
BUILD_LOCALE = "C.UTF-8"


def reproducible_environment(commit_time_s: int) -> dict[str, str]:
    """What https://reproducible-builds.org asks for: the commit's time instead of the
    clock's (SOURCE_DATE_EPOCH), and a time zone and locale that no node chooses."""
    return {
        "SOURCE_DATE_EPOCH": str(max(commit_time_s, 0)),
        "TZ": BUILD_TZ,
        "LC_ALL": BUILD_LOCALE,
        "LANG": BUILD_LOCALE,
    }
