"""The executor against a real git repository and the real Docker engine."""

import asyncio
import hashlib
import concurrent.futures
import contextlib
import logging
import re
import shutil
import time

import docker.errors
import pytest

from builder.engine.images import EVERY_ENGINE_NEEDS_IT
from builder.plan.nesting import MAX_NESTING
from builder.plan.spec import parse_build_spec
from builder import BuildOrder, BuildResult
from builder.engine.gate import GATE_COMMAND, SCRIPT_END, gate_input
from pbft.build import Spec
from shared.config_build import BuildConfig
from tests.builder.executor_helpers import Listener, build, host_address, live_log, log_text, outcome, spec

pytestmark = pytest.mark.docker

PASSING = {".pbft-ci.yml": spec("sh test.sh"), "test.sh": "echo tests passed\n"}


async def test_passing_build_is_a_success_of_the_branch_head(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", PASSING)

    result = await build(make_executor(), git_repo, build_ids)

    assert outcome(result) == {"status": "success", "exit_code": 0, "commit": head}
    # What ran, as every node reports it and the verdict's attestation names it.
    spec_sha256 = hashlib.sha256(PASSING[".pbft-ci.yml"].encode()).hexdigest()
    assert result.spec == Spec(".pbft-ci.yml", spec_sha256, "pbft-ci/busybox:latest")
    assert result.reason == ""
    text = log_text(result)
    assert "tests passed" in text
    assert "== status success exit_code 0 duration_ms" in text


async def test_failing_command_is_a_failure_with_its_exit_code(make_executor, git_repo, build_ids):
    git_repo.commit("master", PASSING)
    head = git_repo.commit("feature", {"test.sh": "echo broken\nexit 3\n"})

    result = await build(make_executor(), git_repo, build_ids, branch="feature")

    assert outcome(result) == {"status": "failure", "exit_code": 3, "commit": head}


async def test_later_commands_do_not_run_after_a_failing_one(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("false", "echo not reached")})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("failure", 1)
    assert "not reached" not in log_text(result)


async def test_nonexistent_branch_is_an_error(make_executor, git_repo, build_ids):
    git_repo.commit("master", PASSING)

    result = await build(make_executor(), git_repo, build_ids, branch="nope")

    assert result.to_dict() == {
        "status": "error", "exit_code": None, "commit": None, "reason": "branch not found: nope",
    }
    assert "branch not found: nope" in log_text(result)


@pytest.mark.parametrize("branch", ["-x", "a..b", "--upload-pack=touch /tmp/pwned", "a b", "HEAD"])
async def test_bad_branch_name_is_an_error_without_touching_git(make_executor, tmp_path, build_ids, branch):
    executor = make_executor()

    result = await executor.run(BuildOrder(
        build_id=build_ids(), repository_name="example",
        repository_url=str(tmp_path / "no-such-repository"), branch=branch,
    ))

    assert result.status == "error"
    assert result.reason.startswith("invalid request: branch name")
    assert not (tmp_path / "data" / "mirrors").exists()


async def test_workspace_holds_the_exact_bytes_of_the_commit(make_executor, git_repo, build_ids):
    # Export attributes in the repository must not hide or rewrite files:
    # "$Format:%ar$" would differ between nodes.
    git_repo.commit("master", {
        ".gitattributes": "test.sh export-ignore\nversion export-subst\n",
        ".pbft-ci.yml": spec("sh test.sh", "cat version"),
        "test.sh": "echo test ran\n",
        "version": "$Format:%ar$\n",
    })

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "success"
    assert "test ran\n$Format:%ar$" in log_text(result)


async def test_mirror_follows_new_commits(make_executor, git_repo, build_ids):
    executor = make_executor()
    git_repo.commit("master", PASSING)
    await build(executor, git_repo, build_ids)
    newer = git_repo.commit("master", {"test.sh": "exit 4\n"})

    result = await build(executor, git_repo, build_ids)

    assert outcome(result) == {"status": "failure", "exit_code": 4, "commit": newer}


