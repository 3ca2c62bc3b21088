"""End to end: a user reads every node's output of a running and of a finished build
through the client alone (GET /builds/{id}/log?node=N, plain and followed live).

The README's commands start the network and the client; the one repository is
a git repository of the test's own whose build prints a line, sleeps, and
prints another, so that there is a moment when the build is known to run.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import docker

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, followed_events, runs_command, webhook

pytestmark = OWN_NETWORK_MARKS


def test_a_user_follows_a_running_build_and_reads_every_nodes_finished_log(network, tmp_path):
    slow_repository(tmp_path / "slow")
    repositories = [{"name": "slow", "url": str(tmp_path / "slow")}]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(config_path))
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        verdicts = []
        sender = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "master")))
        sender.start()
        deadline = time.monotonic() + 30
        while True:
            code, answer = http_json("GET", f"{base_url}/builds?limit=1")
            if code == 200 and answer["builds"]:
                break
            assert time.monotonic() < deadline, (code, answer)
            time.sleep(0.1)
        build_id = answer["builds"][0]["build_id"]

        # Followed live from node 1: the first line arrives while the webhook still waits.
        events = followed_events(f"{base_url}/builds/{build_id}/log?node=1&follow=1")
        assert next(events) == ("node", "1")
        output, seen_running = "", False
        for event, text in events:
            assert event in ("output", "end"), (event, text)
            if event == "end":
                break
            output += text + "\n"
            if "build started" in output and "build finished" not in output:
                seen_running = sender.is_alive()  # no verdict yet: the build had not ended
        assert seen_running, f"the first line was not readable while the build ran: {output}"
        assert output.index("build started") < output.index("build finished"), output
        assert "== status success exit_code 0" in output, output

        sender.join(timeout=120)
        assert verdicts and verdicts[0]["status"] == "success", verdicts
        assert verdicts[0]["logs"] == {str(n.id): f"/builds/{build_id}/log?node={n.id}" for n in config.nodes}
        # Every node's log, each on its own: the ones still building are waited for.
        for node in config.nodes:
            deadline = time.monotonic() + 60
            while True:
                with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node={node.id}", timeout=10) as response:
                    assert response.headers["X-Pbft-Node"] == str(node.id)
                    text = response.read().decode()
                if "== status " in text:
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
            assert f"node {node.id} repo 'slow' branch 'master'" in text.splitlines()[0], text
            assert "build started\nbuild finished\n" in text, text
            assert text.splitlines()[-1].startswith("== status success exit_code 0"), text
        code, record = http_json("GET", f"{base_url}/builds/{build_id}")
        assert code == 200 and json.dumps(record["logs"]) == json.dumps(verdicts[0]["logs"]), record


def test_a_build_container_killed_from_outside_is_not_signed_as_a_failure_nor_shown_as_a_dissent(
    network, tmp_path
):
    """`docker kill` of node 1's running build container, as an operator or the host's tooling
    would: node 1 runs the build again and signs what the others sign, so the build's node
    view shows every node voting success, none twice and none dissenting, and node 1's log
    says why it ran twice. (Node 1's late vote agrees with a verdict already certified, so
    the others neither check nor keep it: the view has it from node 1's own record.)"""
    slow_repository(tmp_path / "slow")
    repositories = [{"name": "slow", "url": str(tmp_path / "slow")}]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(config_path))
    config = load_config(config_path)
    engine = docker.from_env()
    running = {"label": ["pbft-ci.role=build", "pbft-ci.node=1", f"pbft-ci.data={config.data_dir / 'node-1'}"],
               "status": "running"}

    try:
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            verdicts = []
            sender = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "master")))
            sender.start()
            deadline = time.monotonic() + 60
            while not (containers := [container for container in engine.containers.list(filters=running)
                                      if runs_command(container, "sleep")]):  # its script runs, past its gate
                assert time.monotonic() < deadline and sender.is_alive(), "node 1's build never ran"
                time.sleep(0.1)
            containers[0].kill()
            sender.join(timeout=120)
            assert verdicts and verdicts[0]["status"] == "success", verdicts
            build_id = verdicts[0]["build_id"]

            deadline = time.monotonic() + 60
            while True:  # node 1's second run ends a few seconds after the others
                code, view = http_json("GET", f"{base_url}/builds/{build_id}/nodes")
                assert code == 200, view
                if len(view["votes"]) == config.n:
                    break
                assert time.monotonic() < deadline, view["votes"]
                time.sleep(0.2)
            record = http_json("GET", config.node(0).url(f"/requests/client/{build_id}"))[1]
            with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node=1", timeout=10) as response:
                log = response.read().decode()
    finally:
        engine.close()

    assert record["verdict"]["state"] == "certified", record["verdict"]
    assert view["refused_votes"] == [], view["refused_votes"]
    assert {vote["node"]: [(result["status"], result["exit_code"]) for result in vote["results"]]
            for vote in view["votes"]} == {node.id: [("success", 0)] for node in config.nodes}
    assert "build container killed outside the build" in log and log.count("build started") == 2, log
    assert log.splitlines()[-1].startswith("== status success exit_code 0"), log
