"""A build's plan (builder/plan/buildplan.py), compiled (builder/plan/compilebuild.py) without Docker, git or files: a build order,
what its checkout holds and the network's limits in, one frozen value out that says everything
the run does: its containers, their images, scripts and variables, which secrets each gets by
name, its limits, caches, artifacts and log settings, or why nothing runs."""

import dataclasses
import hashlib

import pytest

from builder.plan.buildplan import (
    BuildPlan,
    DockerfileBuild,
    PipelineBuild,
    ScriptBuild,
    Sources,
    StepPlan,
)
from builder.plan.compile import ROOT_REFUSED, Expanded, Refused, Skipped
from builder.plan.compilebuild import compile_build
from tests.builder.plans import COMMIT, COMMITTED_S, LIMITS, SECRETS, checkout, compiled, order

PIPELINE = {
    "environment": {"P": "1", "DEPLOY_TOKEN": "shadowed"},
    "services": [
        {"name": "db", "image": "postgres-image", "environment": {"S": "s"}, "secrets": ["DB_PASSWORD"],
         "ready": {"command": "pg_isready", "timeout_s": 20}},
        {"name": "cache", "image": "redis-image", "commands": ["redis-server --port 7000"]},
    ],
    "steps": [
        {"name": "lint", "commands": ["ruff check .", "echo $P"], "environment": {"A": "a"}, "secrets": []},
        {"name": "unit", "image": "python-image", "commands": ["pytest"], "depends_on": ["lint"]},
        {"name": "docs", "commands": ["mkdocs build"], "depends_on": ["lint"], "failure": "ignore", "retry": 2,
         "timeout_s": 90},
        {"name": "deploy", "commands": ["deploy"], "depends_on": ["unit", "docs"], "secrets": ["DEPLOY_TOKEN"],
         "when": {"event": ["tag"]}},
        {"name": "report", "commands": ["report"], "depends_on": ["deploy"], "when": {"status": ["failure"]}},
    ],
    "artifacts": ["dist/*.whl"],
    "cache": {"paths": [".tox"]},
}


