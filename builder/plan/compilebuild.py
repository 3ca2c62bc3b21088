"""The compile step of a build: its order, what its checkout holds and the network's limits in,
its plan out (builder/plan/buildplan.py), for builder/run.py to carry out.

Pure: no Docker, no git, no files; the checkout's spec or Dockerfile comes in as bytes
(`Sources`), its secrets are named, not read. Every input is agreed or in the commit (the node's
own variables aside), so honest nodes compile the same plan.
"""

from __future__ import annotations

import re
from typing import Mapping

from builder.order import BuildOrder
from builder.plan.buildplan import (
    DOCKERFILE,
    BuildPlan,
    CheckedOut,
    DockerfileBuild,
    PipelineBuild,
    ScriptBuild,
    ServicePlan,
    StepPlan,
    without,
)
from builder.plan.civars import ci_variables, reproducible_environment
from builder.plan.compile import Expanded, Refused, Skipped, SpecPlan, plan_spec, spec_identity
from builder.plan.pipeline import Service, Step, narrowed, run_order, step_graph
from builder.plan.resources import memory_budget, share
from builder.plan.secrets import BuildSecrets, build_secrets
from builder.plan.settings import dockerfile_settings
from builder.plan.spec import SPEC_FILE
from shared.config import BuildConfig


def compile_build(
    order: BuildOrder, checkout: CheckedOut, limits: BuildConfig, node_environment: Mapping[str, str],
) -> BuildPlan:
    """The plan of `order`'s build of `checkout` under the network's `limits`; `node_environment`
    are the variables this node gives every build on top (node/byzantine.py's flaky mode)."""
    return BuildPlan(checkout.facts, _build(order, checkout, limits, node_environment))


def _build(
    order: BuildOrder, checkout: CheckedOut, limits: BuildConfig, node_environment: Mapping[str, str],
) -> ScriptBuild | PipelineBuild | DockerfileBuild | Skipped | Refused | Expanded:
    facts, sources = checkout.facts, checkout.sources
    # Derived from the commit and the agreed request alone, so the same on every honest node.
    environment = {
        **reproducible_environment(checkout.committed_s), **ci_variables(facts), **node_environment,
    }
    skipped = checkout.skips.before_spec()
    if skipped is not None:
        return Skipped(skipped)
    if sources.spec_is_link:
        return Refused(f"{SPEC_FILE} must be a regular file")
    secrets = build_secrets(order.settings.secrets, facts.event, facts.pull_ref)
    if sources.spec is not None:
        planned = plan_spec(SPEC_FILE, sources.spec, order.combination, limits, checkout.skips,
                            dict(sources.included).get)
        if not isinstance(planned, (SpecPlan, Expanded)):
            return planned
        try:
            inputs = planned.input_variables(order.inputs)
        except ValueError as reason:
            return Refused(f"{SPEC_FILE}: {reason}")
        if isinstance(planned, Expanded):
            return planned
        environment = {**environment, **dict(planned.spec.environment), **inputs}
        return _spec_build(planned, order, checkout, limits, environment, secrets)
    if order.combination is not None:
        return Refused(f"the build names a matrix combination; the commit has no {SPEC_FILE}")
    if order.inputs:
        return Refused(f"the run gives inputs; the commit has no {SPEC_FILE} to declare them")
    if sources.dockerfile is not None:
        tag = f"pbft-ci-build/{_image_name(order.repository_name)}:{facts.commit[:12]}"
        return DockerfileBuild(
            ran=spec_identity(DOCKERFILE, sources.dockerfile, tag), tag=tag, timeout_s=limits.timeout_s,
            limits=limits, environment=environment, secrets=secrets,
            budget=memory_budget(limits, with_workspace=False).breakdown(),
            settings=tuple(dockerfile_settings(limits, tag, limits.timeout_s, environment, secrets)),
        )
    return Refused(f"no {SPEC_FILE} or {DOCKERFILE}")


def _spec_build(
    plan: SpecPlan, order: BuildOrder, checkout: CheckedOut, limits: BuildConfig, environment: dict[str, str],
    secrets: BuildSecrets,
) -> ScriptBuild | PipelineBuild:
    spec = plan.spec
    cache = spec.cache if spec.cache is not None and limits.cache_mb > 0 else None
    shared = dict(
        spec=plan, network_limits=limits, environment=environment, secrets=secrets, networked=order.settings.networked,
        cache=cache, artifacts=spec.artifacts, artifacts_max_bytes=limits.artifacts_mb * 1024 * 1024,
        reports=spec.reports.junit if spec.reports is not None else (),
    )
    if not plan.is_pipeline:
        budget = memory_budget(limits, with_workspace=True, with_cache=cache is not None)
        return ScriptBuild(**shared, limits=limits, budget=budget.breakdown(), script=spec.script())
    steps = spec.steps or (Step(name="build", image=None, commands=spec.commands),)
    graph = step_graph(steps)
    # The steps that may run at once and the services share the build's limits.
    each = share(limits, graph.width + len(spec.services))
    return PipelineBuild(
        **shared, limits=each, budget=memory_budget(each, with_workspace=True, with_cache=cache is not None).breakdown(),
        steps=tuple(_step(step, plan.image, environment, secrets, checkout) for step in run_order(steps)),
        graph=graph, services=tuple(_service(service, environment, secrets) for service in spec.services),
    )


def _step(step: Step, image: str, environment: dict[str, str], secrets: BuildSecrets, checkout: CheckedOut) -> StepPlan:
    names = narrowed(secrets.names, step.secrets)
    return StepPlan(
        name=step.name, image=step.image or image, script=step.script(),
        environment=without({**environment, **dict(step.environment), "CI_STEP_NAME": step.name}, names),
        secrets=names, status=step.status, ignore_failure=step.ignore_failure, retry=step.retry,
        skip_reason=checkout.skips.of_step(step.conditions) if step.conditions else None, timeout_s=step.timeout_s,
    )


def _service(service: Service, environment: dict[str, str], secrets: BuildSecrets) -> ServicePlan:
    return ServicePlan(
        name=service.name, image=service.image, script=service.script() if service.commands else None,
        environment={**environment, **dict(service.environment)}, secrets=narrowed(secrets.names, service.secrets),
        ready_command=service.ready_command, ready_timeout_s=service.ready_timeout_s,
    )


def _image_name(repository_name: str) -> str:
    """A Docker repository path component: lowercase alphanumerics joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", repository_name.lower()).strip("-") or "repository"
