"""The `after:` declarations (builder/plan/actions.py), the runner's ledger and its configuration.
The runner at work, on four real nodes, is tests/e2e/test_end_to_end_actions.py."""

import contextlib
import hashlib
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from builder.plan.actions import parse_actions
from builder.plan.nesting import MAX_NESTING
from builder.plan.spec import parse_build_spec
from harness.network import free_port
from pbft.build import Operation
from pbft.messages import Request
from runner.config import RunnerConfigError, load_runner_config
from runner.ledger import RunnerLedger
from runner.runner import ActionRunner, Certified, NotNow, Refused, pull_request_refusal
from tests.builder.executor_helpers import GitRepo
from tests.runner.runner_files import runner_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

DEPLOY = {"name": "deploy", "commands": ["./deploy.sh"], "when": {"event": "push", "branch": "master"},
          "secrets": ["DEPLOY_TOKEN"]}


def test_an_action_runs_for_the_verdicts_events_and_branches_it_names():
    (action,), errors = parse_actions([DEPLOY])
    assert errors == [] and action.secrets == ("DEPLOY_TOKEN",)
    assert action.refusal("push", "master", "success") is None
    assert action.refusal("push", "master", "failure") == "verdict failure is not success"
    assert action.refusal("push", "feature", "success") == "when: branch feature does not match master"
    assert action.refusal("pull_request", "master", "success") == "when: event pull_request is not push"
    (notify,), _ = parse_actions([{"name": "page", "commands": ["true"], "status": ["failure", "error"]}])
    assert notify.refusal("cron", "any", "failure") is None and notify.refusal("cron", "any", "success")


@pytest.mark.parametrize("section, problem", [
    ({"name": "x"}, "after: must be a list"),
    ([{"name": "x", "commands": []}], "after[0].commands: must be a non-empty list of strings"),
    ([{"name": "bad name", "commands": ["true"]}], "after[0].name: must be 1 to 64"),
    ([{"name": ["deploy"], "commands": ["true"]}], "after[0].name: must be 1 to 64"),
    ([{**DEPLOY}, {**DEPLOY}], "after[1].name: 'deploy' names two actions"),
    ([{**DEPLOY, "status": ["matrix"]}], "after[0].status: must be one or more of"),
    ([{**DEPLOY, "secrets": ["lower"]}], "after[0].secrets: must be a list of variable names"),
    ([{**DEPLOY, "when": {"path": ["src/**"]}}], "after[0].when: path conditions are for builds"),
    ([{**DEPLOY, "runs_on": "x"}], "after[0]: unknown key 'runs_on'"),
])
def test_a_malformed_after_section_makes_the_spec_an_error_on_every_node(section, problem):
    spec = yaml.safe_dump({"commands": ["true"], "after": section}).encode()
    with pytest.raises(ValueError) as refused:
        parse_build_spec(spec)
    assert problem in str(refused.value)


def test_a_build_with_actions_builds_its_commands_alone():
    spec = parse_build_spec(yaml.safe_dump({"commands": ["make test"], "after": [DEPLOY]}).encode())
    assert spec.commands == ("make test",)


def test_an_action_starts_once_and_one_left_running_is_interrupted_never_rerun(tmp_path):
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    assert ledger.start(7, "deploy") is True
    assert ledger.start(7, "deploy") is False
    ledger.close()
    again = RunnerLedger(tmp_path / "runner.sqlite")  # the runner died while it ran
    assert again.interrupt_running() == [(7, "deploy")]
    assert again.start(7, "deploy") is False
    assert [(row["name"], row["state"]) for row in again.actions(7)] == [("deploy", "interrupted")]
    again.close()


def test_the_runner_reads_a_secret_when_an_action_starts(tmp_path):
    config = load_runner_config(runner_yaml(tmp_path))
    assert config.secret_values("example", ("DEPLOY_TOKEN",)) == {"DEPLOY_TOKEN": "s3cr3t-value"}
    (tmp_path / "deploy-token").write_text("rotated\n")
    assert config.secret_values("example", ("DEPLOY_TOKEN",)) == {"DEPLOY_TOKEN": "rotated"}
    with pytest.raises(RunnerConfigError, match="secret OTHER is not configured for repository example"):
        config.secret_values("example", ("OTHER",))