async def test_pinned_commit_is_built_instead_of_the_branch_head(make_executor, git_repo, build_ids):
    old = git_repo.commit("master", {".pbft-ci.yml": spec("sh test.sh"), "test.sh": "exit 3\n"})
    git_repo.commit("master", {"test.sh": "exit 0\n"})

    result = await build(make_executor(), git_repo, build_ids, commit=old)

    assert outcome(result) == {"status": "failure", "exit_code": 3, "commit": old}


async def test_pinned_commit_behind_the_branch_head_is_built(make_executor, git_repo, build_ids):
    older = git_repo.commit("master", PASSING)
    git_repo.commit("master", {"test.sh": "exit 5\n"})

    result = await build(make_executor(), git_repo, build_ids, commit=older)

    assert outcome(result) == {"status": "success", "exit_code": 0, "commit": older}


async def test_pinned_commit_must_be_on_the_named_branch(make_executor, git_repo, build_ids):
    # Otherwise anyone could make master look broken with a commit of their own branch.
    git_repo.commit("master", PASSING)
    feature_only = git_repo.commit("feature", {"test.sh": "exit 3\n"})

    result = await build(make_executor(), git_repo, build_ids, branch="master", commit=feature_only)

    assert result.to_dict() == {
        "status": "error", "exit_code": None, "commit": None,
        "reason": f"commit {feature_only} is not on branch 'master'",
    }
    assert "exit 3" not in log_text(result)  # nothing of it was run


async def test_pinned_commit_on_a_missing_branch_is_an_error(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", PASSING)

    result = await build(make_executor(), git_repo, build_ids, branch="gone", commit=head)

    assert (result.status, result.commit, result.reason) == ("error", None, "branch not found: gone")


@pytest.mark.parametrize("annotated", [False, True])
async def test_tag_push_builds_the_commit_the_tag_names(make_executor, git_repo, build_ids, annotated):
    # Forge tag pushes carry the tag's name in the branch field (client.forges).
    tagged = git_repo.commit("master", PASSING)
    newer = git_repo.commit("master", {"test.sh": "exit 5\n"})
    git_repo.tag("v1.0", tagged, annotated=annotated)

    result = await build(make_executor(), git_repo, build_ids, branch="v1.0", commit=tagged)
    assert outcome(result) == {"status": "success", "exit_code": 0, "commit": tagged}

    result = await build(make_executor(), git_repo, build_ids, branch="v1.0", commit=newer)
    assert (result.status, result.reason) == ("error", f"commit {newer} is not tag 'v1.0'")


@pytest.mark.parametrize(
    "commit, reason",
    [
        ("0" * 40, "commit not found: " + "0" * 40),
        ("abc123", "invalid request: commit must be 40 or 64 lowercase hex digits"),
        ("A" * 40, "invalid request: commit must be 40 or 64 lowercase hex digits"),
    ],
)
async def test_unknown_or_malformed_commit_is_an_error(make_executor, git_repo, build_ids, commit, reason):
    git_repo.commit("master", PASSING)

    result = await build(make_executor(), git_repo, build_ids, commit=commit)

    assert (result.status, result.exit_code, result.reason) == ("error", None, reason)


@pytest.mark.parametrize("limit_s, spec_timeout_s", [(300.0, 1), (1.0, 60)])
async def test_overrunning_build_is_killed_at_the_deadline(make_executor, git_repo, build_ids, limit_s, spec_timeout_s):
    head = git_repo.commit("master", {".pbft-ci.yml": spec("echo started", "sleep 30", timeout_s=spec_timeout_s)})

    started = time.monotonic()
    result = await build(make_executor(timeout_s=limit_s), git_repo, build_ids)

    assert time.monotonic() - started < 10
    assert {**outcome(result), "reason": result.reason} == {
        "status": "timeout", "exit_code": None, "commit": head, "reason": "build exceeded 1 s",
    }
    assert "started" in log_text(result)


async def test_a_spec_build_runs_in_one_container(make_executor, git_repo, build_ids, container_roles):
    git_repo.commit("master", PASSING)
    build_id = build_ids()

    result = await make_executor().run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master"
    ))

    assert result.status == "success", log_text(result)
    assert "tests passed" in log_text(result)
    assert container_roles[build_id] == ["build"]


