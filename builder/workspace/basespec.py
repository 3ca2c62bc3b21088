"""A pull request's base branch's spec: what decides whether the pull request builds at all.

Whoever opens a pull request writes its head's commit message and its `.pbft-ci.yml`, so
neither may skip its build (builder/plan/triggers.py, `Skips`): a skipped build would stand
for a commit nothing built. The build-level `when:` that decides is the one of the
`.pbft-ci.yml` at the commit the agreed request names as the pull request's base
(`before`: the forge's merge base, or the target branch's head when it was opened or
updated), read from the node's mirror and parsed as any spec is.

It is read only where every honest node reads the same commit (gitmirror.agreed_base).
Where it cannot be, or that commit has no such spec, or it is a link, too large or does
not parse, there are no conditions and the pull request is not skipped: no node skips a
build on a spec its peers may not have read.

Blocking (git); the executor calls it in its worker thread.
"""

from __future__ import annotations

import git

from builder.workspace.gitmirror import GitError, agreed_base, regular_file_at
from builder.plan.spec import MAX_SPEC_BYTES, SPEC_FILE, parse_build_spec
from builder.plan.triggers import BaseSpec, Trigger


def read_base_spec(repo: git.Repo, trigger: Trigger, commit: str) -> tuple[BaseSpec | None, str]:
    """The base spec of the pull request `trigger` whose head is `commit` (None: it is not
    skipped), and a line for the build log saying what was read."""
    base = trigger.before
    if base is None:
        return None, "the request names no base commit: the pull request is not skipped"
    where = f"the base branch's {SPEC_FILE} at {base[:12]}"
    try:
        if not agreed_base(repo, base, commit, trigger.branch):
            return None, (
                f"base commit {base[:12]} is neither an ancestor of the pull request's head nor on "
                f"{trigger.branch}: the pull request is not skipped"
            )
        text = regular_file_at(repo, base, SPEC_FILE, MAX_SPEC_BYTES)
    except GitError as exc:
        return None, f"{where} could not be read ({exc.reason}): the pull request is not skipped"
    if text is None:
        return None, (
            f"{where} is missing, not a regular file or larger than {MAX_SPEC_BYTES} bytes: "
            "the pull request is not skipped"
        )
    try:
        conditions = parse_build_spec(text, read=lambda path: regular_file_at(repo, base, path, MAX_SPEC_BYTES)).when
    except (ValueError, GitError):  # refused, or a file it includes could not be read
        return None, f"{where} does not parse: the pull request is not skipped"
    if not conditions:
        return None, f"{where} has no when: the pull request is not skipped"
    return BaseSpec(base, conditions), f"{where} decides whether the pull request builds (its when:)"
