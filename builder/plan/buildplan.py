"""One build as it will run: the `BuildPlan` builder/plan/compilebuild.py makes of a build order,
what its checkout holds (`CheckedOut`) and the network's limits, which builder/run.py carries out
on the engine and the workspace without deciding anything of its own.

A plan says which containers run, with which images, scripts and variables, which of the
build's secrets each gets (by name), under which limits, with which caches and artifacts, and
the settings lines the build's log opens with; or why nothing runs (`Skipped`, `Refused`,
`Expanded`: builder/plan/compile.py).

What only the run can learn stays named, not resolved: the engine's id of each image, the build
network's name (the settings say it once it is known), the secrets' values (builder/plan/secrets.py
reads them as the build starts), and the caches this node holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.plan.civars import BuildFacts
from builder.plan.compile import Expanded, Refused, Skipped, SpecPlan
from builder.plan.concurrencyspec import ConcurrencySpec
from builder.plan.secrets import BuildSecrets
from builder.plan.settings import spec_settings
from builder.plan.spec import CacheSpec
from builder.plan.stepgraph import StepGraph
from builder.plan.triggers import Skips
from pbft.build import Spec
from shared.config import BuildConfig

__all__ = [
    "DOCKERFILE", "BuildPlan", "CheckedOut", "DockerfileBuild", "Expanded", "PipelineBuild", "Refused", "ScriptBuild",
    "ServicePlan", "Skipped", "Sources", "SpecBuild", "StepPlan", "without",
]

DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class Sources:
    """What the plan reads of the checked-out tree: its spec's bytes, or that the spec is a
    link (never followed: it would read the node's own files); without a spec, its
    Dockerfile's bytes (a link's target, as a link)."""

    spec: bytes | None = None
    spec_is_link: bool = False
    dockerfile: bytes | None = None
    # The files the spec includes, by path, read from git at the commit (builder/plan/specdocument.py).
    included: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class CheckedOut:
    """What the plan takes of a checkout (builder/workspace/fetch.py)."""

    facts: BuildFacts  # what its CI_ variables are made of
    committed_s: int  # its commit time: SOURCE_DATE_EPOCH
    skips: Skips  # whether it, or a step of it, runs
    sources: Sources


@dataclass(frozen=True)
class StepPlan:
    """A pipeline step as it will run, but for its image's id and its secrets' values."""

    name: str
    image: str  # as the spec names it (the spec's image when the step names none)
    script: str  # its commands, one `sh -e` script
    # Exported before its script: the build's variables, its own and CI_STEP_NAME, but those
    # its secrets set (the gate sets them, builder/engine/gate.py).
    environment: dict[str, str]
    secrets: tuple[str, ...]  # the build's secrets it gets, by name
    status: tuple[str, ...]  # the build statuses so far it runs after
    ignore_failure: bool
    retry: int
    skip_reason: str | None  # its `when:` excludes it: it never runs
    timeout_s: float | None = None  # each attempt's own time; None: the build's deadline alone


@dataclass(frozen=True)
class ServicePlan:
    """A service as it will run, but for its image's id and its secrets' values."""

    name: str
    image: str
    script: str | None  # None: the image's own command
    environment: dict[str, str]  # the build's variables and its own; its secrets' values go on top
    secrets: tuple[str, ...]
    ready_command: str | None
    ready_timeout_s: float


@dataclass(frozen=True)
class SpecBuild:
    """What every `.pbft-ci.yml` build runs with, one script or a pipeline."""

    spec: SpecPlan  # what the nodes agree it ran, its image, user and deadline
    network_limits: BuildConfig  # the network's limits, as its log's settings name them
    limits: BuildConfig  # each container's: the network's, or a pipeline's share of them
    environment: dict[str, str]  # the build's variables, the spec's included; secrets override them
    secrets: BuildSecrets
    networked: bool  # it joins the build network (the repository's `build_network`)
    cache: CacheSpec | None  # the caches it restores and saves; None without, or when the network keeps none
    artifacts: tuple[str, ...]  # the patterns of the files it keeps after it succeeds
    artifacts_max_bytes: int
    reports: tuple[str, ...]  # the patterns of its JUnit reports, read whatever its end
    budget: str  # each container's memory limit, as a note on an out-of-memory kill says it

    @property
    def ran(self) -> Spec:
        return self.spec.ran

    @property
    def image(self) -> str:
        return self.spec.image

    @property
    def user(self) -> str:
        return self.spec.user

    @property
    def timeout_s(self) -> float:
        return self.spec.timeout_s

    def settings(self, network: str | None) -> list[str]:
        """The settings lines its log opens with, given the build network's name (None: none)."""
        return spec_settings(self.spec, self.network_limits, network, self.environment, self.secrets)


@dataclass(frozen=True)
class ScriptBuild(SpecBuild):
    """A one-script spec: one container, which may be one prepared before the build came."""

    script: str

    @property
    def container_environment(self) -> dict[str, str]:
        """What its script exports: the build's variables but those its secrets set (the gate does)."""
        return without(self.environment, self.secrets.names)


@dataclass(frozen=True)
class PipelineBuild(SpecBuild):
    """A `steps:` build, or a one-script one with services (its script is one step, `build`)."""

    steps: tuple[StepPlan, ...]  # in the run order
    graph: StepGraph
    services: tuple[ServicePlan, ...]


@dataclass(frozen=True)
class DockerfileBuild:
    """A commit with a Dockerfile and no spec: its image built offline, then run with its CMD."""

    ran: Spec
    tag: str
    timeout_s: float
    limits: BuildConfig
    environment: dict[str, str]  # its secrets' values go on top
    secrets: BuildSecrets
    budget: str
    settings: tuple[str, ...]


@dataclass(frozen=True)
class BuildPlan:
    """One build: the facts of the request and the commit, and what runs, or why nothing does."""

    facts: BuildFacts
    build: ScriptBuild | PipelineBuild | DockerfileBuild | Skipped | Refused | Expanded
    # Its containers' host name and build path when the build is varied (builder/plan/variations.py);
    # None: those every node's builds share, which let it run in a container started ahead.
    hostname: str | None = None
    build_path: str | None = None

    @property
    def commit(self) -> str:
        return self.facts.commit

    @property
    def concurrency(self) -> ConcurrencySpec | None:
        """The spec's concurrency group (builder/plan/concurrencyspec.py): builds of it run one at a time here."""
        return self.build.spec.spec.concurrency if isinstance(self.build, SpecBuild) else None


def without(environment: dict[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    """`environment` but the variables `secrets` set: a script exports its environment after the
    gate has set the secrets (builder/engine/gate.py), and must not replace one."""
    return {name: value for name, value in environment.items() if name not in secrets}
