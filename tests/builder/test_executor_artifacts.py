"""Artifacts and the reproducible environment against a real git repository and the real Docker engine.

Two runs of one build stand for two honest nodes: each has its own executor,
data directory and container, as nodes do.
"""

import json
import re
from datetime import datetime

import pytest

from builder.plan.compile import ARTIFACTS_OFF
from pbft.attestation import manifest_digest
from tests.builder.executor_helpers import _GIT_ENV, build, log_text, outcome, spec

pytestmark = pytest.mark.docker

# The fixtures' commits are all made at this committer time.
COMMIT_TIME_S = int(datetime.fromisoformat(_GIT_ENV["GIT_COMMITTER_DATE"].replace("Z", "+00:00")).timestamp())

# A tar whose bytes depend on file times: deterministic only because the build
# sets them from SOURCE_DATE_EPOCH, as reproducible builds do.
DETERMINISTIC = [
    "mkdir -p dist/pkg",
    'echo "built $(cat version)" > dist/pkg/app.txt',
    'touch -d "@$SOURCE_DATE_EPOCH" dist/pkg/app.txt dist/pkg',
    "tar -cf dist/app.tar -C dist pkg",
    "rm -r dist/pkg",
    'date > dist/built-at.txt',  # TZ and SOURCE_DATE_EPOCH do not fix the clock: never an artifact
]


def project(*commands: str, artifacts=("dist/*.tar",), **options) -> dict:
    return {".pbft-ci.yml": spec(*commands, artifacts=list(artifacts), **options), "version": "1.0\n"}


def stored_builds(tmp_path, repository="example") -> list[str]:
    directory = tmp_path / "data" / "artifacts" / repository
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


async def test_a_deterministic_artifact_gets_one_digest_on_every_node(
    make_executor, git_repo, build_ids, tmp_path
):
    head = git_repo.commit("master", project(*DETERMINISTIC))

    first = await build(make_executor(), git_repo, build_ids)
    second = await build(make_executor(data_dir="node-b"), git_repo, build_ids)

    assert first.agreed() == second.agreed(), log_text(first)
    assert (first.status, first.exit_code, first.commit) == ("success", 0, head), log_text(first)
    assert [path for path, _ in first.artifact_files] == ["dist/app.tar"]
    assert first.artifact_files == second.artifact_files
    # What nodes agree on is the manifest's digest, and it is that of these files.
    assert first.agreed()["artifacts"] == manifest_digest(first.artifact_digests())
    # What the node keeps is what it hashed, and the manifest beside it says so.
    (build_dir,) = (tmp_path / "data" / "artifacts" / "example").iterdir()
    manifest = json.loads((build_dir / "manifest.json").read_text())
    assert manifest["artifacts"] == first.artifact_digests()
    assert manifest["commit"] == head
    data = (build_dir / "files" / "dist" / "app.tar").read_bytes()
    assert manifest["sizes"] == {"dist/app.tar": len(data)}
    assert b"built 1.0" in data
    text = log_text(first)
    digest = first.artifact_digests()["dist/app.tar"]
    assert f"== artifact dist/app.tar {digest} ({len(data)} bytes)" in text
    assert "== artifacts stored: 1 files" in text
    assert "== settings artifacts dist/*.tar: regular files taken after the build succeeds, at most 64 MB" in text
    # Nothing is left where the files were copied to before they were stored.
    assert not list((tmp_path / "data" / "artifacts").glob(".incoming-*"))