async def test_the_result_does_not_wait_for_the_containers_removal(
    make_executor, git_repo, build_ids, docker_client
):
    git_repo.commit("master", PASSING)
    build_id = build_ids()
    executor = make_executor()
    held: list = []
    # The removal the executor hands on after the build, held here instead of run.
    executor.engine._janitor.submit = lambda removal: held.append(removal) or concurrent.futures.Future()

    result = await executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master"
    ))

    assert result.status == "success", log_text(result)
    label = {"label": f"pbft-ci.build={build_id}"}
    assert len(docker_client.containers.list(all=True, filters=label)) == 1, "the result came before the removal"
    assert len(held) == 1
    held[0]()
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.volumes.list(filters=label) == []


def run_at_gate(docker_client, image, build_id, command, stdin_bytes: bytes) -> tuple[int, bytes]:
    """Run `command` with stdin attached as run_container does, write `stdin_bytes`, close stdin:
    the exit code and the output."""
    container = docker_client.containers.create(
        image, command, labels={"pbft-ci.build": build_id}, stdin_open=True, detach=False, network_mode="none",
    )
    try:
        stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
        output = container.attach(stdout=True, stderr=True, stream=True)
        container.start()
        raw = stdin._sock
        raw.sendall(stdin_bytes)
        stdin.close()
        raw.close()
        return container.wait(timeout=10)["StatusCode"], b"".join(output)
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("script", [
    "echo first\nfalse\necho not reached",
    "echo before; exit 3",
    "echo no newline at the end",
    "echo trailing newlines\n\n\n",
    "echo $0 $# \"$*\"; printf 'kept\\n\\n'",
    "cat; echo stdin ended",
    "echo 'unterminated",
    "no-such-command",
    "cat <<EOF\nunterminated here-document",
])
def test_the_gate_runs_the_script_exactly_as_sh_e_c_does(docker_client, default_image, build_ids, script):
    build_id = build_ids()

    direct = run_at_gate(docker_client, default_image, build_id, ["/bin/sh", "-e", "-c", script], b"")
    gated = run_at_gate(docker_client, default_image, build_id, GATE_COMMAND, gate_input(script).encode())

    assert gated == direct


@pytest.mark.parametrize("written", [b"", b"echo the build ran\n", (SCRIPT_END[:-3]).encode(),
                                     ("echo the build ran" + SCRIPT_END[:-1]).encode(),
                                     ("echo the build ran" + SCRIPT_END + "\n").encode(),  # no secrets' line
                                     gate_input("echo the build ran")[:-len(SCRIPT_END) - 1].encode()])
def test_the_gate_runs_nothing_when_stdin_closes_before_the_scripts_end(
    docker_client, default_image, build_ids, written
):
    # A node that died while writing the script leaves it cut short.
    exit_code, output = run_at_gate(docker_client, default_image, build_ids(), GATE_COMMAND, written)

    assert (exit_code, output) == (1, b"")


async def test_a_build_reading_stdin_finds_it_at_end_of_file(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("cat", "echo stdin ended", timeout_s=20)})

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "success", log_text(result)
    assert "stdin ended" in log_text(result)


