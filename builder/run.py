"""One build after its checkout: its spec planned (builder/plan/compile.py), its containers run on
the engine, its caches and artifacts kept, its outcome turned into the result nodes sign.

Every failure the build's own content causes ends as a result whose reason is the same text on
every honest node; what differs between nodes (paths, daemon messages) goes to its log only.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from builder.engine import Engine
from builder.engine.container import ContainerJob
from builder.engine.gate import exported
from builder.engine.host import ENGINE_BACK_S
from builder.engine.sandbox import ENGINE_LOST, ContainerOutcome, Hooks, RunAs, SandboxError, Script
from builder.engine.services import PlannedService
from builder.engine.steps import PlannedStep, StepsJob
from builder.order import BuildOrder
from builder.plan.civars import ci_variables, reproducible_environment
from builder.plan.compile import Expanded, Refused, Skipped, SpecPlan, plan_spec, spec_identity
from builder.plan.pipeline import Step, narrowed, run_order, step_graph
from builder.plan.resources import memory_budget, share
from builder.plan.secrets import BuildSecrets, SecretUnreadable, build_secrets
from builder.plan.settings import dockerfile_settings, spec_settings
from builder.plan.spec import SPEC_FILE
from builder.result import BuildResult
from builder.workspace.artifacts import ArtifactCopy
from builder.workspace.artifactstore import ArtifactStore
from builder.workspace.cacherun import prepare_cache, release_cache, save_cache
from builder.workspace.caches import CacheStore
from builder.workspace.fetch import Fetched
from builder.workspace.log import BuildLog
from pbft.attestation import manifest_digest
from pbft.build import Spec, combination_label
from shared.config import BuildConfig

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
    """What every build of a node shares: its engine, limits, stores and its own variables."""

    node_id: int
    engine: Engine
    limits: BuildConfig
    caches: CacheStore
    artifacts: ArtifactStore
    extra_environment: Mapping[str, str]


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
        self.commit = ""  # the commit it builds, once fetched

    def run(self, fetched: Fetched) -> tuple[BuildResult, int | None]:
        """The build's result and how long its own commands ran (ContainerOutcome.commands_ms)."""
        commit = self.commit = fetched.facts.commit
        try:
            result, commands_ms = self._run(fetched)
        except SandboxError as exc:
            raise BuildError(exc.reason, exc.detail, commit) from None
        if self.images and result.spec is not None:
            result = dataclasses.replace(result, images=tuple(sorted(set(self.images), key=lambda image: image.name)))
        return result, commands_ms

    def _run(self, fetched: Fetched) -> tuple[BuildResult, int | None]:
        commit = self.commit
        # Derived from the commit and the agreed request alone, so the same on every honest node.
        environment = {
            **reproducible_environment(fetched.committed_s), **ci_variables(fetched.facts),
            **self.node.extra_environment,
        }
        skipped = fetched.skips.before_spec()
        if skipped is not None:
            return self._skipped(commit, Skipped(skipped)), None
        spec_path = self.workspace / SPEC_FILE
        if spec_path.is_symlink():
            # Reading it would follow the link on the node's own file system.
            raise BuildError(f"{SPEC_FILE} must be a regular file", commit=commit)
        combination = self.order.combination
        if spec_path.is_file():
            planned = plan_spec(SPEC_FILE, spec_path.read_bytes(), combination, self.node.limits, fetched.skips)
            if isinstance(planned, Refused):
                raise BuildError(planned.reason, commit=commit)
            if isinstance(planned, Skipped):
                return self._skipped(commit, planned), None
            if isinstance(planned, Expanded):
                return self._matrix(commit, planned.combinations), None
            network = self.node.engine.network_name() if self.order.settings.networked else None
            environment.update(planned.spec.environment)
            secrets = self._secrets(fetched)
            self.output.settings(spec_settings(planned, self.node.limits, network, environment, secrets))
            if planned.is_pipeline:
                return self._pipeline(planned, fetched, environment, secrets, network)
            return self._script(planned, fetched, environment, secrets, network)
        if combination is not None:
            raise BuildError(f"the build names a matrix combination; the commit has no {SPEC_FILE}", commit=commit)
        if (self.workspace / "Dockerfile").is_file():
            return self._dockerfile(fetched, environment)
        raise BuildError(f"no {SPEC_FILE} or Dockerfile", commit=commit)

    def _script(
        self, plan: SpecPlan, fetched: Fetched, environment: dict[str, str], secrets: BuildSecrets, network: str | None,
    ) -> tuple[BuildResult, int | None]:
        """A one-script spec: one container, with the spec's caches and artifacts."""
        node, spec, commit = self.node, plan.spec, self.commit
        caching = plan.caches and node.limits.cache_mb > 0
        image_id = node.engine.image(plan.image, self.images)
        script, arguments, cache_run, ready, on_started = spec.script(), (), None, None, None
        if caching:
            cache_run = prepare_cache(node.caches, fetched.facts, image_id, spec.cache, self.workspace, self.output)
            script, arguments = cache_run.script, ("pbft-ci-cache", spec.script())
        elif network is None:
            ready = node.engine.take_ready(image_id, plan.user)
            self._say_ready(ready, image_id, plan.user)
            on_started = functools.partial(node.engine.prepare_ready, image_id, plan.user)
        artifacts = self._artifact_copy(spec.artifacts)
        try:
            job = ContainerJob(
                image_id, Script(script, self.workspace, arguments, secrets.values), plan.timeout_s,
                environment=_without(environment, secrets.values), cache=cache_run.mounts if cache_run else None,
                network=network, artifacts=artifacts,
            )
            run = functools.partial(node.engine.run, job, RunAs(node.limits, plan.user, self.labels))
            outcome = self._unless_host_fault(run, self._hooks(on_started), ready)
            if cache_run is not None:
                save_cache(node.caches, self.order.repository_name, cache_run, outcome, self.output)
            kept = self._take_artifacts(commit, artifacts, outcome)
        finally:
            if artifacts is not None:
                # Moved into the store by now if they are kept.
                node.artifacts.discard(artifacts.dest)
            if cache_run is not None:
                release_cache(node.caches, self.order.build_id, cache_run)
        budget = memory_budget(node.limits, with_workspace=True, with_cache=caching)
        return self._result(outcome, plan.ran, plan.timeout_s, budget.breakdown(), kept), outcome.commands_ms

    def _pipeline(
        self, plan: SpecPlan, fetched: Fetched, environment: dict[str, str], secrets: BuildSecrets, network: str | None,
    ) -> tuple[BuildResult, int | None]:
        """A `steps:` build, or one with services (builder/engine/steps.py): its result names each step's
        outcome, and the step that failed it. A one-script spec with services is one step, `build`.
        Every step and service gets the build's secrets, or those of them it lists."""
        node, spec, commit = self.node, plan.spec, self.commit
        steps = spec.steps or (Step(name="build", image=None, commands=spec.commands),)
        graph = step_graph(steps)
        # The steps that may run at once and the services share the build's limits.
        limits = share(node.limits, graph.width + len(spec.services))
        services = tuple(
            PlannedService(
                name=service.name, image=service.image, image_id=node.engine.image(service.image, self.images),
                script=service.script() if service.commands else None,
                environment={**environment, **dict(service.environment), **narrowed(secrets.values, service.secrets)},
                ready_command=service.ready_command, ready_timeout_s=service.ready_timeout_s,
            )
            for service in spec.services
        )
        planned = tuple(
            self._planned_step(step, plan.image, environment, secrets, fetched) for step in run_order(steps)
        )
        artifacts = self._artifact_copy(spec.artifacts)
        cache_run = None
        if plan.caches and node.limits.cache_mb > 0:
            # The key covers every image a step runs, as a one-script build's covers its one.
            images = ",".join(sorted({step.image_id for step in planned}))
            cache_run = prepare_cache(node.caches, fetched.facts, images, spec.cache, self.workspace, self.output)
        try:
            job = StepsJob(planned, self.workspace, plan.timeout_s, graph=graph, network=network, artifacts=artifacts,
                           services=services, cache=cache_run)
            who = RunAs(limits, plan.user, self.labels)
            # A pipeline's containers are never prepared ahead: `ready` is always None for it.
            outcome = self._unless_host_fault(
                lambda hooks, _ready: node.engine.run_steps(job, who, hooks), self._hooks()
            )
            if cache_run is not None:
                save_cache(node.caches, self.order.repository_name, cache_run, outcome, self.output)
            kept = self._take_artifacts(commit, artifacts, outcome)
        finally:
            if artifacts is not None:
                node.artifacts.discard(artifacts.dest)
            if cache_run is not None:
                release_cache(node.caches, self.order.build_id, cache_run)
        budget = memory_budget(limits, with_workspace=True, with_cache=cache_run is not None)
        result = self._result(outcome, plan.ran, plan.timeout_s, budget.breakdown(), kept)
        if result.status == "timeout":
            result = dataclasses.replace(
                result, reason=f"build exceeded {plan.timeout_s:g} s (in step {outcome.failed_step!r})")
        elif result.status == "failure":
            result = dataclasses.replace(
                result, reason=f"step {outcome.failed_step!r} failed with exit code {outcome.exit_code}")
        return dataclasses.replace(result, steps=outcome.steps), outcome.commands_ms

    def _planned_step(
        self, step: Step, image: str, environment: dict[str, str], secrets: BuildSecrets, fetched: Fetched,
    ) -> PlannedStep:
        step_image = step.image or image
        step_environment = {**environment, **dict(step.environment), "CI_STEP_NAME": step.name}
        step_secrets = narrowed(secrets.values, step.secrets)
        return PlannedStep(
            name=step.name, image=step_image, image_id=self.node.engine.image(step_image, self.images),
            script=exported(_without(step_environment, step_secrets), step.script()), status=step.status,
            ignore_failure=step.ignore_failure, retry=step.retry,
            skip_reason=fetched.skips.of_step(step.conditions) if step.conditions else None,
            secrets=step_secrets,
        )

    def _dockerfile(self, fetched: Fetched, environment: dict[str, str]) -> tuple[BuildResult, int | None]:
        """A repository with a Dockerfile and no spec: its image built, then run as a spec build is."""
        node, limits, commit = self.node, self.node.limits, self.commit
        # The context is the commit's tree alone: .git differs between checkouts (its
        # index records file times), and would make every `COPY .` miss the layer cache.
        shutil.rmtree(self.workspace / ".git")
        timeout_s = limits.timeout_s
        tag = f"pbft-ci-build/{_image_name(self.order.repository_name)}:{commit[:12]}"
        dockerfile = self.workspace / "Dockerfile"
        ran = spec_identity(dockerfile.name, _content(dockerfile), tag)
        secrets = self._secrets(fetched)
        self.output.settings(dockerfile_settings(limits, tag, timeout_s, environment, secrets))
        build_output, image_id = node.engine.build_image(self.workspace, tag, timeout_s)
        self.output.write(build_output.encode(errors="replace"))
        job = ContainerJob(image_id, None, timeout_s, environment={**environment, **secrets.values})
        run = functools.partial(node.engine.run, job, RunAs(limits, limits.user, self.labels))
        outcome = self._unless_host_fault(run, self._hooks())
        budget = memory_budget(limits, with_workspace=False)
        return self._result(outcome, ran, timeout_s, budget.breakdown(), ((), "")), outcome.commands_ms

    def _result(
        self, outcome: ContainerOutcome, ran: Spec, timeout_s: float, budget: str,
        kept: tuple[tuple[tuple[str, str], ...], str],
    ) -> BuildResult:
        """The result of a build that ran, from its outcome and the artifacts it left (`kept`:
        their digests, or why there are none)."""
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

    def _secrets(self, fetched: Fetched) -> BuildSecrets:
        """The secrets this build gets, read now (a replaced file takes effect at the next build),
        their values masked in its log from here on."""
        try:
            secrets = build_secrets(self.order.settings.secrets, fetched.facts.event, fetched.facts.pull_ref)
        except SecretUnreadable as exc:
            log.warning("node=%s build %s: %s", self.node.node_id, self.order.build_id, exc.detail.strip())
            raise BuildError(exc.reason, exc.detail, self.commit) from None
        self.output.hide(secrets.values)
        return secrets

    def _skipped(self, commit: str, skipped: Skipped) -> BuildResult:
        self.output.note(f"skipped: {skipped.reason}")
        return BuildResult("skipped", None, commit, skipped.reason, spec=skipped.ran)

    def _matrix(self, commit: str, combinations: tuple) -> BuildResult:
        """The result of a build whose spec has a matrix and which names no combination: no
        container, the combinations listed for the client to ask for one build each."""
        reason = f"the spec's matrix expands into {len(combinations)} builds"
        self.output.note(f"{reason}: {'; '.join(combination_label(combination) for combination in combinations)}")
        return BuildResult("matrix", None, commit, reason, combinations=combinations)

    def _say_ready(self, ready, image_id: str, user: str) -> None:
        build_id, node_id = self.order.build_id, self.node.node_id
        if ready is not None:
            log.debug("build id=%s node=%s runs in prepared container %s", build_id, node_id, ready.container.id[:12])
        else:
            log.debug("build id=%s node=%s has no prepared container for image %s user %s; it starts one",
                      build_id, node_id, image_id[:19], user)

    def _artifact_copy(self, patterns: tuple[str, ...]) -> ArtifactCopy | None:
        if not patterns:
            return None
        return ArtifactCopy(patterns, self.node.artifacts.incoming(self.order.build_id),
                            max_bytes=self.node.limits.artifacts_mb * 1024 * 1024)

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

    def _take_artifacts(
        self, commit: str, copy: ArtifactCopy | None, outcome,
    ) -> tuple[tuple[tuple[str, str], ...], str]:
        """Store what a successful build left as its artifacts: their digests, or why there are none.

        A build that did not exit 0 gets no artifacts and keeps its verdict;
        one whose artifacts cannot be taken (builder/workspace/artifacts.py says why, the
        same on every honest node) ends as an error.
        """
        if copy is None:
            return (), ""
        output, name, build_id = self.output, self.order.repository_name, self.order.build_id
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


def _without(environment: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    """`environment` but the variables `secrets` set: a script exports its environment after the
    gate has set the secrets (builder/engine/gate.py), and must not replace one."""
    return {name: value for name, value in environment.items() if name not in secrets}


def _content(path: Path) -> bytes:
    """A file's bytes; a link's target, hashed as a link: following it would read this node's own files."""
    return str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()


def _image_name(repository_name: str) -> str:
    """A Docker repository path component: lowercase alphanumerics joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", repository_name.lower()).strip("-") or "repository"