@pytest.mark.parametrize(
    "command",
    [
        "head -c 32 /dev/urandom > dist/noise.bin",
        # busybox's date has no %N; /proc/uptime moves every 10 ms.
        "{ date +%s; cat /proc/uptime; } > dist/stamp.bin",
    ],
    ids=["random-bytes", "timestamp"],
)
async def test_an_artifact_with_random_bytes_or_a_timestamp_differs_between_nodes(
    make_executor, git_repo, build_ids, tmp_path, command
):
    git_repo.commit("master", project("mkdir -p dist", command, artifacts=["dist/*.bin"]))

    first = await build(make_executor(), git_repo, build_ids)
    second = await build(make_executor(data_dir="node-b"), git_repo, build_ids)

    # The status agrees; the bytes do not, so neither do the results, and each node shows its own digest.
    assert (first.status, first.exit_code) == (second.status, second.exit_code) == ("success", 0), log_text(first)
    assert first.agreed() != second.agreed()
    assert first.agreed() | {"artifacts": None} == second.agreed() | {"artifacts": None}
    assert [path for path, _ in first.artifact_files] == [path for path, _ in second.artifact_files]
    assert first.artifact_files != second.artifact_files
    for result in (first, second):
        assert result.agreed()["artifacts"] == manifest_digest(result.artifact_digests())
        (path, digest), = result.artifact_files
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
        assert f"== artifact {path} {digest} " in log_text(result)


async def test_every_build_gets_the_commit_time_a_fixed_zone_and_locale(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        'echo "env SDE=$SOURCE_DATE_EPOCH TZ=$TZ LC_ALL=$LC_ALL LANG=$LANG"',
        'echo "date $(date -d "@$SOURCE_DATE_EPOCH" "+%Y-%m-%d %H:%M %Z")"',
    )})
    executor = make_executor()

    # The second build runs in a container prepared before it came, which
    # cannot have had the commit's time in its environment.
    results = [await build(executor, git_repo, build_ids) for _ in range(2)]

    for result in results:
        text = log_text(result)
        assert result.status == "success", text
        assert f"env SDE={COMMIT_TIME_S} TZ=UTC LC_ALL=C.UTF-8 LANG=C.UTF-8" in text
        assert "date 2024-01-01 00:00 UTC" in text
        assert (
            f"== settings environment SOURCE_DATE_EPOCH={COMMIT_TIME_S}, TZ=UTC, LC_ALL=C.UTF-8, LANG=C.UTF-8 "
            "(SOURCE_DATE_EPOCH is the commit's time), and CI and 12 CI_ variables\n"
        ) in text


async def test_a_dockerfile_build_gets_the_environment_too(make_executor, git_repo, build_ids, docker_client):
    head = git_repo.commit("master", {
        "Dockerfile": 'FROM pbft-ci/busybox:latest\nCMD ["sh", "-c", "echo env $SOURCE_DATE_EPOCH $TZ $LC_ALL"]\n',
    })

    try:
        result = await build(make_executor(), git_repo, build_ids, repository_name="docker-env")
    finally:
        docker_client.images.remove(f"pbft-ci-build/docker-env:{head[:12]}", force=True)

    assert result.status == "success", log_text(result)
    assert f"env {COMMIT_TIME_S} UTC C.UTF-8" in log_text(result)


async def test_a_declared_artifact_the_build_did_not_write_is_an_error(make_executor, git_repo, build_ids, tmp_path):
    head = git_repo.commit("master", project("mkdir -p dist", "echo no tar", artifacts=["dist/*.tar", "dist"]))

    result = await build(make_executor(), git_repo, build_ids)

    assert {**outcome(result), "reason": result.reason} == {
        "status": "error", "exit_code": None, "commit": head,
        "reason": "artifacts[0] 'dist/*.tar' matched no file; artifacts[1] 'dist' matched no file",
    }
    assert result.artifact_files == () and result.artifacts is None
    assert "== artifacts not taken: artifacts[0] 'dist/*.tar' matched no file" in log_text(result)
    assert stored_builds(tmp_path) == []


