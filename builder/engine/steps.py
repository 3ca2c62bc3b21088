"""Running a pipeline's steps (builder/plan/pipeline.py) on one shared workspace, next to its
services (builder/engine/services.py): each step once the steps it follows ended, so that
steps that do not follow each other run at once (builder/plan/stepgraph.py).

The workspace is a tmpfs volume like a one-script build's (builder/engine/sandbox.py). A tmpfs
vanishes when nothing mounts it, so a holder container (sandbox.hold_mounts) keeps it
mounted from before the sources are copied in until the node has taken the artifacts
out; each step is a gated container of its own image that mounts the same volume, is
handed its script, and is removed once it exits. The holder also owns the build's
network namespace, which every step and service joins: loopback only, or the
repository's build network. Every step has the hardening and the limits of a one-script
build (a share of them: the services and the steps that may run at once divide them);
the build's deadline covers all of them.

Which steps run depends only on the spec, the trigger and the exit codes of the steps
each follows, never on which ended first, so honest nodes run the same steps and report
the same step results, listed in the run order. A failed step with `retry:` runs again
in a new container on the same workspace.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import docker.errors
import requests.exceptions
from docker.types import Mount

from builder.engine.services import PlannedService, RunningService, start_service, wait_until_ready
from builder.engine.exits import OutputCapture, ended_out_of_memory, killed_by_engine, wait_for_exit
from builder.engine.gate import GateSetup, deliver_script, start_gated_container
from builder.engine.sandbox import ENGINE_LOST, Hooks, Sandbox, SandboxError, tmpfs_volume
from builder.engine.steplogs import StepSections
from builder.engine.sources import fill_workspace
from builder.engine.transfer import (
    ArtifactsOut,
    copy_artifacts_out,
    copy_reports_out,
    ReportsOut,
    copy_cache_out,
    hold_mounts,
    upload_restore,
)
from builder.plan.cachemounts import CacheMounts
from builder.plan.containerpaths import OUT_DIR
from builder.plan.stepgraph import FAILED, Schedule, StepGraph
from pbft.build import StepResult


@dataclass(frozen=True)
class PlannedStep:
    """A step as it will run: its image checked, its script with its environment exported, and
    the secrets the gate puts in its environment (builder/engine/gate.py's gate_input)."""

    name: str
    image: str  # as the spec names it, for the log
    image_id: str
    script: str
    status: tuple[str, ...] = ("success",)  # the build statuses so far it runs after
    ignore_failure: bool = False
    retry: int = 0  # how many times it runs again after a failure
    timeout_s: float | None = None  # each attempt's own time; None: the build's deadline alone
    # The pipeline's cache containers only (`_cache_container`): what follows the script, and
    # that it mounts the cache tmpfs.
    arguments: tuple[str, ...] = ()
    with_cache: bool = False
    skip_reason: str | None = None  # its trigger conditions exclude it: never runs
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class StepsOutcome:
    steps: tuple[StepResult, ...]
    # The build's: 0, the first failed step's exit code (but for `failure: ignore`), or None
    # when the deadline or the step's own timeout_s ended a step; `failed_step` names that step.
    exit_code: int | None
    failed_step: str | None = None
    commands_ms: int = 0
    truncated: bool = False
    oom_killed: bool = False
    killed_outside: bool = False
    artifacts: dict[str, str] | None = None
    artifacts_problem: str = ""
    cache_copied: bool = False
    cache_problem: str = ""
    step_timeout_s: float | None = None  # the failed step's own timeout_s, when that is what ended it
    reports: dict[str, str] | None = None  # as ContainerOutcome's
    reports_problem: str = ""


class PipelineCache(Protocol):
    """A pipeline's caches as its containers use them (builder/workspace/cacherun.py's CacheRun):
    their mounts, and the scripts that restore them before the first step and write them to the
    cache tmpfs after the last ("" for none)."""

    @property
    def mounts(self) -> CacheMounts: ...

    @property
    def restore_script(self) -> str: ...

    @property
    def save_script(self) -> str: ...


@dataclass(frozen=True)
class StepsJob:
    """A pipeline: its steps in the order they run, the checkout on this node (`workspace`)
    its shared workspace is filled from, its deadline, its build network, the artifacts it
    declares and the services its steps reach by name."""

    steps: tuple[PlannedStep, ...]
    workspace: Path
    timeout_s: float
    graph: StepGraph  # the steps' depends_on (builder/plan/pipeline.step_graph)
    network: str | None = None
    artifacts: ArtifactsOut | None = None
    reports: ReportsOut | None = None  # its test reports, copied out whatever its end
    services: tuple[PlannedService, ...] = ()
    # Its caches: their paths are in /workspace, which every step shares, so one container
    # restores them before the first step and another writes them to the cache tmpfs after
    # the last, if every step passed.
    cache: PipelineCache | None = None


def run_steps(sandbox: Sandbox, job: StepsJob, hooks: Hooks) -> StepsOutcome:
    """Run the job's steps as their graph allows to the end or the deadline, once its services
    are ready. The sandbox's limits are each container's (the build's share).
    `hooks.on_section(text)` gets a line of the node's before and after each step's output;
    `hooks.cancelled()` is asked before each step starts."""
    steps, services, timeout_s, on_section = job.steps, job.services, job.timeout_s, hooks.on_section
    assert steps, "a pipeline has steps"
    volume = holder = cache_volume = None
    containers: list = []
    running: list[RunningService] = []
    try:
        volume = tmpfs_volume(sandbox, "workspace", sandbox.limits.workspace_mb, mode="0755")
        mounts = [Mount("/workspace", volume.name, type="volume", no_copy=True)]
        if job.cache is not None:
            cache_volume = tmpfs_volume(sandbox, "cache", job.cache.mounts.size_mb, mode="0700")
            mounts.append(Mount(OUT_DIR, cache_volume.name, type="volume", no_copy=True))
        holder = hold_mounts(
            sandbox, steps[0].image_id, mounts, timeout_s,
            network=job.network, hosts=tuple(service.name for service in services),
        )
        pod = _Pod(volume, f"container:{holder.id}", containers, cache_mounts=tuple(mounts[1:]))
        fill_workspace(sandbox, holder, job.workspace, image_id=steps[0].image_id, volume=volume.name)
        if job.cache is not None and job.cache.mounts.restore_tar is not None:
            upload_restore(holder, job.cache.mounts.restore_tar, sandbox.user)
        deadline = time.monotonic() + timeout_s
        for service in services:
            running.append(start_service(sandbox, service, pod=holder.id))
            containers.append(running[-1].container)
        try:
            wait_until_ready(running, deadline)
        except SandboxError as exc:
            raise SandboxError(exc.reason, _service_output(running)) from None
        for service in running:
            on_section(f"service {service.planned.name}: image {service.planned.image}, ready")
        if job.cache is not None and job.cache.restore_script:
            if _cache_container(sandbox, job, pod, hooks, deadline, "restore").killed_outside:
                return StepsOutcome((), None, killed_outside=True)
        pipeline = _Pipeline(sandbox, job, pod, hooks, deadline)
        results = pipeline.run()
        if pipeline.killed_outside:
            return StepsOutcome(results, None, killed_outside=True)
        state = _Progress()
        for step, result in zip(steps, results):
            state.add(step, result, pipeline.ran.get(step.name))
        copied, problem = None, ""
        if job.artifacts is not None and state.exit_code == 0:
            copied, problem = copy_artifacts_out(holder, job.artifacts, sandbox.limits.workspace_mb)
        reports, reports_problem = copy_reports_out(holder, job.reports, sandbox.limits.workspace_mb)
        cache_copied, cache_problem = False, "the build saves no cache"
        if job.cache is not None and job.cache.save_script and state.exit_code == 0:
            saved = _cache_container(sandbox, job, pod, hooks, deadline, "save")
            if saved.killed_outside:
                return StepsOutcome(results, None, killed_outside=True)
            cache_copied, cache_problem = copy_cache_out(holder, job.cache.mounts) if saved.result.exit_code == 0 \
                else (False, f"writing it ended with {saved.result.status}")
        if running:
            on_section("services' output follows")
            hooks.on_output(_service_output(running).encode(errors="replace"))
        return StepsOutcome(
            results, state.exit_code, state.failed_step, pipeline.commands_ms, state.truncated,
            state.oom_killed, False, copied, problem, cache_copied, cache_problem, state.step_timeout_s,
            reports, reports_problem,
        )
    except requests.exceptions.ConnectionError as exc:
        raise SandboxError(ENGINE_LOST, f"{exc}\n", engine_lost=True) from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError("docker error: container failed to run", str(exc)) from None
    finally:
        for service in running:
            service.close()
        sandbox.remove(
            [container for container in (*containers, holder) if container is not None],
            [leftover for leftover in (volume, cache_volume) if leftover is not None],
        )


def _cache_container(sandbox: Sandbox, job: StepsJob, pod: _Pod, hooks: Hooks, deadline: float, what: str) -> _Ran:
    """Restore the pipeline's cache into /workspace before its first step, or write it to the
    cache tmpfs after its last: a container of the first step's image, with the cache mounted."""
    cache, first = job.cache, job.steps[0]
    assert cache is not None
    hooks.on_section(f"cache {what} step: image {first.image}")
    container = PlannedStep(
        name=f"cache-{what}", image=first.image, image_id=first.image_id,
        script=cache.restore_script if what == "restore" else cache.save_script,
        arguments=("pbft-ci-cache", "true"), with_cache=True)
    ran = _attempt(sandbox, container, pod, hooks, max(deadline - time.monotonic(), 0.0))
    hooks.on_section(f"cache {what} step: {ran.result.status} exit_code {ran.result.exit_code}")
    return ran


def _service_output(running: list[RunningService]) -> str:
    """Each service's output so far, under its name."""
    parts = []
    for service in running:
        text = service.output().decode(errors="replace")
        parts.append(f"--- service {service.planned.name} ---\n{text}" + ("" if text.endswith("\n") else "\n"))
    return "".join(parts)


def _skip_reason(step: PlannedStep, status: str) -> str | None:
    if step.skip_reason is not None:
        return step.skip_reason
    if status not in step.status:
        return f"when: status is {' or '.join(step.status)}, the build's is {status}"
    return None


@dataclass(frozen=True)
class _Ran:
    result: StepResult
    truncated: bool = False
    oom_killed: bool = False
    killed_outside: bool = False
    over_own_time: bool = False  # ended `timeout` by the step's own timeout_s, not the build's deadline


@dataclass
class _Progress:
    """The build's status as the steps make it, taken in the run order (not the order they ended)."""

    status: str = "success"
    exit_code: int | None = 0
    failed_step: str | None = None
    timed_out: bool = False
    truncated: bool = False
    oom_killed: bool = False
    step_timeout_s: float | None = None  # the failed step's own timeout_s, when it ended it

    def add(self, step: PlannedStep, result: StepResult, ran: _Ran | None) -> None:
        if ran is not None:
            self.truncated |= ran.truncated
            self.oom_killed |= ran.oom_killed
        over_own_time = ran is not None and ran.over_own_time
        if result.status == "timeout" and not over_own_time and not self.timed_out:
            self.timed_out, self.exit_code, self.failed_step, self.status = True, None, step.name, "failure"
            self.step_timeout_s = None
        elif result.status in FAILED and not step.ignore_failure and self.status == "success":
            self.status, self.exit_code, self.failed_step = "failure", result.exit_code, step.name
            self.step_timeout_s = step.timeout_s if over_own_time else None


@dataclass
class _Pod:
    """What a pipeline's steps share: the workspace volume, the holder's network namespace they
    join, and the containers made so far, for the pipeline's end to remove; `stopping` is set
    when the steps still running are to end at once (an error, or the engine killed one)."""

    volume: Any
    network: str
    containers: list
    cache_mounts: tuple[Mount, ...] = ()  # the cache tmpfs, for the cache containers alone
    stopping: threading.Event = field(default_factory=threading.Event)


class _Pipeline:
    """Runs the steps as their graph allows (builder/plan/stepgraph.py), each in a thread of its
    own, writing each one's output as a section of the log (builder/engine/steplogs.py)."""

    def __init__(self, sandbox: Sandbox, job: StepsJob, pod: _Pod, hooks: Hooks, deadline: float) -> None:
        self.sandbox, self.pod, self.hooks, self.deadline = sandbox, pod, hooks, deadline
        self.steps = {step.name: step for step in job.steps}
        assert job.graph.names == tuple(self.steps), "the steps are planned in the run order"
        self.schedule = Schedule(job.graph)
        self.sections = StepSections(hooks.on_section, hooks.on_output or (lambda _data: None),
                                     sandbox.limits.output_cap_bytes)
        self.ran: dict[str, _Ran] = {}
        self.timed_out = self.killed_outside = False
        self.commands_ms = 0

    def run(self) -> tuple[StepResult, ...]:
        """Every step's result, in the run order: those that never ran `skipped`."""
        started = time.monotonic()
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.schedule.graph.width, thread_name_prefix="step") as pool:
            try:
                while True:
                    self._skip_free()
                    for name in self.schedule.startable():
                        running[self._start(pool, name)] = name
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._ended(running.pop(future), future.result())
                assert self.schedule.done, "every step ran or was skipped"
            except BaseException:
                # The threads still running end before the pool lets go: kill their containers.
                self.pod.stopping.set()
                for container in list(self.pod.containers):
                    _kill(container)
                raise
        self.commands_ms = round((time.monotonic() - started) * 1000)
        return tuple(
            self.ran[name].result if name in self.ran else StepResult(name, "skipped", None, 0)
            for name in self.schedule.graph.names
        )

    def _skip_free(self) -> None:
        """End the free steps that will not run: all of them once the deadline passed, the
        engine killed a step or the build's cancel came; else those whose `when:` excludes them."""
        skipped = True
        while skipped:
            skipped = False
            for name in self.schedule.free():
                if self.timed_out or self.killed_outside or self.hooks.cancelled():
                    reason = None
                else:
                    reason = _skip_reason(self.steps[name], self.schedule.status_before(name))
                    if reason is None:
                        continue
                    self.sections.note(name, f"step {name}: skipped, {reason}")
                self.schedule.end(name, "skipped")
                skipped = True

    def _start(self, pool: ThreadPoolExecutor, name: str) -> Future:
        step = self.steps[name]
        self.schedule.start(name)
        self.sections.begin(name, f"step {name}: image {step.image}")
        hooks = dataclasses.replace(self.hooks, on_output=functools.partial(self.sections.output, name))
        say = functools.partial(self.sections.say, name)
        return pool.submit(_run_step, self.sandbox, step, self.pod, hooks, say, self.deadline)

    def _ended(self, name: str, ran: _Ran) -> None:
        result = ran.result
        self.ran[name] = ran
        self.sections.end(
            name, f"step {name}: {result.status} exit_code {result.exit_code} duration_ms {result.duration_ms}")
        self.schedule.end(name, result.status, counts=not self.steps[name].ignore_failure)
        # The build's deadline ends every step; a step's own timeout_s ends that step alone.
        self.timed_out |= result.status == "timeout" and not ran.over_own_time
        if ran.killed_outside:
            self.killed_outside = True
            self.pod.stopping.set()


