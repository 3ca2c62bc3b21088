"""A repository's secrets in its builds, against a real git repository and the real Docker
engine: which events get them, every container of a pipeline gets them, their values masked in
the build log however they are printed, read from the file at each build (rotation without a
restart), and a file that cannot be read is the node's `error`, never a build without them."""

import contextlib
import hashlib
import subprocess
import uuid

import docker.errors
import pytest
import yaml

from builder.order import RepositorySettings
from builder.plan.secrets import RepositorySecrets
from shared.config import DEFAULT_SECRET_EVENTS, BuildSecretConfig
from tests.builder.executor_helpers import build, log_text

pytestmark = pytest.mark.docker

# Prints the secret plainly, after a prefix, in two writes with a pause between them, in
# base64 and in hex; then fails unless the value is exactly the one the test wrote.
PRINTS_IT = [
    'printf "%s\\n" "$DEPLOY_TOKEN"',
    'echo "token=$DEPLOY_TOKEN"',
    'printf "%s" "split ${DEPLOY_TOKEN:0:3}"; sleep 0.2; printf "%s\\n" "${DEPLOY_TOKEN:3}"',
    'printf "%s" "$DEPLOY_TOKEN" | base64',
    'printf "%s" "$DEPLOY_TOKEN" | xxd -p',
]


def says_whether(who: str = "") -> str:
    """A command that prints whether the build has DEPLOY_TOKEN at all, never its value."""
    return f'if [ -n "${{DEPLOY_TOKEN+x}}" ]; then echo "{who}DEPLOY_TOKEN is set"; else echo "{who}DEPLOY_TOKEN is unset"; fi'


def value() -> str:
    return f"value-{uuid.uuid4().hex}"


