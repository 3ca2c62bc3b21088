"""What one agreed request asks a node to build: one frozen value, made once by the node's driver
from the ordered operation and the repository's settings of that moment, and fed to the executor.

Everything a build may depend on is in it or in the commit it names: a reload of the
configuration while the build waits for a slot or runs changes the next builds, never this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.plan.matrix import check_combination
from builder.plan.secrets import RepositorySecrets
from builder.plan.triggers import Trigger
from pbft.build import EVENTS, Operation
from shared.config import BuildConfig, RepositoryConfig
from shared.refs import check_branch_name, check_commit_sha, check_pull_ref, check_repository_name

# A leading dot is refused so that "." and ".." never name a workspace.
BUILD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class RepositorySettings:
    """What a build takes of its repository's configuration when it is ordered."""

    networked: bool = False  # build_network: true
    submodule_urls: frozenset[str] = frozenset()  # where its submodules may be fetched from
    secrets: RepositorySecrets | None = None  # the secrets its builds may get, as files
    vary: bool = False  # each node builds under its variation (builder/plan/variations.py)

    @classmethod
    def of(cls, repository: RepositoryConfig) -> RepositorySettings:
        return cls(
            networked=repository.build_network,
            submodule_urls=frozenset(repository.submodules),
            secrets=RepositorySecrets.of(repository) if repository.secrets else None,
            vary=repository.vary,
        )


@dataclass(frozen=True)
class BuildOrder:
    """One build: its id (the node's name for the request: its log, its workspace), the
    repository's name and URL (from the configuration, never from a request), and what the
    agreed operation names."""

    build_id: str
    repository_name: str
    repository_url: str
    branch: str
    commit: str | None = None
    pull_ref: str | None = None
    event: str = "push"
    before: str | None = None
    combination: tuple[tuple[str, str], ...] | None = None
    # A manual run's inputs, as the request names them (checked against the spec when it is read).
    inputs: tuple[tuple[str, str], ...] | None = None
    settings: RepositorySettings = RepositorySettings()
    # The network's build limits where the request executed (a change through the order moves
    # them); None: the executor's own (tests that make orders by hand).
    limits: BuildConfig | None = None
    # The hosts of the nodes and clients of that document, which a networked build must not
    # reach, on top of those the node started with (a member added through the order is one).
    peer_hosts: tuple[str, ...] = ()
    # Its sequence number: builds of one concurrency group run in that order (builder/queue.py GroupTurns).
    seq: int = 0

    @classmethod
    def of(
        cls, build_id: str, operation: Operation, repository: RepositoryConfig, limits: BuildConfig | None = None,
        peer_hosts: tuple[str, ...] = (), seq: int = 0,
    ) -> BuildOrder:
        return cls(
            build_id=build_id, repository_name=repository.name, repository_url=repository.url,
            branch=operation.branch, commit=operation.commit, pull_ref=operation.pull_ref,
            event=operation.trigger_event, before=operation.before, combination=operation.combination,
            inputs=operation.inputs, settings=RepositorySettings.of(repository), limits=limits, peer_hosts=peer_hosts,
            seq=seq,
        )

    @property
    def trigger(self) -> Trigger:
        return Trigger(self.event, self.branch, self.before, self.pull_ref)

    def problem(self) -> str | None:
        """Why this order cannot be built, checked before any git call (these names end up on git
        command lines and in file paths), or None. The build id is checked apart: without a valid
        one there is no log to say it in."""
        try:
            check_repository_name(self.repository_name)
            check_branch_name(self.branch)
            if self.commit is not None:
                check_commit_sha(self.commit)
            if self.pull_ref is not None:
                check_pull_ref(self.pull_ref)
            if self.event not in EVENTS:
                raise ValueError(f"unknown event {str(self.event)[:40]!r}")
            if self.before is not None:
                check_commit_sha(self.before)
            if self.combination is not None:
                check_combination(self.combination)
        except ValueError as exc:
            return f"invalid request: {exc}"
        return None


def valid_build_id(build_id: object) -> bool:
    return isinstance(build_id, str) and BUILD_ID.fullmatch(build_id) is not None
