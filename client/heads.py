"""The commit a branch names, fixed by the client before it signs a request.

A request that names only a branch (a plain call, a schedule, a re-run of a
build that has no commit) would leave the commit to each node's own fetch,
and with build slots those can be minutes apart: a push in between gives
honest nodes two commits and a `disputed` verdict. So the client asks the
repository for the branch's head (`git ls-remote`, at the configured URL,
never one from a request) and pins it, as a forge's push is pinned by its
payload. Every node checks that a pinned commit is on the branch
(builder/workspace/gitmirror.py), so a faulty client can choose only among the
branch's own commits, as it always could by pinning one.

What cannot be pinned goes as it is, and the log says so: a branch the
repository does not have (every node answers `branch not found`, unless the
branch appears between two nodes' fetches), or a repository the client
cannot reach (each node's fetch decides, as before pinning existed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Awaitable, Callable, Sequence

import git

from pbft.build import COMMIT_SHA, Operation
from shared.config import RepositoryConfig
from shared.refs import GIT_ENV, check_branch_name

log = logging.getLogger(__name__)

LS_REMOTE_TIMEOUT_S = 30.0
# Enough for the one line of one branch; more means the answer is not what was asked for.
MAX_ANSWER_CHARS = 64 * 1024


class HeadUnknown(Exception):
    """The repository did not answer, or answered something other than refs."""


class BranchHeads:
    """Pins a request's branch head, with the repositories of the configuration in force."""

    def __init__(
        self,
        repositories: Callable[[], Sequence[RepositoryConfig]],
        head: Callable[[str, str], Awaitable[str | None]] | None = None,
    ) -> None:
        self._repositories = repositories
        self._head = head or branch_head

    async def pin(self, operation: Operation) -> Operation:
        """`operation` with the commit its branch names now, if it names none and builds a
        branch (not a pull request's ref, not a cancel or an approval, not a network change); else
        as it is."""
        if (operation.commit is not None or operation.pull_ref is not None or operation.cancels is not None
                or operation.approves is not None or operation.change is not None):
            return operation
        repository = next((repo for repo in self._repositories() if repo.name == operation.repository), None)
        if repository is None:
            return operation
        try:
            head = await self._head(repository.url, operation.branch)
        except HeadUnknown as error:
            log.warning("could not pin the head of branch %r of %s (%s): each node's fetch decides its commit",
                        operation.branch, operation.repository, error)
            return operation
        if head is None:
            log.info("branch %r of %s not found at its repository: sent unpinned", operation.branch,
                     operation.repository)
            return operation
        return dataclasses.replace(operation, commit=head)


async def branch_head(url: str, branch: str, *, timeout_s: float = LS_REMOTE_TIMEOUT_S) -> str | None:
    """The commit `refs/heads/<branch>` names at `url` now, or None if there is no such branch.
    Raises HeadUnknown when the repository cannot say."""
    check_branch_name(branch)
    return await asyncio.to_thread(_ls_remote, url, branch, timeout_s)


def _ls_remote(url: str, branch: str, timeout_s: float) -> str | None:
    ref = f"refs/heads/{branch}"
    try:
        answer = git.Git().execute(
            ["git", "ls-remote", "--heads", "--", url, ref],
            env={**os.environ, **GIT_ENV}, kill_after_timeout=timeout_s,
        )
    except git.GitCommandError as error:
        raise HeadUnknown(_first_line(error.stderr) or f"git ls-remote exited {error.status}") from None
    if len(answer) > MAX_ANSWER_CHARS:
        raise HeadUnknown("git ls-remote answered more than one branch's line")
    for line in answer.splitlines():
        commit, _, name = line.partition("\t")
        # ls-remote matches a pattern against the tail of ref names: only the exact ref counts.
        if name == ref:
            if not COMMIT_SHA.fullmatch(commit):
                raise HeadUnknown(f"git ls-remote named no commit for {ref}")
            return commit
    return None


def _first_line(stderr: str | bytes | None) -> str:
    """git's first line of complaint, without GitPython's `stderr: '` around it."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line.strip().removeprefix("stderr: '").rstrip("'") for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