def checks_it(secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return f'test "$(printf "%s" "$DEPLOY_TOKEN" | sha256sum | cut -d" " -f1)" = {digest}'


def secrets(tmp_path, secret: str, *, events=DEFAULT_SECRET_EVENTS, for_forks=False) -> RepositorySettings:
    """The repository's settings a build is ordered with: one secret, in a file."""
    path = tmp_path / "deploy-token"
    path.write_text(secret + "\n")
    return RepositorySettings(secrets=RepositorySecrets(
        (BuildSecretConfig("DEPLOY_TOKEN", path, tuple(events)),), for_forks))


async def test_a_push_build_gets_the_secret_and_its_log_shows_only_the_mask(
    tmp_path, make_executor, git_repo, build_ids
):
    secret = value()
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": [*PRINTS_IT, checks_it(secret)]})})

    result = await build(make_executor(), git_repo, build_ids, settings=secrets(tmp_path, secret))

    text = log_text(result)
    assert result.status == "success", text
    assert secret not in text and secret[3:] not in text
    lines = text.splitlines()
    mask = "[secret DEPLOY_TOKEN]"
    # Plainly, after a prefix, in two writes, in base64, and in hex (two lines: xxd -p wraps at 60).
    assert [line for line in lines if not line.startswith("==")] == [
        mask, f"token={mask}", f"split {mask}", mask, mask, mask], text
    settings = next(line for line in lines if line.startswith("== settings environment"))
    assert settings.endswith("; secrets DEPLOY_TOKEN"), settings
    # Nothing the nodes sign holds it.
    assert secret not in repr(result.to_dict()) and secret not in repr(result.agreed())


@pytest.mark.parametrize("event", ["pull_request", "tag"])
async def test_a_build_of_an_event_the_secret_does_not_name_runs_without_it(
    tmp_path, make_executor, git_repo, build_ids, event
):
    secret = value()
    head = git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": [says_whether(), 'test -z "${DEPLOY_TOKEN+x}"']})})
    git_repo.tag("v1", head)
    subprocess.run(["git", "-C", str(git_repo.path), "update-ref", "refs/pull/3/head", head], check=True)
    request = {"pull_request": {"branch": "master", "pull_ref": "refs/pull/3/head"}, "tag": {"branch": "v1"}}[event]
    settings = secrets(tmp_path, secret, events=["push"])

    result = await build(make_executor(), git_repo, build_ids, commit=head, event=event, settings=settings, **request)

    text = log_text(result)
    assert result.status == "success", text
    assert "DEPLOY_TOKEN is unset" in text
    assert f"; no secrets (DEPLOY_TOKEN not given to {event} builds)" in text


async def test_a_pull_request_gets_a_secret_only_where_the_repository_opted_in(
    tmp_path, make_executor, git_repo, build_ids
):
    secret = value()
    head = git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": [checks_it(secret)]})})
    subprocess.run(["git", "-C", str(git_repo.path), "update-ref", "refs/pull/4/head", head], check=True)
    request = {"commit": head, "event": "pull_request", "branch": "master", "pull_ref": "refs/pull/4/head"}

    opted_in = secrets(tmp_path, secret, events=["push", "pull_request"], for_forks=True)
    assert (await build(make_executor(data_dir="in"), git_repo, build_ids, settings=opted_in, **request)).status \
        == "success"
    # Naming the event is not enough on its own: the repository's flag must say so too.
    not_opted_in = secrets(tmp_path, secret, events=["push", "pull_request"], for_forks=False)
    assert (await build(make_executor(data_dir="out"), git_repo, build_ids, settings=not_opted_in, **request)) \
        .status == "failure"


async def test_every_step_and_service_of_a_pipeline_gets_it_and_the_spec_cannot_replace_it(
    tmp_path, make_executor, git_repo, build_ids
):
    secret = value()
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({
        "environment": {"DEPLOY_TOKEN": "the spec's own value", "SHOWN": "yes"},
        "services": [{"name": "echoer", "image": "pbft-ci/busybox:latest",
                      "commands": ['echo "service has $DEPLOY_TOKEN"', "exec sleep 60"]}],
        "steps": [
            {"name": "first", "commands": [checks_it(secret)]},
            {"name": "second", "environment": {"DEPLOY_TOKEN": "a step's own"}, "commands": PRINTS_IT + [
                checks_it(secret)]},
        ],
    })})

    result = await build(make_executor(), git_repo, build_ids, settings=secrets(tmp_path, secret))

    text = log_text(result)
    assert (result.status, [step.status for step in result.steps]) == ("success", ["success", "success"]), text
    assert "service has [secret DEPLOY_TOKEN]" in text and secret not in text
    assert "SHOWN=yes" in text and "the spec's own value" not in text


async def test_a_replaced_file_takes_effect_at_the_next_build_without_a_restart(
    tmp_path, make_executor, git_repo, build_ids
):
    old, new = value(), value()
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": [checks_it(new)]})})
    configured = secrets(tmp_path, old)
    executor = make_executor()

    assert (await build(executor, git_repo, build_ids, settings=configured)).status == "failure"
    (tmp_path / "deploy-token").write_text(new)
    assert (await build(executor, git_repo, build_ids, settings=configured)).status == "success"


async def test_a_secret_that_cannot_be_read_is_an_error_naming_it_not_a_build_without_it(
    tmp_path, make_executor, git_repo, build_ids, caplog
):
    head = git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": ["echo the build ran"]})})
    configured = secrets(tmp_path, value())
    executor = make_executor()
    (tmp_path / "deploy-token").write_text("short")

    result = await build(executor, git_repo, build_ids, settings=configured)

    assert result.to_dict() == {"status": "error", "exit_code": None, "commit": head,
                                "reason": "secret DEPLOY_TOKEN could not be read on this node"}
    text = log_text(result)
    assert "the build ran" not in text
    assert f"secret DEPLOY_TOKEN: {tmp_path / 'deploy-token'} holds fewer than 8 characters" in text
    assert "holds fewer than 8 characters" in caplog.text  # the operator's log says why too


