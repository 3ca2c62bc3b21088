"""Validation of names that reach git from outside: branches, commits, pull request refs, repositories.

A branch name arrives in a webhook body and ends up on a git command line, so
it is checked here, before any git call, against the rules of
``git check-ref-format --branch``. The checks are stricter than git in three
places, on purpose: only printable ASCII is accepted (so a name means the same
bytes on every node), ``@`` alone is refused (git's ``--branch`` expands it to
HEAD), and names are limited to 255 bytes (a ref is also a file name).
"""

import re

from pbft.build import COMMIT_SHA, PULL_REF

MAX_BRANCH_BYTES = 255

# Every git command run against a configured repository (a node's mirror, the client's
# look at a branch's head) must never wait for a password on a terminal, nor hang for
# ever on a stalled HTTP transfer.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "60",
}

# Characters git forbids anywhere in a ref name besides control characters.
_FORBIDDEN_CHARS = frozenset(" ~^:?*[\\")
# Git accepts these, we do not: a branch name ends up in logs, commit-status
# descriptions and users' copy-and-paste, so `x;rm -rf ~` is refused at the
# door rather than trusted to be quoted everywhere downstream.
SHELL_METACHARACTERS = frozenset(";|&$`<>()'\"!")
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_branch_name(name: str) -> None:
    """Raise ValueError with the reason if `name` is not an acceptable branch name."""
    if not isinstance(name, str):
        raise ValueError("branch name must be a string")
    if not name:
        raise ValueError("branch name is empty")
    if len(name.encode("utf-8")) > MAX_BRANCH_BYTES:
        raise ValueError(f"branch name is longer than {MAX_BRANCH_BYTES} bytes")
    for char in name:
        if not " " <= char <= "~":
            raise ValueError("branch name contains a control or non-ASCII character")
        if char in _FORBIDDEN_CHARS:
            raise ValueError(f"branch name contains forbidden character {char!r}")
        if char in SHELL_METACHARACTERS:
            raise ValueError(f"branch name contains shell metacharacter {char!r}")
    if name.startswith("-"):
        raise ValueError("branch name starts with '-'")
    if name in ("@", "HEAD"):
        raise ValueError(f"branch name {name!r} is reserved")
    if ".." in name:
        raise ValueError("branch name contains '..'")
    if "@{" in name:
        raise ValueError("branch name contains '@{'")
    if name.endswith("/") or name.endswith("."):
        raise ValueError("branch name ends with '/' or '.'")
    for component in name.split("/"):
        if not component:
            raise ValueError("branch name has an empty component ('//' or leading '/')")
        if component.startswith("."):
            raise ValueError("branch name has a component starting with '.'")
        if component.endswith(".lock"):
            raise ValueError("branch name has a component ending with '.lock'")


def check_commit_sha(text: str) -> None:
    """Raise ValueError unless `text` is a full lowercase SHA-1 or SHA-256 object name."""
    if not isinstance(text, str) or not COMMIT_SHA.fullmatch(text):
        raise ValueError("commit must be 40 or 64 lowercase hex digits")


def check_pull_ref(ref: str) -> None:
    """Raise ValueError unless `ref` is a forge's ref of a pull or merge request's head."""
    if not isinstance(ref, str) or not PULL_REF.fullmatch(ref):
        raise ValueError("pull request ref must be refs/pull/<n>/head or refs/merge-requests/<n>/head")


def check_repository_name(name: str) -> None:
    """Raise ValueError unless `name` is safe as a single path component and image tag part."""
    if not isinstance(name, str) or not _REPOSITORY_NAME.fullmatch(name):
        raise ValueError(
            "repository name must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit"
        )