@pytest.mark.parametrize("settings, problem", [
    ({"client_url": "ftp://x"}, "client_url: must be an http(s) URL"),
    ({"poll_s": 0}, "poll_s: must be a positive number"),
    ({"network_mode": "host"}, "network_mode: must be bridge or none"),
    ({"repositories": {"nope": {}}}, "repositories.nope: not a repository of the network"),
    ({"repositories": {"example": {"secrets": {"CI_TOKEN": "deploy-token"}}}}, "is not a variable name of its own"),
    ({"repositories": {"example": {"secrets": {"TOKEN": "missing"}}}}, "repositories.example.secrets.TOKEN"),
    ({"colour": "blue"}, "colour: unknown setting"),
    ({"name": None}, "name: the runner's name is required"),
    ({"name": "stranger", "key_file": "keys/runner-deployer.key"}, "name: no client of"),
    ({"name": "stranger"}, "runner-stranger.key does not exist (scripts/keygen.py makes it"),
    ({"key_file": "keys/client-client.key"}, "is not the one"),  # a key, not the runner's
    ({"key_file": "deploy-token"}, "key_file: cannot read the runner's private key"),
])
def test_a_bad_runner_configuration_is_refused_with_the_key(tmp_path, settings, problem):
    with pytest.raises(RunnerConfigError) as refused:
        load_runner_config(runner_yaml(tmp_path, **settings))
    assert problem in str(refused.value)


def test_a_runner_whose_client_is_down_examines_nothing_and_says_so(tmp_path):
    port = free_port()  # nothing listens there
    path = runner_yaml(tmp_path, client_url=f"http://127.0.0.1:{port}", data_dir="runner")
    result = subprocess.run([sys.executable, "runner/index.py", "--config", str(path), "--once", "--log-file", "-"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and f"client unreachable at http://127.0.0.1:{port}" in result.stderr
    ledger = RunnerLedger(tmp_path / "runner" / "runner.sqlite")
    assert ledger.floor() is None  # its first start is still to come: no build is taken for history
    ledger.close()


def test_a_pull_request_build_runs_no_action_whatever_event_its_request_names():
    for event in ("pull_request", "push", None):
        pull = Operation("example", "master", "a" * 40, pull_ref="refs/pull/9/head", event=event)
        assert pull_request_refusal(pull) == (
            "no actions: a pull request's build runs none (its after: section is its author's)"
        )
    assert pull_request_refusal(Operation("example", "master", "a" * 40)) is None
    assert pull_request_refusal(Operation("example", "v1", None, event="tag")) is None


async def test_the_runner_refuses_a_spec_nested_too_deeply_as_the_nodes_do(tmp_path):
    # Only a certificate no f+1 honest nodes signed names such a spec; whoever served it,
    # the runner refuses it with the nodes' reason instead of dying in PyYAML's recursion.
    text = "commands: [true]\nafter: " + "[" * 32_000 + "\n"
    commit = GitRepo(tmp_path / "repo").commit("master", {".pbft-ci.yml": text})
    config = load_runner_config(runner_yaml(tmp_path, data_dir="runner"))
    result = {"status": "success", "commit": commit,
              "spec": {"path": ".pbft-ci.yml", "sha256": hashlib.sha256(text.encode()).hexdigest()}}
    certified = Certified(1, Request("client", 1, Operation("example", "master", commit)), result)
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    async with aiohttp.ClientSession() as session:
        runner = ActionRunner(config, session, ledger, docker_client=None)
        with pytest.raises(Refused) as refused:
            await runner._actions(certified)
    ledger.close()
    assert str(refused.value) == f"refused: .pbft-ci.yml: nested deeper than {MAX_NESTING} levels (line 2)"


@contextlib.asynccontextmanager
async def runner_of_a_client_answering(tmp_path, aiohttp_server, path: str, body: bytes):
    """A runner and its ledger, whose client answers GET `path` with `body`, and nothing else."""
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get(path, answer)
    server = await aiohttp_server(app)
    config = load_runner_config(runner_yaml(tmp_path, client_url=str(server.make_url("")).rstrip("/"), data_dir="runner"))
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    try:
        async with aiohttp.ClientSession() as session:
            yield ActionRunner(config, session, ledger, docker_client=None), ledger
    finally:
        ledger.close()


@pytest.mark.parametrize("body, reason", [
    (b"[" * 100_000, "not JSON"),  # json.loads recursed past Python's limit
    (b"{", "not JSON"),
    (b"[]", "a certificate is an object with exactly"),
], ids=["nested too deeply", "cut short", "a list"])
async def test_a_certificate_that_is_no_json_object_is_refused_and_recorded(tmp_path, aiohttp_server, body, reason):
    async with runner_of_a_client_answering(tmp_path, aiohttp_server, "/builds/7/certificate", body) as (runner, ledger):
        outcome = await runner.examine(7, "accepted")
        assert outcome.startswith(f"refused: the certificate does not check: {reason}"), outcome
        assert ledger.examined(7)


@pytest.mark.parametrize("body", [
    b"[" * 100_000,  # json.loads recursed past Python's limit
    b"[]",
    b'{"builds": [1, 2]}',
], ids=["nested too deeply", "a list", "no builds"])
async def test_a_build_list_that_is_no_list_of_builds_is_not_now_and_the_runner_goes_on(tmp_path, aiohttp_server,
                                                                                          body):
    async with runner_of_a_client_answering(tmp_path, aiohttp_server, "/builds", body) as (runner, _):
        with pytest.raises(NotNow, match="GET /builds answered no list of builds"):
            await runner.poll()