async def test_the_node_log_gives_how_long_the_build_commands_ran(make_executor, git_repo, build_ids, caplog):
    caplog.set_level(logging.INFO, logger="builder.executor")
    git_repo.commit("master", {".pbft-ci.yml": spec("sleep 1")})
    executor = make_executor()

    built = await build(executor, git_repo, build_ids)
    unbuilt = await build(executor, git_repo, build_ids, branch="nope")

    assert (built.status, unbuilt.status) == ("success", "error")
    ends = [record.getMessage() for record in caplog.records if record.getMessage().startswith("build end ")]
    times = [{name: int(value) for name, value in re.findall(r" (\w+_ms)=(-?\d+)", end)} for end in ends]
    assert len(times) == 2, ends
    # Sanity bounds only: the sleep, and the node's own work around it.
    assert 900 <= times[0]["commands_ms"] < times[0]["duration_ms"], ends
    assert times[1]["commands_ms"] == -1, ends


async def test_build_has_no_network(make_executor, git_repo, build_ids):
    listener = Listener()
    url = f"http://{host_address()}:{listener.port}/"
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "ip -o link",
        # Exit 4 if any interface besides loopback exists, 5 when the host
        # cannot be reached, 6 if it can.
        "test \"$(ip -o link | grep -vc ': lo:')\" -eq 0 || exit 4",
        f"wget -q -T 3 -O /dev/null {url} && exit 6 || exit 5",
    )})

    try:
        result = await build(make_executor(), git_repo, build_ids)
    finally:
        listener.socket.close()

    assert (result.status, result.exit_code) == ("failure", 5)
    assert ": lo:" in log_text(result)
    assert listener.connections == 0


async def test_build_runs_unprivileged_in_a_limited_container(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "echo uid=$(id -u)",
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
        "echo built > artefact && cat artefact",
        "echo scratch > /tmp/scratch",
        "touch /root-file 2>/dev/null && echo root-writable || echo root-read-only",
    )})

    result = await build(make_executor(memory_mb=64, pids_limit=50), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "uid=1000" in text
    assert "CapEff:\t0000000000000000" in text
    assert "NoNewPrivs:\t1" in text
    # The processes' share plus room for every tmpfs to be full (defaults:
    # 1024 workspace, 64 /tmp, 64 /dev/shm, 256 home).
    assert str((64 + 1024 + 64 + 64 + 256) * 1024 * 1024) in text
    assert "\n50\n" in text
    assert "built" in text
    assert "root-read-only" in text


async def test_output_is_capped_in_the_log(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("yes 0123456789 | head -c 1000000")})
    cap_bytes = 10_000

    result = await build(make_executor(output_cap_bytes=cap_bytes), git_repo, build_ids)

    assert result.status == "success"
    text = log_text(result)
    assert f"output truncated at {cap_bytes} bytes" in text
    assert len(text.encode()) <= cap_bytes + 1024


async def test_dockerfile_only_repository_is_built_and_run(make_executor, git_repo, build_ids, docker_client):
    head = git_repo.commit("master", {
        "Dockerfile": (
            "FROM pbft-ci/busybox:latest\n"
            "COPY check.sh /workspace/check.sh\n"
            'CMD ["sh", "/workspace/check.sh"]\n'
        ),
        "check.sh": 'echo "from Dockerfile as $(id -u)"\n',
    })

    try:
        result = await build(make_executor(), git_repo, build_ids, repository_name="Docker_Only")
    finally:
        docker_client.images.remove(f"pbft-ci-build/docker-only:{head[:12]}", force=True)

    text = log_text(result)
    assert outcome(result) == {"status": "success", "exit_code": 0, "commit": head}
    assert (result.spec.path, result.spec.image) == ("Dockerfile", f"pbft-ci-build/docker-only:{head[:12]}")
    assert "from Dockerfile as 1000" in text
    lines = text.splitlines()
    assert lines[1] == f"== commit {head}", lines
    assert lines[2].startswith("== settings docker build: network none, memory 256 MB, timeout 300 s"), lines
    assert lines[3].startswith(f"== settings run: image pbft-ci-build/docker-only:{head[:12]}, user 1000:1000,"), lines
    assert "root file system writable" in lines[3] and "home 256 MB" in lines[3], lines


