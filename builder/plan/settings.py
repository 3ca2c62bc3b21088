"""The settings lines a build's log opens with: what it runs with, as it will run, the same on
every honest node but for the build network's name. Secrets are named, never shown."""

from __future__ import annotations

from builder.plan.artifactpatterns import MAX_FILES
from builder.plan.compile import SpecPlan
from builder.plan.containerpaths import HOME_DIR, OUT_DIR
from builder.plan.pipeline import narrowed
from builder.plan.resources import memory_budget, share
from builder.plan.secrets import BuildSecrets
from builder.plan.spec import BuildSpec
from shared.config import BuildConfig


def spec_settings(
    plan: SpecPlan, limits: BuildConfig, network: str | None, environment: dict[str, str], secrets: BuildSecrets,
) -> list[str]:
    """The settings lines of a .pbft-ci.yml build, as it will run: three, and one more each for
    caches, services and artifacts."""
    spec = plan.spec
    timeout = f"timeout {plan.timeout_s:g} s"
    if spec.timeout_s is not None and spec.timeout_s > limits.timeout_s:
        timeout += f" (the spec's {spec.timeout_s:g} s capped to the network's limit)"
    caching = spec.cache is not None and limits.cache_mb > 0
    lines = [
        f"image {plan.image}, user {plan.user}, {timeout}, {_network_settings(network)}, root file system read-only",
        _resource_settings(limits, with_workspace=True, with_cache=caching),
        _environment_settings(environment, secrets, _narrowing(spec, secrets)),
    ]
    if spec.cache is not None:
        paths = ", ".join(spec.cache.paths)
        if spec.cache.key_files:
            paths += f" (key files {', '.join(spec.cache.key_files)})"
        if caching:
            lines.append(
                f"cache {paths}: at most {limits.cache_mb} MB written to {OUT_DIR}, "
                f"{limits.cache_keep} kept per branch, tag or pull request on this node"
            )
        else:
            lines.append(f"cache {paths}: off on this node (build.cache_mb is 0)")
    if spec.services:
        each = share(limits, 1 + len(spec.services))
        lines.append(
            f"services {', '.join(f'{service.name} ({service.image})' for service in spec.services)}: "
            f"each container of the build gets memory {each.memory_mb} MB, cpus {each.cpus:g}, "
            f"pids {each.pids_limit} of the build's; only the build's own containers reach them"
        )
    if spec.artifacts:
        lines.append(
            f"artifacts {', '.join(spec.artifacts)}: regular files taken after the build succeeds, "
            f"at most {limits.artifacts_mb} MB and {MAX_FILES} files, "
            f"those of the newest {limits.artifacts_keep} builds per repository kept on this node"
        )
    return lines


def _environment_settings(environment: dict[str, str], secrets: BuildSecrets, narrowing: str = "") -> str:
    """The build's variables with their values, but its secrets by name only (a variable the
    spec sets and a secret replaces is not shown either), and `narrowing`, which steps and
    services get fewer of them."""
    ci = [name for name in environment if name == "CI" or name.startswith("CI_")]
    shown = ", ".join(
        f"{name}={value}" for name, value in environment.items() if name not in ci and name not in secrets.names
    )
    line = f"environment {shown} (SOURCE_DATE_EPOCH is the commit's time), and CI and {len(ci) - 1} CI_ variables"
    if secrets.given or secrets.withheld:
        line += f"; {secrets.settings()}{narrowing}"
    return line


def _narrowing(spec: BuildSpec, secrets: BuildSecrets) -> str:
    """The steps and services whose `secrets:` lets them have only some of the build's, and which."""
    only = [
        f"{kind} {entry.name} {', '.join(narrowed(secrets.names, entry.secrets)) or 'none'}"
        for kind, entries in (("step", spec.steps), ("service", spec.services))
        for entry in entries
        if entry.secrets is not None
    ]
    return f" (only: {'; '.join(only)})" if only else ""


def _network_settings(network: str | None) -> str:
    if network is None:
        return "network none"
    return f"network {network} (outside only: not this host, not the peers)"


def dockerfile_settings(
    limits: BuildConfig, tag: str, timeout_s: float, environment: dict[str, str], secrets: BuildSecrets,
) -> list[str]:
    """The settings of a Dockerfile build: `docker build` first, then the image run like a spec build."""
    return [
        f"docker build: network none, memory {limits.memory_mb} MB, timeout {timeout_s:g} s, "
        "Docker's defaults otherwise",
        f"run: image {tag}, user {limits.user}, timeout {timeout_s:g} s, network none, "
        f"root file system writable (the image's own, discarded), no /workspace tmpfs, "
        + _resource_settings(limits, with_workspace=False),
        f"run: {_environment_settings(environment, secrets)}",
    ]


def _resource_settings(limits: BuildConfig, *, with_workspace: bool, with_cache: bool = False) -> str:
    budget = memory_budget(limits, with_workspace=with_workspace, with_cache=with_cache)
    workspace = f"workspace {limits.workspace_mb} MB, " if with_workspace else ""
    return (
        f"memory {budget.breakdown()}, cpus {limits.cpus:g}, pids {limits.pids_limit}, "
        f"{workspace}tmp {limits.tmp_mb} MB, home {limits.home_mb} MB at {HOME_DIR}, "
        f"output cap {limits.output_cap_bytes} bytes"
    )
