"""The first stage of a build: fetch the order's commit through the repository's mirror, check it
out into a fresh workspace, and read what the plan decides from (builder/plan/buildplan.py's
CheckedOut) — the commit's time, message and author, the paths it changed, for a pull request
the spec of its base, and the commit's own spec or Dockerfile."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.order import BuildOrder
from builder.plan.buildplan import DOCKERFILE, CheckedOut, Sources
from builder.plan.civars import BuildFacts
from builder.plan.spec import SPEC_FILE
from builder.plan.specdocument import MAX_SPEC_BYTES, included_files
from builder.plan.triggers import BaseSpec, Skips
from builder.workspace import checkout
from builder.workspace.basespec import read_base_spec
from builder.workspace.gitmirror import (
    GitError,
    GitMirrors,
    changed_paths,
    commit_author,
    commit_message,
    commit_time,
    regular_file_at,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    """A commit checked out, and what the plan takes of it."""

    checkout: CheckedOut
    base_read: str  # what reading a pull request's base spec found, for the log ("" if nothing)
    reused: bool = False  # whether a kept checkout was brought to the commit (not made anew)


def fetch(mirrors: GitMirrors, order: BuildOrder, dest: Path, max_bytes: int, *, kept: bool = False) -> Fetched:
    """Check out the commit `order` means into `dest` (at most `max_bytes`); GitError if it
    cannot. With `kept`, `dest` holds a checkout an earlier build left (builder/workspace/kepttrees.py),
    brought to the commit by what differs; one that cannot be is made anew, as without."""
    trigger = order.trigger
    repo, resolved = mirrors.resolve(
        name=order.repository_name, url=order.repository_url, branch=order.branch, commit=order.commit,
        pull_ref=order.pull_ref,
    )
    try:
        # A tag's or a pull request's build is a detached HEAD, as a forge's checkout is.
        on_branch = order.branch if trigger.event != "tag" and not trigger.pull_request else None
        wanted = checkout.Checkout(
            name=order.repository_name, url=order.repository_url, commit=resolved, branch=on_branch,
            submodule_urls=order.settings.submodule_urls, max_bytes=max_bytes,
        )
        reused = _check_out(mirrors, wanted, dest, kept)
        sources = read_sources(dest)
        if sources.spec is not None:
            # Included files come from git's objects at the commit, never the checkout: a
            # link there is not followed, and nothing but a regular file is read.
            sources = dataclasses.replace(sources, included=included_files(
                sources.spec, lambda path: regular_file_at(repo, resolved, path, MAX_SPEC_BYTES)))
        committed_s = commit_time(repo, resolved)
        message = commit_message(repo, resolved)
        author, email = commit_author(repo, resolved)
        changed = None if trigger.before is None else changed_paths(repo, trigger.before, resolved)
        base: BaseSpec | None = None
        base_read = ""
        if trigger.pull_request:
            base, base_read = read_base_spec(repo, trigger, resolved)
    finally:
        repo.close()
    facts = BuildFacts(
        build_id=order.build_id, repository=order.repository_name, event=trigger.event, branch=order.branch,
        commit=resolved, message=message, author_name=author, author_email=email, pull_ref=order.pull_ref,
        before=trigger.before,
    )
    return Fetched(
        CheckedOut(facts, committed_s, Skips(trigger, message, changed, base), sources), base_read, reused,
    )


def _check_out(mirrors: GitMirrors, wanted: checkout.Checkout, dest: Path, kept: bool) -> bool:
    """Whether the kept checkout in `dest` was used."""
    if kept:
        try:
            checkout.workspace(mirrors, wanted, dest, kept=True)
            return True
        except GitError as exc:
            if exc.reason.startswith("sources do not fit"):
                raise  # the commit's own size, whichever way it is checked out
            log.warning("checking %s out anew: the kept checkout could not be brought to it: %s %s",
                        wanted.commit, exc.reason, exc.detail.strip()[-500:])
    shutil.rmtree(dest, ignore_errors=True)
    checkout.workspace(mirrors, wanted, dest)
    return False


def read_sources(workspace: Path) -> Sources:
    """The checkout's spec, or without one its Dockerfile, as the plan reads them."""
    spec = workspace / SPEC_FILE
    if spec.is_symlink():
        # Reading it would follow the link on the node's own file system.
        return Sources(spec_is_link=True)
    if spec.is_file():
        return Sources(spec=spec.read_bytes())
    dockerfile = workspace / DOCKERFILE
    if dockerfile.is_file():
        return Sources(dockerfile=_content(dockerfile))
    return Sources()


def _content(path: Path) -> bytes:
    """A file's bytes; a link's target, hashed as a link: following it would read this node's own files."""
    return str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