async def test_a_dockerfile_is_built_under_the_memory_limit_of_its_order(
    make_executor, git_repo, build_ids, docker_client
):
    """The order's `build:` (BuildOrder.limits) sets the `docker build`'s memory, not the node's own configuration."""
    marker = build_ids()  # unique: no earlier run's layer cache answers the RUN below
    head = git_repo.commit("master", {
        "Dockerfile": (
            "FROM pbft-ci/busybox:latest\n"
            f"RUN echo {marker} && echo \"limit $(cat /sys/fs/cgroup/memory.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\"\n"
            'CMD ["true"]\n'
        ),
    })

    try:
        result = await build(make_executor(memory_mb=64), git_repo, build_ids, repository_name="Docker_Only",
                             limits=BuildConfig(memory_mb=96))
    finally:
        docker_client.images.remove(f"pbft-ci-build/docker-only:{head[:12]}", force=True)

    text = log_text(result)
    assert result.status == "success", text
    assert "docker build: network none, memory 96 MB" in text
    assert f"limit {96 * 1024 * 1024}" in text, text


@pytest.mark.parametrize(
    "files, reason",
    [
        ({"README": "nothing to build\n"}, "no .pbft-ci.yml or Dockerfile"),
        ({".pbft-ci.yml": "commands: []\n"}, ".pbft-ci.yml: commands: must be a non-empty list of strings"),
        ({".pbft-ci.yml": "commands: [\n"}, None),
        ({".pbft-ci.yml": spec("true", image="pbft-ci/none:1")},
         "image not found: pbft-ci/none:1 (not on this node's engine, and docker.io is not a registry this network "
         "pulls from; build.registries: none). " + EVERY_ENGINE_NEEDS_IT),
    ],
)
async def test_unbuildable_commit_is_an_error_with_a_reason(make_executor, git_repo, build_ids, files, reason):
    head = git_repo.commit("master", files)

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code, result.commit) == ("error", None, head)
    if reason is None:
        assert result.reason.startswith(".pbft-ci.yml: invalid YAML")
    else:
        assert result.reason == reason


async def test_a_spec_nested_too_deeply_is_an_error_with_the_bound_and_no_traceback(
    make_executor, git_repo, build_ids, caplog
):
    # 32,000 brackets fit the size limit; PyYAML's composer recursed past Python's limit on
    # them, and the build ended as "internal executor error" with a traceback in the node log.
    head = git_repo.commit("master", {".pbft-ci.yml": "commands: " + "[" * 32_000 + "\n"})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code, result.commit) == ("error", None, head)
    assert result.reason == f".pbft-ci.yml: nested deeper than {MAX_NESTING} levels (line 1)"
    assert [record.getMessage() for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR] == []
    assert "Traceback" not in log_text(result)


async def test_two_builds_run_concurrently(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("sleep 1")})
    executor = make_executor(max_concurrent=2)
    both = asyncio.gather(build(executor, git_repo, build_ids), build(executor, git_repo, build_ids))
    most_running = 0
    while not both.done():
        most_running = max(most_running, executor.running)
        await asyncio.sleep(0.01)

    results = await both

    assert [result.status for result in results] == ["success", "success"]
    assert most_running == 2
    assert executor.running == 0