def _kill(container) -> None:
    try:
        container.kill()
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass  # it ended already, or the engine is gone: the pipeline's end removes it


def _run_step(sandbox: Sandbox, step: PlannedStep, pod: _Pod, hooks: Hooks, say: Callable[[str], None],
              deadline: float) -> _Ran:
    """Run `step` until it passes, its retries are used up, or the deadline; the exit codes of
    the attempts that failed before its last are in its result."""
    failed: list[int | None] = []
    duration_ms = 0
    while True:
        time_left_s = max(deadline - time.monotonic(), 0.0)
        own = step.timeout_s is not None and step.timeout_s < time_left_s
        ran = _attempt(sandbox, step, pod, hooks, step.timeout_s if own else time_left_s)
        duration_ms += ran.result.duration_ms
        ran = dataclasses.replace(
            ran, result=dataclasses.replace(ran.result, duration_ms=duration_ms, attempts=tuple(failed)),
            over_own_time=own and ran.result.status == "timeout")
        if ran.over_own_time:
            say(f"step {step.name}: exceeded its timeout_s of {step.timeout_s:g} s")
        # A step past its time is not run again: it would most likely hang as long again.
        if ran.result.status != "failure" or ran.killed_outside or len(failed) == step.retry:
            return ran
        failed.append(ran.result.exit_code)
        say(f"step {step.name}: attempt {len(failed)} of {step.retry + 1} failed with exit code "
            f"{ran.result.exit_code}; running it again")