async def test_a_failed_build_keeps_its_verdict_and_takes_no_artifacts(make_executor, git_repo, build_ids, tmp_path):
    head = git_repo.commit("master", project(*DETERMINISTIC, "exit 3"))

    result = await build(make_executor(), git_repo, build_ids)

    assert {**outcome(result), "reason": result.reason} == {"status": "failure", "exit_code": 3, "commit": head, "reason": ""}
    assert result.artifact_files == () and result.artifacts is None
    assert "== artifacts not taken: the build did not succeed" in log_text(result)
    assert stored_builds(tmp_path) == []
    assert not list((tmp_path / "data" / "artifacts").glob(".incoming-*"))


@pytest.mark.parametrize(
    "commands, artifacts, reason",
    [
        (
            ["mkdir dist", "ln -s /etc/passwd dist/passwd.tar"], ["dist/*.tar"],
            "artifacts: dist/passwd.tar is a symbolic link: only regular files are artifacts, "
            "and links are not followed",
        ),
        (
            ["mkdir -p /tmp/elsewhere", "echo x > /tmp/elsewhere/a.tar", "ln -s /tmp/elsewhere dist"], ["dist/*.tar"],
            "artifacts: dist is a symbolic link: only regular files are artifacts, and links are not followed",
        ),
        (["mkdir dist", "mkfifo dist/pipe"], ["dist"], "artifacts: dist/pipe is a fifo: only regular files"),
        (
            # Archiving all of /workspace (the pattern starts with a wildcard), the engine meets
            # "a-secret" before "dist/c": the stream has its bytes under that name only.
            ["mkdir dist", "echo x > dist/a", "ln dist/a dist/b", "echo secret > a-secret", "ln a-secret dist/c"],
            ["d*/*"], "artifacts: dist/c is a hard link to a-secret, which is not an artifact",
        ),
    ],
    ids=["link", "linked-directory", "fifo", "hard-link-out"],
)
async def test_what_is_not_a_regular_file_of_the_workspace_is_refused(
    make_executor, git_repo, build_ids, tmp_path, commands, artifacts, reason
):
    git_repo.commit("master", project(*commands, artifacts=artifacts))

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "error", log_text(result)
    assert result.reason.startswith(reason), result.reason
    assert stored_builds(tmp_path) == []


async def test_artifacts_over_the_size_limit_are_an_error(make_executor, git_repo, build_ids):
    git_repo.commit("master", project("mkdir dist", "head -c 1100000 /dev/zero > dist/big.tar"))

    result = await build(make_executor(artifacts_mb=1), git_repo, build_ids)

    assert (result.status, result.reason) == ("error", "artifacts: more than 1 MB in all"), log_text(result)


async def test_a_network_without_artifacts_refuses_a_spec_that_declares_them(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", project(*DETERMINISTIC))

    result = await build(make_executor(artifacts_mb=0), git_repo, build_ids)

    assert result.to_dict() == {"status": "error", "exit_code": None, "commit": head, "reason": ARTIFACTS_OFF}


async def test_the_newest_builds_artifacts_are_kept_per_repository(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor(artifacts_keep=2)
    git_repo.commit("master", project(*DETERMINISTIC))

    results = [await build(executor, git_repo, build_ids) for _ in range(3)]
    other = await build(executor, git_repo, build_ids, repository_name="other")

    assert all(result.status == "success" for result in [*results, other])
    ids = [re.search(r"build (\S+) node", log_text(result)).group(1) for result in results]
    assert stored_builds(tmp_path) == sorted(ids[1:])
    assert len(stored_builds(tmp_path, "other")) == 1
    assert "those of the newest 2 builds of 'example' are kept on this node" in log_text(results[-1])


async def test_a_build_with_a_cache_and_artifacts_has_one_holder(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", project(
        "mkdir -p ~/.cache/x", "echo cached > ~/.cache/x/f", *DETERMINISTIC, cache={"paths": ["~/.cache/x"]},
    ))

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert re.search(r"== cache saved key [0-9a-f]{12}", text), text
    assert [path for path, _ in result.artifact_files] == ["dist/app.tar"]
    (roles,) = [roles for build_id, roles in container_roles.items() if build_id]
    assert roles == ["build", "holder"]