async def test_close_kills_the_container_of_a_cancelled_build(make_executor, git_repo, build_ids, docker_client):
    git_repo.commit("master", {".pbft-ci.yml": spec("sleep 60")})
    executor = make_executor()
    build_id = build_ids()
    running = asyncio.create_task(
        executor.run(BuildOrder(build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master"))
    )
    label = {"label": f"pbft-ci.build={build_id}"}
    while not docker_client.containers.list(filters=label):
        await asyncio.sleep(0.05)

    running.cancel()
    executor.close()

    # Listed while the build's thread removes it, a container may be gone when inspected.
    deadline = time.monotonic() + 10
    while docker_client.containers.list(all=True, filters=label, ignore_removed=True) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not docker_client.containers.list(all=True, filters=label, ignore_removed=True)


async def test_invalid_build_id_is_an_error(make_executor, git_repo):
    result = await make_executor().run(BuildOrder(
        build_id="../x", repository_name="example", repository_url=str(git_repo.path), branch="master"
    ))

    assert (result.status, result.reason, result.log_path) == ("error", "invalid build id", "")


def test_the_log_path_is_never_part_of_what_nodes_sign():
    result = BuildResult("failure", 3, "a" * 40, "", log_path="/somewhere")

    assert result.to_dict() == {"status": "failure", "exit_code": 3, "commit": "a" * 40, "reason": ""}


def test_build_spec_may_ask_for_root_and_for_no_other_user():
    assert parse_build_spec(b"commands: [id]\nuser: root\n").user == "root"
    assert parse_build_spec(b"commands: [id]\n").user is None
    with pytest.raises(ValueError, match="user: must be 'root' when given"):
        parse_build_spec(b"commands: [id]\nuser: build\n")


def test_a_restarted_node_sweeps_the_builds_its_killed_process_left(make_executor, docker_client, default_image):
    executor = make_executor()
    mine = {"pbft-ci.data": str(executor._settings.data_dir), "pbft-ci.build": "left-behind"}
    other = {"pbft-ci.data": "/another/network/node-0", "pbft-ci.build": "not-ours"}
    leftovers = [
        docker_client.containers.create(default_image, ["sleep", "60"], labels=mine),
        docker_client.volumes.create(labels=mine),
    ]
    stranger = docker_client.containers.create(default_image, ["sleep", "60"], labels=other)
    try:
        assert executor.sweep_leftovers() == 2
        assert not docker_client.containers.list(all=True, filters={"label": "pbft-ci.build=left-behind"})
        assert not docker_client.volumes.list(filters={"label": "pbft-ci.build=left-behind"})
        assert docker_client.containers.list(all=True, filters={"label": "pbft-ci.build=not-ours"})
    finally:
        stranger.remove(force=True)
        for leftover in leftovers:
            with contextlib.suppress(docker.errors.NotFound):
                leftover.remove(force=True)


async def test_build_has_a_home_a_user_name_and_an_executable_tmp(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "echo name=$(id -un) group=$(id -gn)",
        "echo home=$HOME user=$USER logname=$LOGNAME",
        "mkdir -p ~/.cache/pip && echo hi > ~/.cache/pip/f && cat ~/.cache/pip/f",
        "stat -c 'home-mode=%a owner=%u:%g' ~",
        "printf '#!/bin/sh\\necho ran\\n' > /tmp/s.sh && chmod +x /tmp/s.sh && /tmp/s.sh",
        "grep '^build:' /etc/passwd",
        "grep ':1000:$' /etc/group",
        "echo owned >> /etc/passwd 2>/dev/null && echo passwd-writable || echo passwd-read-only",
        "grep -E ' /etc/(passwd|group) ' /proc/mounts",
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "name=build group=build" in text
    assert "home=/home/build user=build logname=build" in text
    assert "\nhi\n" in text
    assert "home-mode=700 owner=1000:1000" in text
    assert "\nran\n" in text
    assert "build:x:1000:1000:" in text and ":/home/build:/bin/sh" in text
    assert "passwd-read-only" in text
    mounted = [line.split() for line in text.splitlines() if line.split()[1:2] in (["/etc/passwd"], ["/etc/group"])]
    assert len(mounted) == 2 and all(fields[3].startswith("ro,") for fields in mounted), text


@pytest.mark.parametrize("written_mb, status", [(150, "success"), (250, "failure")])
async def test_a_full_workspace_is_out_of_space_rather_than_out_of_memory(
    make_executor, git_repo, build_ids, written_mb, status
):
    git_repo.commit("master", {".pbft-ci.yml": spec(f"dd if=/dev/zero of=/workspace/f bs=1M count={written_mb}")})

    result = await build(make_executor(memory_mb=64, workspace_mb=200), git_repo, build_ids)

    text = log_text(result)
    assert result.status == status, text
    assert "killed: out of memory" not in text
    if status == "failure":
        assert result.exit_code not in (None, 0, 137), text
        assert "No space left on device" in text


async def test_the_log_starts_with_the_effective_settings(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("echo built", timeout_s=900)})

    result = await build(make_executor(timeout_s=300.0, memory_mb=64), git_repo, build_ids)

    lines = log_text(result).splitlines()
    assert result.status == "success", lines
    assert lines[0].startswith("== pbft-ci build ")
    settings = [line for line in lines[2:4] if line.startswith("== settings ")]
    assert len(settings) == 2, lines
    text = "\n".join(settings)
    for shown in (
        "image pbft-ci/busybox:latest",
        "user 1000:1000",
        "timeout 300 s (the spec's 900 s capped to the network's limit)",
        "network none",
        "memory 1472 MB (64 processes + 1024 /workspace + 64 /tmp + 64 /dev/shm + 256 /home/build)",
        "cpus 1",
        "pids 128",
        "workspace 1024 MB",
        "tmp 64 MB",
        "home 256 MB",
    ):
        assert shown in text, text


async def test_a_spec_within_the_limit_keeps_its_timeout_in_the_settings(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("true", timeout_s=30)})

    result = await build(make_executor(timeout_s=300.0), git_repo, build_ids)

    text = log_text(result)
    assert "timeout 30 s," in text and "capped" not in text, text


async def test_a_build_that_never_reached_the_sandbox_says_so_in_its_settings_line(make_executor, git_repo, build_ids):
    git_repo.commit("master", {"README": "nothing to build\n"})

    result = await build(make_executor(), git_repo, build_ids)

    assert log_text(result).splitlines()[2] == "== settings none: the build ended before its sandbox was set up"


async def test_an_image_without_passwd_or_etc_gets_both_entries(
    make_executor, git_repo, build_ids, docker_client, default_image, tmp_path
):
    # The busybox binary the default image was built from, alone in an image.
    context = tmp_path / "bare-image"
    (context / "root" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", context / "root" / "bin" / "busybox")
    (context / "root" / "bin" / "sh").symlink_to("busybox")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY root/ /\n")
    image = f"pbft-ci-test/bare:{build_ids()}"
    docker_client.images.build(path=str(context), tag=image, network_mode="none", rm=True)
    git_repo.commit("master", {".pbft-ci.yml": spec("/bin/busybox id", "/bin/busybox cat /etc/passwd", image=image)})

    executor = make_executor()
    try:
        result = await build(executor, git_repo, build_ids)
    finally:
        # Closed first: the container it started ahead for the image's next build would keep
        # the image, untagged, past a forced removal.
        executor.close()
        docker_client.images.remove(image, force=True)

    text = log_text(result)
    assert result.status == "success", text
    assert "uid=1000(build) gid=1000(build)" in text
    assert "root:x:0:0:root:/root:/bin/sh\nbuild:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n" in text


async def test_the_log_grows_while_the_build_runs(make_executor, git_repo, build_ids, tmp_path):
    head = git_repo.commit("master", {".pbft-ci.yml": spec("echo started", "sleep 3", "echo finished")})
    build_id = build_ids()
    running = asyncio.create_task(
        make_executor().run(BuildOrder(build_id=build_id, repository_name="example", repository_url=str(git_repo.path),
                            branch="master"))
    )
    path = live_log(tmp_path, build_id)

    # Whatever the machine's speed, the build sleeps between its two lines: the
    # first must be readable while the build still runs.
    seen_while_running = ""
    while not running.done() and "started" not in seen_while_running:
        seen_while_running = path.read_text() if path.exists() else ""
        await asyncio.sleep(0.05)
    result = await running

    assert "started" in seen_while_running and "finished" not in seen_while_running
    assert "== status" not in seen_while_running
    lines = log_text(result).splitlines()
    assert lines[1] == f"== commit {head}"
    assert lines.index("started") < lines.index("finished")
    assert lines[-1].startswith("== status success exit_code 0 duration_ms")
