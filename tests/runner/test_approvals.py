"""Deploys that wait for an approval (runner/approvals.py): which approval lets one run, how the
runner's ledger keeps those waiting, bounded, and how one nobody approves ends. The whole path,
on four real nodes with the client and the runner, is tests/e2e/test_end_to_end_deploys.py."""

import dataclasses
import sqlite3
import time

import aiohttp
import pytest

from builder.plan.actions import parse_actions
from pbft.build import Actor, Approval, Operation
from pbft.messages import Request
from runner.approvals import (
    APPROVAL_WINDOW_S, MAX_WAITING, NotApproved, approver, environment_refusal, needs_approval,
)
from runner.config import load_runner_config
from runner.ledger import RunnerLedger
from runner.runner import ActionRunner
from shared.config_environments import EnvironmentConfig
from tests.runner.runner_files import runner_yaml

(DEPLOY,), _ = parse_actions([{"name": "deploy", "commands": ["./deploy.sh"], "environment": "production"}])
ALICE = Actor("user", "alice")


def approval(build: int = 7, action: str = "deploy", environment: str = "production", client: str = "ci",
             actor: Actor | None = ALICE) -> Request:
    return Request(client, 9, Operation("example", "master", approves=Approval(build, action, environment),
                                        actor=actor))


def test_only_an_ordered_approval_of_this_very_deploy_by_its_builds_client_lets_it_run():
    assert approver(7, "ci", DEPLOY, approval(), "success") == "user alice"
    for request, status, why in [
        (approval(build=8), "success", "it approves action deploy of build 8 for production"),
        (approval(action="notify"), "success", "it approves action notify of build 7 for production"),
        (approval(environment="staging"), "success", "it approves action deploy of build 7 for staging"),
        (approval(client="other"), "success", "client other asked for it, and client ci for the build"),
        (approval(), "error", "the nodes did not order it (error)"),
        (approval(actor=None), "success", "it names no one who approved"),
        (Request("ci", 9, Operation("example", "master", cancels=7)), "success", "it approves nothing"),
    ]:
        with pytest.raises(NotApproved) as refused:
            approver(7, "ci", DEPLOY, request, status)
        assert str(refused.value) == why


def test_an_environment_asks_for_an_approval_only_if_the_network_requires_one(tmp_path):
    network = load_runner_config(runner_yaml(tmp_path)).network
    (plain,), _ = parse_actions([{"name": "notify", "commands": ["true"]}])
    assert environment_refusal(DEPLOY, network) == "environment production is not in the network document"
    assert environment_refusal(plain, network) is None and not needs_approval(plain, network)
    required = dataclasses.replace(network, environments=(EnvironmentConfig("production"),))
    assert environment_refusal(DEPLOY, required) is None and needs_approval(DEPLOY, required)
    free = dataclasses.replace(network, environments=(EnvironmentConfig("production", required=False),))
    assert not needs_approval(DEPLOY, free)


def test_waiting_deploys_are_asked_about_in_turn_and_bounded(tmp_path):
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    for build_id in range(1, 4):
        assert ledger.wait(build_id, "deploy", "production", now=build_id) == []
    assert [row["build_id"] for row in ledger.waiting(2, now=10)] == [1, 2]
    assert [row["build_id"] for row in ledger.waiting(2, now=11)] == [3, 1]  # the least recently asked first
    ledger.done_waiting(1, "deploy")
    assert not ledger.waits(1, "deploy") and ledger.waits(2, "deploy")
    for build_id in range(4, MAX_WAITING + 2):
        ledger.wait(build_id, "deploy", "production", now=build_id)
    # One more than it keeps: the oldest is the one pushed out.
    assert ledger.wait(MAX_WAITING + 2, "deploy", "production", now=MAX_WAITING + 2) == [(2, "deploy", "production")]
    ledger.close()


def test_a_ledger_from_before_deploys_waited_gains_the_approver(tmp_path):
    path = tmp_path / "runner.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE actions (build_id INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,"
                    " exit_code INTEGER, reason TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL,"
                    " finished_at REAL, PRIMARY KEY (build_id, name))")
        old.execute("INSERT INTO actions (build_id, name, state, started_at) VALUES (5, 'deploy', 'success', 1)")
    ledger = RunnerLedger(path)
    assert ledger.start(6, "deploy", "user alice")
    assert [row["approver"] for row in ledger.actions(5) + ledger.actions(6)] == [None, "user alice"]
    ledger.close()


async def test_a_deploy_nobody_approves_in_time_ends_as_an_error_saying_so(tmp_path):
    config = load_runner_config(runner_yaml(tmp_path, data_dir="runner"))
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    ledger.wait(7, "deploy", "production", now=time.time() - APPROVAL_WINDOW_S - 60)
    try:
        async with aiohttp.ClientSession() as session:
            runner = ActionRunner(config, session, ledger, docker_client=None)
            # The client is down: the report is lost, and the runner's ledger still says what happened.
            assert await runner.poll_waiting() == [(7, "deploy error")]
        assert not ledger.waits(7, "deploy")
        (row,) = ledger.actions(7)
        assert (row["state"], row["reason"]) == ("error", "no approval to deploy to production within 7 days")
    finally:
        ledger.close()
