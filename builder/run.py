"""One build's plan carried out: its containers run on the engine as its plan
(builder/plan/buildplan.py) says, its caches and artifacts kept, its outcome turned into the
result nodes sign. Nothing is decided here that the plan does not say; what only a run can learn
(the images' ids, the build network's name, the secrets' values, the caches this node holds)
is learnt here, in the order the build needs it.

Every failure the build's own content causes ends as a result whose reason is the same text on
every honest node; what differs between nodes (paths, daemon messages) goes to its log only.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from builder.engine import Engine
from builder.engine.container import ContainerJob
from builder.engine.gate import exported
from builder.engine.host import ENGINE_BACK_S
from builder.engine.sandbox import ENGINE_LOST, ContainerOutcome, Hooks, RunAs, SandboxError, Script
from builder.engine.services import PlannedService
from builder.engine.steps import PlannedStep, StepsJob
from builder.order import BuildOrder
from builder.plan.buildplan import (
    BuildPlan,
    DockerfileBuild,
    Expanded,
    PipelineBuild,
    Refused,
    ScriptBuild,
    Skipped,
    SpecBuild,
)
from builder.plan.secrets import BuildSecrets, SecretUnreadable, read_secrets
from builder.result import BuildResult
from builder.workspace.artifacts import ArtifactCopy
from builder.workspace.artifactstore import ArtifactStore
from builder.workspace.testreports import ReportCopy, ReportStore, reports_record
from builder.workspace.cacherun import prepare_cache, release_cache, save_cache
from builder.workspace.caches import CacheStore
from builder.workspace.log import BuildLog
from shared.config import BuildConfig
from pbft.attestation import manifest_digest
from pbft.build import Spec, combination_label

log = logging.getLogger(__name__)

KILLED_OUTSIDE = "build container killed outside the build (not by its timeout or memory limit)"
NODE_STOPPING = "the node stopped during the build"


class BuildError(Exception):
    """Ends a build early with an `error` result; `detail` goes to the log only."""

    def __init__(self, reason: str, detail: str = "", commit: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.commit = commit


class Cancelled(Exception):
    """Ends a build whose cancel was ordered: its result is `cancelled`, whatever it had done."""


@dataclass(frozen=True)
class NodeParts:
    """What every build of a node runs on: its engine and its stores."""

    node_id: int
    engine: Engine
    caches: CacheStore
    artifacts: ArtifactStore
    reports: ReportStore


@dataclass(frozen=True)
class Watch:
    """How a running build learns of its cancel, and tells where it runs so a cancel can kill it."""

    cancelled: Callable[[], bool]
    on_container: Callable[[Any], None]

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled()


class BuildRun:
    """Build `order`, checked out in `workspace`, on `node`, writing `output`."""

    def __init__(self, node: NodeParts, order: BuildOrder, output: BuildLog, workspace: Path, watch: Watch):
        self.node = node
        self.order = order
        self.output = output
        self.workspace = workspace
        self.watch = watch
        self.images: list = []  # the registry digests of the images it ran
        self.labels = {"pbft-ci.build": order.build_id, **node.engine.labels()}
        self.commit = ""  # the commit it builds, once its plan is run
        # Its containers' host name, the plan's: the node's own with `vary: true`, and then no
        # container started ahead (those have the common one, None).
        self.hostname: str | None = None
        self.build_path: str | None = None

    def run(self, plan: BuildPlan) -> tuple[BuildResult, int | None]:
        """The result of running `plan`, and how long the build's own commands ran (ContainerOutcome.commands_ms)."""
        commit = self.commit = plan.commit
        self.hostname, self.build_path = plan.hostname, plan.build_path
        try:
            result, commands_ms = self._run(plan)
        except SandboxError as exc:
            raise BuildError(exc.reason, exc.detail, commit) from None
        if self.images and result.spec is not None:
            result = dataclasses.replace(result, images=tuple(sorted(set(self.images), key=lambda image: image.name)))
        return result, commands_ms

    def _run(self, plan: BuildPlan) -> tuple[BuildResult, int | None]:
        build = plan.build
        if isinstance(build, Refused):
            raise BuildError(build.reason, commit=self.commit)
        if isinstance(build, Skipped):
            return self._skipped(build), None
        if isinstance(build, Expanded):
            return self._matrix(build), None
        if isinstance(build, DockerfileBuild):
            return self._dockerfile(build)
        network = self.node.engine.network_name(self.order.peer_hosts) if build.networked else None
        secrets = self._secrets(build.secrets)
        self.output.settings(build.settings(network))
        if isinstance(build, PipelineBuild):
            return self._pipeline(plan, build, secrets, network)
        return self._script(plan, build, secrets, network)

    def _script(
        self, plan: BuildPlan, build: ScriptBuild, secrets: dict[str, str], network: str | None,
    ) -> tuple[BuildResult, int | None]:
        """A one-script spec: one container, with the spec's caches and artifacts."""
        node = self.node
        image_id = node.engine.image(build.image, self.images, build.limits)
        script, arguments, cache_run, ready, on_started = build.script, (), None, None, None
        if build.cache is not None:
            cache_run = prepare_cache(node.caches, plan.facts, image_id, build.cache, self.workspace, self.output)
            script, arguments = cache_run.script, ("pbft-ci-cache", build.script)
        elif network is None and self.hostname is None:
            ready = node.engine.take_ready(image_id, build.user, build.limits)
            self._say_ready(ready, image_id, build.user)
            on_started = functools.partial(node.engine.prepare_ready, image_id, build.user, build.limits)
        artifacts = self._artifact_copy(build)
        reports = node.reports.copy(self.order.build_id, build.reports) if build.reports else None
        try:
            job = ContainerJob(
                image_id, Script(script, self.workspace, arguments, secrets), build.timeout_s,
                environment=build.container_environment, cache=cache_run.mounts if cache_run else None,
                network=network, artifacts=artifacts, reports=reports,
            )
            run = functools.partial(node.engine.run, job, self._as(build.limits, build.user))
            outcome = self._unless_host_fault(run, self._hooks(on_started), ready)
            if cache_run is not None:
                save_cache(node.caches, self.order.repository_name, cache_run, outcome, self.output)
            kept = self._take_artifacts(artifacts, outcome)
            tests = self._keep_reports(reports, outcome)
        finally:
            if artifacts is not None:
                # Moved into the store by now if they are kept.
                node.artifacts.discard(artifacts.dest)
            if reports is not None:
                node.reports.discard(reports)
            if cache_run is not None:
                release_cache(node.caches, self.order.build_id, cache_run)
        return self._result(outcome, build.ran, build.timeout_s, build.budget, kept, tests), outcome.commands_ms

    def _pipeline(
        self, plan: BuildPlan, build: PipelineBuild, secrets: dict[str, str], network: str | None,
    ) -> tuple[BuildResult, int | None]:
        """A `steps:` build, or one with services (builder/engine/steps.py): its result names each step's
        outcome, and the step that failed it."""
        node = self.node
        services = tuple(
            PlannedService(
                name=service.name, image=service.image,
                image_id=node.engine.image(service.image, self.images, build.limits),
                script=service.script, environment={**service.environment, **_picked(secrets, service.secrets)},
                ready_command=service.ready_command, ready_timeout_s=service.ready_timeout_s,
            )
            for service in build.services
        )
        steps = tuple(
            PlannedStep(
                name=step.name, image=step.image,
                image_id=node.engine.image(step.image, self.images, build.limits),
                script=exported(step.environment, step.script), status=step.status,
                ignore_failure=step.ignore_failure, retry=step.retry, skip_reason=step.skip_reason,
                timeout_s=step.timeout_s, secrets=_picked(secrets, step.secrets),
            )
            for step in build.steps
        )
        artifacts = self._artifact_copy(build)
        reports = node.reports.copy(self.order.build_id, build.reports) if build.reports else None
        cache_run = None
        if build.cache is not None:
            # The key covers every image a step runs, as a one-script build's covers its one.
            images = ",".join(sorted({step.image_id for step in steps}))
            cache_run = prepare_cache(node.caches, plan.facts, images, build.cache, self.workspace, self.output)
        try:
            job = StepsJob(steps, self.workspace, build.timeout_s, graph=build.graph, network=network,
                           artifacts=artifacts, reports=reports, services=services, cache=cache_run)
            who = self._as(build.limits, build.user)
            # A pipeline's containers are never prepared ahead: `ready` is always None for it.
            outcome = self._unless_host_fault(
                lambda hooks, _ready: node.engine.run_steps(job, who, hooks), self._hooks()
            )
            if cache_run is not None:
                save_cache(node.caches, self.order.repository_name, cache_run, outcome, self.output)
            kept = self._take_artifacts(artifacts, outcome)
            tests = self._keep_reports(reports, outcome)
        finally:
            if artifacts is not None:
                node.artifacts.discard(artifacts.dest)
            if reports is not None:
                node.reports.discard(reports)
            if cache_run is not None:
                release_cache(node.caches, self.order.build_id, cache_run)
        result = self._result(outcome, build.ran, build.timeout_s, build.budget, kept, tests)
        if outcome.step_timeout_s is not None:
            # A step's own time ended it, not the build's: the build failed, naming the step.
            result = dataclasses.replace(
                result, status="failure",
                reason=f"step {outcome.failed_step!r} exceeded its timeout_s of {outcome.step_timeout_s:g} s")
        elif result.status == "timeout":
            result = dataclasses.replace(
                result, reason=f"build exceeded {build.timeout_s:g} s (in step {outcome.failed_step!r})")
        elif result.status == "failure":
            result = dataclasses.replace(
                result, reason=f"step {outcome.failed_step!r} failed with exit code {outcome.exit_code}")
        return dataclasses.replace(result, steps=outcome.steps), outcome.commands_ms

    def _dockerfile(self, build: DockerfileBuild) -> tuple[BuildResult, int | None]:
        """A repository with a Dockerfile and no spec: its image built, then run as a spec build is."""
        engine = self.node.engine
        secrets = self._secrets(build.secrets)
        self.output.settings(list(build.settings))
        # The context is the commit's tree alone: .git differs between checkouts (its
        # index records file times), and would make every `COPY .` miss the layer cache.
        # It is moved aside, not deleted, so the node can keep the checkout for its next build.
        aside = self.workspace.with_name(f"{self.workspace.name}.git")
        os.rename(self.workspace / ".git", aside)
        try:
            build_output, image_id, command = engine.build_image(
                self.workspace, build.tag, build.limits, build.timeout_s, self.commit)
        finally:
            os.rename(aside, self.workspace / ".git")
        self.output.write(build_output.encode(errors="replace"))
        user, ready, on_started = build.limits.user, None, None
        if command and self.hostname is None:
            # The next build of this very image (the same tree: a rerun, a schedule, a branch
            # and its pull request) finds its container started, once the node has built the
            # image twice. An image with no command fails as docker run fails, in a container
            # of its own.
            ready = engine.take_ready(image_id, user, build.limits, command)
            self._say_ready(ready, image_id, user)
            on_started = functools.partial(engine.prepare_ready, image_id, user, build.limits, command)
        job = ContainerJob(image_id, None, build.timeout_s, environment={**build.environment, **secrets})
        run = functools.partial(engine.run, job, self._as(build.limits, user))
        outcome = self._unless_host_fault(run, self._hooks(on_started), ready)
        return self._result(outcome, build.ran, build.timeout_s, build.budget, ((), "")), outcome.commands_ms

    def _result(
        self, outcome: ContainerOutcome, ran: Spec, timeout_s: float, budget: str,
        kept: tuple[tuple[tuple[str, str], ...], str], tests: str | None = None,
    ) -> BuildResult:
        """The result of a build that ran, from its outcome, the artifacts it left (`kept`: their
        digests, or why there are none) and the digest of the test outcomes it read, if any."""
        return dataclasses.replace(self._verdict(outcome, ran, timeout_s, budget, kept), tests=tests)

    def _verdict(
        self, outcome: ContainerOutcome, ran: Spec, timeout_s: float, budget: str,
        kept: tuple[tuple[tuple[str, str], ...], str],
    ) -> BuildResult:
        commit = self.commit
        self.output.truncated |= outcome.truncated
        if outcome.oom_killed:
            # Only in the log: the exit code (137) is what nodes agree on.
            self.output.note(f"killed: out of memory (limit {budget})")
        digests, artifacts_problem = kept
        if outcome.exit_code is None:
            return BuildResult("timeout", None, commit, f"build exceeded {timeout_s:g} s", spec=ran)
        if outcome.exit_code != 0:
            return BuildResult("failure", outcome.exit_code, commit, spec=ran)
        if artifacts_problem:
            return BuildResult("error", None, commit, artifacts_problem, spec=ran)
        return BuildResult(
            "success", 0, commit, spec=ran, artifacts=manifest_digest(dict(digests)) if digests else None,
            artifact_files=digests,
        )

    def _secrets(self, secrets: BuildSecrets) -> dict[str, str]:
        """The values of the secrets the plan gives this build, read now (a replaced file takes
        effect at the next build), masked in its log from here on."""
        try:
            values = read_secrets(secrets)
        except SecretUnreadable as exc:
            log.warning("node=%s build %s: %s", self.node.node_id, self.order.build_id, exc.detail.strip())
            raise BuildError(exc.reason, exc.detail, self.commit) from None
        self.output.hide(values)
        return values

    def _skipped(self, skipped: Skipped) -> BuildResult:
        self.output.note(f"skipped: {skipped.reason}")
        return BuildResult("skipped", None, self.commit, skipped.reason, spec=skipped.ran)

    def _matrix(self, build: Expanded) -> BuildResult:
        """The result of a build whose spec has a matrix and which names no combination: no
        container, the combinations listed for the client to ask for one build each, and how."""
        combinations, strategy = build.combinations, build.strategy
        reason = f"the spec's matrix expands into {len(combinations)} builds"
        self.output.note(f"{reason}: {'; '.join(combination_label(combination) for combination in combinations)}")
        return BuildResult("matrix", None, self.commit, reason, combinations=combinations,
                           fail_fast=strategy.fail_fast, max_parallel=strategy.max_parallel)

    def _as(self, limits: BuildConfig, user: str) -> RunAs:
        """How its containers run: under `limits` as `user`, its labels, and its variation's host name
        and build path (if any)."""
        return RunAs(limits, user, self.labels, self.hostname, self.build_path)

    def _say_ready(self, ready, image_id: str, user: str) -> None:
        build_id, node_id = self.order.build_id, self.node.node_id
        if ready is not None:
            log.debug("build id=%s node=%s runs in prepared container %s", build_id, node_id, ready.container.id[:12])
        else:
            log.debug("build id=%s node=%s has no prepared container for image %s user %s; it starts one",
                      build_id, node_id, image_id[:19], user)

    def _artifact_copy(self, build: SpecBuild) -> ArtifactCopy | None:
        if not build.artifacts:
            return None
        return ArtifactCopy(build.artifacts, self.node.artifacts.incoming(self.order.build_id),
                            max_bytes=build.artifacts_max_bytes)

    def _hooks(self, on_started: Callable[[], None] | None = None) -> Hooks:
        return Hooks(on_output=self.output.write, on_section=self.output.section,
                     on_container=self.watch.on_container, on_started=on_started, cancelled=self.watch.cancelled)

    def _unless_host_fault(self, run: Callable[[Hooks, Any], Any], hooks: Hooks, ready=None) -> Any:
        """`run(hooks, ready)`'s outcome; if the host failed the build, the outcome of running it
        once more, in a fresh container, from the same sources, once the engine answers (the
        container prepared before the build came, `ready`, and `hooks.on_started` serve the
        first run only).

        Host faults are a container killed from outside the build (`docker kill`, an operator,
        the host's tooling) and an engine that went away under it (its service restarted or
        crashed). They are the node's trouble, not the build's: an exit code 137 must not be
        signed as the build's failure, which would make this node a dissenter on a build that
        passed. Failed by the host again, the node says so as its `error`, the same text on
        every node it happens to."""
        faults = []
        engine = self.node.engine
        while True:
            self.watch.check()
            try:
                outcome = run(hooks, ready) if not faults else run(dataclasses.replace(hooks, on_started=None), None)
            except SandboxError as exc:
                self.watch.check()  # its container killed by the cancel, before it ran
                if not exc.engine_lost:
                    raise
                log.warning("node=%s %s: %s", self.node.node_id, ENGINE_LOST, exc.detail.strip())
                faults.append(ENGINE_LOST)
            else:
                self.watch.check()  # killed by the cancel, not from outside
                if not outcome.killed_outside:
                    return outcome
                faults.append(KILLED_OUTSIDE)
            if engine.closing:
                raise BuildError(NODE_STOPPING, commit=self.commit)
            if len(faults) == 2:
                twice = f"{faults[0]}, twice" if faults[0] == faults[1] else f"{faults[0]}, then {faults[1]}"
                raise BuildError(twice, commit=self.commit)
            if not engine.answers(ENGINE_BACK_S):
                raise BuildError(f"{faults[0]}; it did not answer again within {ENGINE_BACK_S:g} s", commit=self.commit)
            log.warning("node=%s %s: running the build again", self.node.node_id, faults[0])
            self.output.section(f"{faults[0]}: the build runs again, in a fresh container")

    def _keep_reports(self, copy: ReportCopy | None, outcome) -> str | None:
        """Read the build's test reports, keep its outcomes on this node and say them in its log:
        whatever they say, and whether they could be read, the verdict stays the build's exit's.
        The outcomes' digest, which the node's signed result names; None without reports."""
        if copy is None:
            return None
        record = reports_record(copy, outcome.reports, outcome.reports_problem)
        for problem in record["problems"]:
            self.output.note(f"test reports: {problem}")
        counts = ", ".join(f"{count} {kind}" for kind, count in record["summary"].items() if count)
        self.output.note(f"tests: {counts or 'none read'}; outcomes {record['digest']}")
        order = self.order
        try:
            self.node.reports.store({"build": order.build_id, "repository": order.repository_name,
                                     "commit": self.commit, **record})
        except OSError:
            log.warning("could not keep the test outcomes of build %s", order.build_id, exc_info=True)
            return None  # nothing served: nothing signed
        return record["digest"]

    def _take_artifacts(self, copy: ArtifactCopy | None, outcome) -> tuple[tuple[tuple[str, str], ...], str]:
        """Store what a successful build left as its artifacts: their digests, or why there are none.

        A build that did not exit 0 gets no artifacts and keeps its verdict;
        one whose artifacts cannot be taken (builder/workspace/artifacts.py says why, the
        same on every honest node) ends as an error.
        """
        if copy is None:
            return (), ""
        output, name, build_id, commit = self.output, self.order.repository_name, self.order.build_id, self.commit
        if outcome.exit_code != 0:
            output.note("artifacts not taken: the build did not succeed")
            return (), ""
        if outcome.artifacts is None:
            output.note(f"artifacts not taken: {outcome.artifacts_problem}")
            return (), outcome.artifacts_problem
        try:
            sizes, kept = self.node.artifacts.store(
                repository=name, build_id=build_id, commit=commit, incoming=copy.dest, digests=outcome.artifacts
            )
        except OSError as exc:
            log.warning("could not store the artifacts of build %s", build_id, exc_info=True)
            raise BuildError("could not store the artifacts on this node", f"{exc}\n", commit) from None
        for path, digest in outcome.artifacts.items():
            output.note(f"artifact {path} {digest} ({sizes[path]} bytes)")
        output.note(
            f"artifacts stored: {len(sizes)} files, {sum(sizes.values())} bytes; "
            f"those of the newest {kept} builds of {name!r} are kept on this node"
        )
        return tuple(outcome.artifacts.items()), ""


def _picked(secrets: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The values of the secrets `names` of a build's `secrets`, in that order."""
    return {name: secrets[name] for name in names}
