"""A manual run's inputs, checked by the client against the spec at the pinned commit before
anything is ordered: a value the spec does not take is a 400 with the nodes' own reason, not an
`error` verdict after the network ordered and fetched it.

The client reads the spec as a node does (builder/plan and builder/workspace/gitmirror: the
same parsing, the same reading of a file at a commit, the same included files, the same check
of the values), from a bare, shallow clone of the configured URL
(never one from a request) made for the one check and removed after it: `--filter=blob:none`
asks only for the commit's trees, and the spec and what it includes come as they are read
(a local repository, whose upload-pack ignores the filter, gives the commit's blobs too).
Nothing is built, checked out or run: a bare clone runs no hook.

The check only refuses early; it never lets through what the nodes would refuse, and every
node checks the agreed request again at the commit. Where the client cannot tell (the
repository does not answer in time, the branch moved on from the pinned commit, the spec
cannot be read), it leaves the decision to the nodes and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

import git

from builder.plan.inputs import input_variables
from builder.plan.spec import MAX_SPEC_BYTES, SPEC_FILE, parse_build_spec
from builder.plan.specdocument import included_files
from builder.workspace.gitmirror import ISOLATED_ENV, GitError, regular_file_at
from pbft.build import Operation
from shared.config import RepositoryConfig

log = logging.getLogger(__name__)

CLONE_TIMEOUT_S = 30.0


async def refused_inputs(repository: RepositoryConfig, operation: Operation, scratch: Path) -> str | None:
    """Why the spec at `operation`'s pinned commit would refuse its inputs (the nodes' reason),
    or None: they hold, or the client cannot tell. `scratch`: where the one-off clone goes."""
    if not operation.inputs or operation.commit is None:
        return None
    return await asyncio.to_thread(_refused, repository, operation, scratch)


def _refused(repository: RepositoryConfig, operation: Operation, scratch: Path) -> str | None:
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inputs-", dir=scratch) as folder:
        try:
            repo = _clone(repository.url, operation.branch, Path(folder) / "repo.git")
            if repo.head.commit.hexsha != operation.commit:
                log.info("inputs of %s %s left to the nodes: the branch moved on from %s", repository.name,
                         operation.branch, operation.commit[:12])
                return None
            if not _exists(repo, operation.commit, SPEC_FILE):
                return f"the run gives inputs; the commit has no {SPEC_FILE} to declare them"
            text = regular_file_at(repo, operation.commit, SPEC_FILE, MAX_SPEC_BYTES)
            if text is None:
                return None  # a link, or too large: the nodes refuse the spec with their reason
            included = dict(included_files(text, lambda path: regular_file_at(repo, operation.commit, path, MAX_SPEC_BYTES)))
        except (git.GitCommandError, GitError, ValueError, OSError) as error:
            log.warning("inputs of %s %s left to the nodes: could not read its spec (%s)", repository.name,
                        operation.branch, str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
            return None
    try:
        spec = parse_build_spec(text, None, included.get)
    except ValueError:
        return None  # the nodes refuse the spec itself, with its own reason
    try:
        input_variables(spec.inputs, operation.inputs)
    except ValueError as reason:
        return f"{SPEC_FILE}: {reason}"
    return None


def _clone(url: str, branch: str, path: Path) -> git.Repo:
    git.Git().execute(
        ["git", "clone", "--quiet", "--bare", "--depth=1", "--filter=blob:none", "--single-branch", "--no-tags",
         "--template=", f"--branch={branch}", "--", url, str(path)],
        env={**os.environ, **ISOLATED_ENV}, kill_after_timeout=CLONE_TIMEOUT_S,
    )
    return git.Repo(path)


def _exists(repo: git.Repo, commit: str, path: str) -> bool:
    try:
        repo.commit(commit).tree / path
    except KeyError:
        return False
    return True