def test_a_pipeline_with_services_and_steps_that_run_at_once_compiles_to_its_whole_run():
    plan = compiled(PIPELINE, build_order=order(settings=SECRETS), node_environment={"EXTRA": "x"})

    assert isinstance(plan, BuildPlan) and plan.commit == COMMIT
    build = plan.build
    assert isinstance(build, PipelineBuild)
    assert (build.image, build.user, build.timeout_s, build.networked) == (LIMITS.image, LIMITS.user, 300.0, False)
    assert build.ran.path == ".pbft-ci.yml" and build.ran.image == LIMITS.image
    # The build's variables: the commit's time, the CI_ ones, the node's, then the spec's.
    assert list(build.environment)[:4] == ["SOURCE_DATE_EPOCH", "TZ", "LC_ALL", "LANG"]
    assert build.environment["SOURCE_DATE_EPOCH"] == str(COMMITTED_S)
    assert build.environment["CI_COMMIT_SHA"] == COMMIT and build.environment["EXTRA"] == "x"
    assert (build.environment["P"], build.environment["DEPLOY_TOKEN"]) == ("1", "shadowed")
    # Secrets by name, never by value: a push gets those that name push, in the configuration's order.
    assert build.secrets.names == ("DEPLOY_TOKEN", "DB_PASSWORD") and build.secrets.withheld == ("PR_ONLY",)
    # In the run order; unit and docs may run at once, so two steps and two services share the limits.
    assert build.graph.names == ("lint", "unit", "docs", "deploy", "report") and build.graph.width == 2
    assert [step.name for step in build.steps] == list(build.graph.names)
    assert (build.limits.memory_mb, build.limits.cpus, build.limits.pids_limit) == (64, 0.25, 32)
    assert build.network_limits == LIMITS
    assert build.budget == "1984 MB (64 processes + 1024 /workspace + 64 /tmp + 64 /dev/shm + 256 /home/build + 512 /pbft-cache/out)"
    assert (build.cache.paths, build.artifacts, build.artifacts_max_bytes) == ((".tox",), ("dist/*.whl",), 64 << 20)

    lint, unit, docs, deploy, report = build.steps
    assert lint == StepPlan(
        name="lint", image=LIMITS.image, script="ruff check .\necho $P",
        environment={**build.environment, "A": "a", "CI_STEP_NAME": "lint"}, secrets=(), status=("success",),
        ignore_failure=False, retry=0, skip_reason=None,
    )
    # A step's script never exports a variable one of its secrets sets: the gate sets it.
    assert unit.image == "python-image" and unit.secrets == ("DEPLOY_TOKEN", "DB_PASSWORD")
    assert "DEPLOY_TOKEN" not in unit.environment and unit.environment["CI_STEP_NAME"] == "unit"
    assert (docs.ignore_failure, docs.retry, docs.timeout_s) == (True, 2, 90.0)
    assert deploy.secrets == ("DEPLOY_TOKEN",) and deploy.skip_reason == "when: event push is not tag"
    assert report.status == ("failure",) and report.skip_reason is None

    db, cache = build.services
    assert (db.name, db.image, db.script, db.secrets) == ("db", "postgres-image", None, ("DB_PASSWORD",))
    assert db.environment == {**build.environment, "S": "s"}  # the secrets' values go on top as it runs
    assert (db.ready_command, db.ready_timeout_s) == ("pg_isready", 20.0)
    assert (cache.script, cache.secrets, cache.ready_command) == ("redis-server --port 7000", ("DEPLOY_TOKEN", "DB_PASSWORD"), None)

    settings = build.settings(None)
    assert settings[0] == f"image {LIMITS.image}, user {LIMITS.user}, timeout 300 s, network none, root file system read-only"
    assert settings[2].endswith("; secrets DEPLOY_TOKEN, DB_PASSWORD (PR_ONLY not given to push builds) "
                                "(only: step lint none; step deploy DEPLOY_TOKEN; service db DB_PASSWORD)")
    assert "DEPLOY_TOKEN=" not in settings[2] and "P=1" in settings[2]
    assert settings[3].startswith("cache .tox: at most 512 MB") and settings[4].startswith("services db (postgres-image), cache")
    assert build.settings("pbft-ci-net-1")[0].endswith(
        "network pbft-ci-net-1 (outside only: not this host, not the peers), root file system read-only")


def test_the_same_inputs_compile_to_the_same_frozen_plan():
    first, second = (compiled(PIPELINE, build_order=order(settings=SECRETS)) for _ in range(2))
    assert first == second
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.build.timeout_s = 1.0  # type: ignore[misc]


def test_a_pull_request_gets_the_secrets_that_name_its_event_and_a_one_script_spec_with_services_is_one_step():
    spec = {"services": [{"name": "db", "image": "db-image"}], "commands": ["make test"], "environment": {"PR_ONLY": "x"}}
    build = compiled(spec, build_order=order(settings=SECRETS), event="pull_request", pull_ref="refs/pull/7/head").build

    assert isinstance(build, PipelineBuild)
    assert build.secrets.names == ("DB_PASSWORD", "PR_ONLY") and build.secrets.withheld == ("DEPLOY_TOKEN",)
    (step,) = build.steps
    assert (step.name, step.script, step.secrets) == ("build", "make test", ("DB_PASSWORD", "PR_ONLY"))
    assert "PR_ONLY" not in step.environment and step.environment["CI_COMMIT_PULL_REQUEST"] == "7"
    assert build.graph.width == 1 and build.limits.memory_mb == 128  # the step and the service


def test_a_one_script_spec_runs_in_one_container_with_the_networks_limits():
    spec = {"commands": ["make", "make check"], "environment": {"DEPLOY_TOKEN": "x", "B": "2"}, "timeout_s": 900}
    build = compiled(spec, build_order=order(settings=dataclasses.replace(SECRETS, networked=True))).build

    assert isinstance(build, ScriptBuild)
    assert (build.script, build.timeout_s, build.limits, build.networked) == ("make\nmake check", 300.0, LIMITS, True)
    assert build.cache is None and build.artifacts == ()
    assert build.budget == "1664 MB (256 processes + 1024 /workspace + 64 /tmp + 64 /dev/shm + 256 /home/build)"
    assert build.environment["DEPLOY_TOKEN"] == "x" and "DEPLOY_TOKEN" not in build.container_environment
    assert build.container_environment["B"] == "2"
    assert "(the spec's 900 s capped to the network's limit)" in build.settings(None)[0]