async def test_a_dockerfile_build_gets_it_masked_as_well(tmp_path, make_executor, git_repo, build_ids, docker_client):
    secret = value()
    head = git_repo.commit("master", {"Dockerfile": "FROM pbft-ci/busybox:latest\n"
                                                    'CMD ["sh", "-c", "echo token=$DEPLOY_TOKEN"]\n'})

    try:
        result = await build(make_executor(), git_repo, build_ids, settings=secrets(tmp_path, secret))
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):  # the build may have failed before making it
            docker_client.images.remove(f"pbft-ci-build/example:{head[:12]}", force=True)

    text = log_text(result)
    assert result.status == "success", text
    assert "token=[secret DEPLOY_TOKEN]" in text and secret not in text
    assert "; secrets DEPLOY_TOKEN" in text


async def test_a_step_or_service_that_lists_its_secrets_gets_only_those(tmp_path, make_executor, git_repo, build_ids):
    secret = value()
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({
        "services": [{"name": "db", "image": "pbft-ci/busybox:latest", "secrets": ["OTHER"],
                      "commands": [says_whether("db: "), "exec sleep 60"]}],
        "steps": [
            {"name": "lint", "secrets": [], "commands": [says_whether("lint: ")]},
            {"name": "deploy", "secrets": ["DEPLOY_TOKEN", "NOT_CONFIGURED"],
             "commands": [says_whether("deploy: "), checks_it(secret)]},
            {"name": "test", "commands": [says_whether("test: ")]},
        ],
    })})

    result = await build(make_executor(), git_repo, build_ids, settings=secrets(tmp_path, secret))

    text = log_text(result)
    assert result.status == "success", text
    assert [line for line in text.splitlines() if "DEPLOY_TOKEN is" in line] == [
        "lint: DEPLOY_TOKEN is unset", "deploy: DEPLOY_TOKEN is set", "test: DEPLOY_TOKEN is set",
        "db: DEPLOY_TOKEN is unset"], text
    assert "; secrets DEPLOY_TOKEN (only: step lint none; step deploy DEPLOY_TOKEN; service db none)\n" in text


@pytest.mark.parametrize("pipeline", [False, True])
async def test_the_value_is_in_the_builds_environment_never_on_its_command_line(
    tmp_path, make_executor, git_repo, build_ids, pipeline
):
    # Every user of a node's host can read a process's command line (ps, /proc/<pid>/cmdline);
    # its environment only its own user and root can. The build's shell is the container's pid 1.
    secret = value()
    # (`! grep` would not do: sh -e never stops at a command negated with `!`.)
    commands = ['grep -q "DEPLOY_TOKEN=$DEPLOY_TOKEN" /proc/1/environ',
                'if grep -q "$DEPLOY_TOKEN" /proc/1/cmdline; then echo on the command line; exit 1; fi',
                'grep -q "CI_REPO" /proc/1/cmdline', checks_it(secret)]
    build_spec = {"steps": [{"name": "only", "commands": commands}]} if pipeline else {"commands": commands}
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump(build_spec)})

    result = await build(make_executor(), git_repo, build_ids, settings=secrets(tmp_path, secret))

    assert result.status == "success", log_text(result)


async def test_a_value_of_several_lines_and_shell_characters_reaches_the_build_exactly(
    tmp_path, make_executor, git_repo, build_ids
):
    secret = "-----BEGIN KEY-----\nab'c\"d $HOME `id` \\n \\\\ e%sf\n-----END KEY-----\n"
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"commands": [
        checks_it(secret), 'printf "%s\\n" "$DEPLOY_TOKEN"']})})
    (tmp_path / "deploy-token").write_text(secret + "\n")  # the file's own last line break is dropped
    configured = RepositorySettings(
        secrets=RepositorySecrets((BuildSecretConfig("DEPLOY_TOKEN", tmp_path / "deploy-token"),)))

    result = await build(make_executor(), git_repo, build_ids, settings=configured)

    text = log_text(result)
    assert result.status == "success", text
    assert "BEGIN KEY" not in text and "$HOME `id`" not in text
