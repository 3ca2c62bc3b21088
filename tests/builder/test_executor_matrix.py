"""A spec's `matrix:` on the real Docker engine: the build that names no combination runs no
container and lists the combinations; a combination's build has its axes as variables and
in its image; a combination the spec does not declare is an error."""

import pytest
import yaml

from tests.builder.executor_helpers import GitRepo, build, log_text

pytestmark = pytest.mark.docker

# The busybox image is made FROM scratch: it has no /etc/os-release, Debian's has.
MATRIX_SPEC = yaml.safe_dump({
    "image": "pbft-ci/${IMAGE}",
    "matrix": {"include": [
        {"IMAGE": "busybox:latest", "FLAVOUR": "small"},
        {"IMAGE": "debian-python:bookworm", "FLAVOUR": "debian"},
        {"IMAGE": "busybox:latest", "FLAVOUR": "failing"},
    ]},
    "commands": [
        'echo "flavour=$FLAVOUR image=$IMAGE"',
        "if [ -f /etc/os-release ]; then echo has-os-release; else echo no-os-release; fi",
        'test "$FLAVOUR" != failing',
    ],
}, sort_keys=False)
COMBINATIONS = (
    (("IMAGE", "busybox:latest"), ("FLAVOUR", "small")),
    (("IMAGE", "debian-python:bookworm"), ("FLAVOUR", "debian")),
    (("IMAGE", "busybox:latest"), ("FLAVOUR", "failing")),
)


async def test_a_matrix_spec_lists_its_combinations_and_runs_no_container(
    make_executor, git_repo, build_ids, container_roles
):
    head = git_repo.commit("master", {".pbft-ci.yml": MATRIX_SPEC})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code, result.commit) == ("matrix", None, head), log_text(result)
    assert result.combinations == COMBINATIONS
    assert result.reason == "the spec's matrix expands into 3 builds"
    assert result.spec is None and result.steps == ()
    assert container_roles == {}


async def test_each_combination_builds_with_its_axes_in_its_environment_and_its_image(
    make_executor, git_repo, build_ids, python_image
):
    head = git_repo.commit("master", {".pbft-ci.yml": MATRIX_SPEC})
    executor = make_executor()

    small, debian, failing = [
        await build(executor, git_repo, build_ids, commit=head, combination=combination)
        for combination in COMBINATIONS
    ]

    assert (small.status, small.exit_code, small.commit) == ("success", 0, head), log_text(small)
    assert "flavour=small image=busybox:latest\nno-os-release" in log_text(small)
    assert small.spec.image == "pbft-ci/busybox:latest" and small.combinations == ()
    assert (debian.status, debian.exit_code) == ("success", 0), log_text(debian)
    assert "flavour=debian image=debian-python:bookworm\nhas-os-release" in log_text(debian)
    assert debian.spec.image == python_image
    assert (failing.status, failing.exit_code) == ("failure", 1), log_text(failing)
    # One spec file, so each combination names the same file by the same digest.
    assert small.spec.sha256 == debian.spec.sha256 == failing.spec.sha256


async def test_a_combination_the_spec_does_not_declare_is_an_error_and_runs_nothing(
    make_executor, git_repo, build_ids, container_roles, tmp_path
):
    head = git_repo.commit("master", {".pbft-ci.yml": MATRIX_SPEC})
    executor = make_executor()

    undeclared = await build(
        executor, git_repo, build_ids, commit=head, combination=(("IMAGE", "busybox:latest"), ("FLAVOUR", "root")),
    )
    no_matrix_commit = git_repo.commit("master", {".pbft-ci.yml": "commands: [env]\n"})
    no_matrix = await build(executor, git_repo, build_ids, commit=no_matrix_commit, combination=COMBINATIONS[0])
    malformed = await build(executor, git_repo, build_ids, commit=head, combination=(("IMAGE", "x; id"),))
    dockerfile_repo = GitRepo(tmp_path / "dockerfile-only")
    dockerfile_only = dockerfile_repo.commit("master", {"Dockerfile": "FROM scratch\n"})
    no_spec = await build(executor, dockerfile_repo, build_ids, repository_name="dockerfile-only",
                          commit=dockerfile_only, combination=COMBINATIONS[0])

    assert (undeclared.status, undeclared.commit) == ("error", head)
    assert undeclared.reason == ".pbft-ci.yml: matrix: declares no combination IMAGE=busybox:latest,FLAVOUR=root"
    assert no_matrix.status == "error" and "the spec has no matrix" in no_matrix.reason
    assert malformed.status == "error" and malformed.reason.startswith("invalid request: a matrix combination")
    assert (no_spec.status, no_spec.reason) == ("error", "the build names a matrix combination; the commit has no .pbft-ci.yml")
    assert container_roles == {}