def _attempt(sandbox: Sandbox, step: PlannedStep, pod: _Pod, hooks: Hooks, time_left_s: float) -> _Ran:
    gated = start_gated_container(
        sandbox.labelled({"pbft-ci.step": step.name}), step.image_id, "step",
        GateSetup(arguments=step.arguments, cache_mounts=pod.cache_mounts if step.with_cache else (),
                  network=pod.network, workspace=pod.volume),
    )
    pod.containers.append(gated.container)
    if pod.stopping.is_set():
        _kill(gated.container)
    capture = None
    try:
        if hooks.on_container is not None:
            hooks.on_container(gated.container)
        capture = OutputCapture(gated.output, sandbox.limits.output_cap_bytes, hooks.on_output)
        gated.container.reload()
        if gated.container.status != "running":
            raise SandboxError("docker error: container stopped before the build started")
        deliver_script(gated, step.script, step.secrets)
        gated.close_stdin()
        started = time.monotonic()
        exit_code = wait_for_exit(gated.container, time_left_s)
        duration_ms = round((time.monotonic() - started) * 1000)
        _, truncated = capture.finish()
        oom_killed = ended_out_of_memory(sandbox.client, gated.container, exit_code)
        if exit_code not in (None, 0) and not oom_killed and killed_by_engine(sandbox.client, gated.container):
            return _Ran(StepResult(step.name, "failure", exit_code, duration_ms), killed_outside=True)
        status = "timeout" if exit_code is None else "success" if exit_code == 0 else "failure"
        return _Ran(StepResult(step.name, status, exit_code, duration_ms), truncated, oom_killed)
    finally:
        gated.close_stdin()
        if capture is not None:
            capture.close()
        else:
            gated.output.close()