def test_caches_off_on_the_network_are_left_out_of_the_plan():
    spec = {"commands": ["true"], "cache": {"paths": [".c"]}}
    build = compiled(spec, limits=dataclasses.replace(LIMITS, cache_mb=0)).build
    assert build.cache is None and "/pbft-cache/out" not in build.budget
    assert build.settings(None)[3] == "cache .c: off on this node (build.cache_mb is 0)"


def test_a_matrix_expands_unless_the_order_names_one_of_its_combinations():
    spec = {"matrix": {"PY": ["3.11", "3.12"]}, "image": "python:${PY}", "commands": ["pytest"]}
    assert compiled(spec).build == Expanded(((("PY", "3.11"),), (("PY", "3.12"),)))

    build = compiled(spec, build_order=order(combination=(("PY", "3.12"),))).build
    assert isinstance(build, ScriptBuild)
    assert (build.image, build.environment["PY"]) == ("python:3.12", "3.12")


@pytest.mark.parametrize("message, spec, skipped", [
    ("fix [skip ci]", {"commands": ["true"]}, Skipped("[skip ci] in the commit message")),
    ("change", {"when": {"branch": ["release"]}, "commands": ["true"]}, "when: branch main does not match release"),
])
def test_a_skipped_build_runs_nothing(message, spec, skipped):
    build = compiled(spec, message=message).build
    assert isinstance(build, Skipped)
    if isinstance(skipped, Skipped):  # decided before the spec is read: no spec ran
        assert build == skipped
    else:
        assert build.reason == skipped and build.ran.path == ".pbft-ci.yml"


@pytest.mark.parametrize("sources, build_order, reason", [
    (Sources(spec_is_link=True), order(), ".pbft-ci.yml must be a regular file"),
    (Sources(spec=b"user: root\ncommands: [id]\n"), order(), ROOT_REFUSED),
    (Sources(spec=b"commands: []\n"), order(), ".pbft-ci.yml: commands: must be a non-empty list of strings"),
    (Sources(), order(combination=(("PY", "3.12"),)), "the build names a matrix combination; the commit has no .pbft-ci.yml"),
    (Sources(dockerfile=b"FROM x\n"), order(combination=(("PY", "3.12"),)),
     "the build names a matrix combination; the commit has no .pbft-ci.yml"),
    (Sources(), order(), "no .pbft-ci.yml or Dockerfile"),
])
def test_a_refused_build_says_why_the_same_on_every_node(sources, build_order, reason):
    assert compile_build(build_order, checkout(sources), LIMITS, {}).build == Refused(reason)


def test_a_dockerfile_without_a_spec_is_built_and_run_with_the_networks_limits():
    content = b"FROM pbft-ci/busybox:latest\nCMD [\"true\"]\n"
    plan = compile_build(order(settings=SECRETS), checkout(Sources(dockerfile=content)), LIMITS, {"EXTRA": "x"})

    build = plan.build
    assert isinstance(build, DockerfileBuild)
    assert build.tag == f"pbft-ci-build/my-repo:{COMMIT[:12]}"
    assert (build.ran.path, build.ran.sha256, build.ran.image) == (
        "Dockerfile", hashlib.sha256(content).hexdigest(), build.tag)
    assert (build.timeout_s, build.limits, build.secrets.names) == (300.0, LIMITS, ("DEPLOY_TOKEN", "DB_PASSWORD"))
    assert build.environment["EXTRA"] == "x" and build.environment["CI_COMMIT_SHA"] == COMMIT
    assert build.budget == "640 MB (256 processes + 64 /tmp + 64 /dev/shm + 256 /home/build)"
    assert build.settings[1].startswith(f"run: image {build.tag}, user {LIMITS.user}, timeout 300 s, network none")
    assert build.settings[2].endswith("; secrets DEPLOY_TOKEN, DB_PASSWORD (PR_ONLY not given to push builds)")
