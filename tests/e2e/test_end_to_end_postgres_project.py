"""End to end with a real project whose tests need a live database: pg8000's own tests,
from its PyPI sdist, against a PostgreSQL service, built by four nodes as a pipeline.

The network is a fresh one of the test's own, started and stopped with the README's
scripts; its one repository is the sdist turned into git with a `.pbft-ci.yml` of a
`postgres` service, a `lint` step and a `test` step, each in an image of its own made
from Debian packages by scripts/build-debian-image.sh (harness/postgres_project.py).
master passes; a branch with one false assertion fails at the `test` step. Every node's
ledger certifies each verdict with its steps, every node's log shows each step's output,
and one node's log is followed live while the failing build runs.

The same pipeline also runs without pbft-ci (`docker run` of the service and of each
step, with the limits a node gives them), and both timings are printed: run with `-s`
to see them.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from harness.network import write_network
from harness.postgres_project import (
    BROKEN_BRANCH, BROKEN_FILE, BROKEN_TEST, BUILD_IMAGE_SCRIPT, BUILD_TIMEOUT_S, IMAGES, PROJECT, SDIST_SHA256,
    VERSION, export_commit, make_project_repo, plain_pipeline_run,
)
from harness.real_project import ProjectUnavailable, every_node_log, fetch_sdist, image_present
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import NetworkConfig, load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, followed_events, webhook

pytestmark = [*OWN_NETWORK_MARKS, pytest.mark.slow]

# Four nodes run the suite at once on a shared machine; the verdict needs f+1 of them.
VERDICT_TIMEOUT_S = BUILD_TIMEOUT_S + 120
LEDGER_TIMEOUT_S = 180
PYTEST_PASSED = re.compile(r"^\d+ passed\b.* in [\d.]+s", re.MULTILINE)
PYTEST_ONE_FAILED = re.compile(r"^1 failed, \d+ passed\b", re.MULTILINE)
LINT_OUTPUT = re.compile(r"^lint: \d+ files compile$", re.MULTILINE)


def test_pg8000_against_a_postgres_service_passes_and_fails_at_its_test_step_on_every_node(scratch, network):
    try:
        sdist = fetch_sdist(project=PROJECT, version=VERSION, sha256=SDIST_SHA256)
    except ProjectUnavailable as error:
        pytest.fail(f"the real project's sdist is needed and could not be had: {error}")
    repository = scratch / PROJECT
    commits = make_project_repo(repository, sdist)
    config_path = write_network(scratch, repositories={PROJECT: str(repository)})
    config = load_config(config_path)

    network(str(config_path))  # its set-up builds the images where it can
    missing = [f"{image} ({BUILD_IMAGE_SCRIPT} {variant})" for image, variant in IMAGES.items() if not image_present(image)]
    assert not missing, f"missing images, built as root by: {', '.join(missing)}"

    # Before any build of the network's, so that the plain runs have the machine to themselves.
    plain = {
        branch: plain_pipeline_run(export_commit(repository, commit, scratch / f"plain-{branch}"), config.build, scratch)
        for branch, commit in commits.items()
    }
    assert {name: code for name, (code, _) in plain["master"].steps.items()} == {"lint": 0, "test": 0}, plain
    assert {name: code for name, (code, _) in plain[BROKEN_BRANCH].steps.items()} == {"lint": 0, "test": 1}, plain

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        # webhook() checks that f+1 distinct nodes signed each verdict (its certificate).
        master = webhook(base_url, config, "master", timeout_s=VERDICT_TIMEOUT_S)
        assert (master["status"], master["exit_code"], master["commit"]) == ("success", 0, commits["master"]), master
        master_ledgers = every_node_ledger(config, master)
        for node_id, record in master_ledgers.items():
            assert agreed_steps(record["verdict"]["result"]) == [("lint", "success", 0), ("test", "success", 0)], (
                node_id, record)
        for node_id, text in every_node_log(base_url, config, master).items():
            lint, test = step_sections(node_id, text)
            assert LINT_OUTPUT.search(lint), f"node {node_id}: {lint}"
            assert PYTEST_PASSED.search(test), f"node {node_id} shows no pytest summary in its test step:\n{test[-2000:]}"

        followed: list[str] = []
        broken_verdicts: list[dict] = []
        sender = threading.Thread(
            target=lambda: broken_verdicts.append(webhook(base_url, config, BROKEN_BRANCH, timeout_s=VERDICT_TIMEOUT_S))
        )
        sender.start()
        try:
            followed.append(follow_next_build_log(base_url, after=master["build_id"], node_id=1))
        finally:
            sender.join(timeout=VERDICT_TIMEOUT_S)
        (broken,) = broken_verdicts
        assert (broken["status"], broken["exit_code"], broken["commit"]) == (
            "failure", 1, commits[BROKEN_BRANCH]
        ), broken
        broken_ledgers = every_node_ledger(config, broken)
        for node_id, record in broken_ledgers.items():
            assert agreed_steps(record["verdict"]["result"]) == [("lint", "success", 0), ("test", "failure", 1)], (
                node_id, record)
            assert record["own_result"]["reason"] == "step 'test' failed with exit code 1", (node_id, record)
        for node_id, text in every_node_log(base_url, config, broken).items():
            lint, test = step_sections(node_id, text, test_status="failure exit_code 1")
            assert LINT_OUTPUT.search(lint), f"node {node_id}: {lint}"
            assert PYTEST_ONE_FAILED.search(test), f"node {node_id}:\n{test[-3000:]}"
            assert f"FAILED {BROKEN_FILE}::{BROKEN_TEST}" in test, f"node {node_id}:\n{test[-3000:]}"
        # Read while the build ran: node 1's live log holds the same step sections.
        lint, test = step_sections(1, followed[0], test_status="failure exit_code 1")
        assert LINT_OUTPUT.search(lint) and BROKEN_TEST in test, followed[0][-3000:]

    print_timings(config, {"master": (master, master_ledgers), BROKEN_BRANCH: (broken, broken_ledgers)}, plain)


def step_sections(node_id: int, text: str, *, test_status: str = "success exit_code 0") -> tuple[str, str]:
    """The output of the lint step and of the test step in one node's build log (docs/pipelines.md)."""
    match = re.search(
        r"^== step lint: image pbft-ci/debian-python:bookworm\n(.*?)^== step lint: success exit_code 0 duration_ms \d+\n"
        r"== step test: image pbft-ci/debian-pg8000:bookworm\n(.*?)^== step test: " + re.escape(test_status)
        + r" duration_ms \d+$",
        text, re.MULTILINE | re.DOTALL,
    )
    assert match, f"node {node_id}'s log has not the lint and test steps, in order:\n{text[-3000:]}"
    return match[1], match[2]


def every_node_ledger(config: NetworkConfig, verdict: dict) -> dict[int, dict]:
    """Each node's own ledger record of the verdict's build (GET /builds/{seq} on the node),
    once it executed the build and certified the verdict."""
    client_name = config.clients[0].name
    records = {}
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    for node in config.nodes:
        url = f"http://{node.host}:{node.port}"
        while True:
            code, known = http_json("GET", f"{url}/requests/{client_name}/{verdict['build_id']}")
            if code == 200:
                code, at_seq = http_json("GET", f"{url}/builds/{known['seq']}")
                assert code == 200, at_seq
                (record,) = [r for r in at_seq["builds"] if r["timestamp"] == int(verdict["build_id"])]
                if record["own_result"] is not None and record["verdict"]["state"] == "certified":
                    records[node.id] = record
                    break
            assert time.monotonic() < deadline, f"node {node.id} has no certified verdict of {verdict}: {code} {known}"
            time.sleep(0.5)
    return records


def agreed_steps(result: dict) -> list[tuple[str, str, int]]:
    return [(step["name"], step["status"], step["exit_code"]) for step in result["steps"]]


def follow_next_build_log(base_url: str, *, after: str, node_id: int) -> str:
    """The output of the first build after `after`, followed live from `node_id` until its end."""
    deadline = time.monotonic() + 60
    while True:
        code, answer = http_json("GET", f"{base_url}/builds?limit=1")
        if code == 200 and answer["builds"] and answer["builds"][0]["build_id"] != after:
            break
        assert time.monotonic() < deadline, (code, answer)
        time.sleep(0.1)
    events = followed_events(f"{base_url}/builds/{answer['builds'][0]['build_id']}/log?node={node_id}&follow=1")
    assert next(events) == ("node", str(node_id))
    output = ""
    for event, text in events:
        if event == "end":
            return output
        assert event == "output", (event, text)
        output += text + "\n"
    raise AssertionError(f"node {node_id}'s log stream closed before its end:\n{output[-2000:]}")


def print_timings(config: NetworkConfig, builds: dict[str, tuple[dict, dict[int, dict]]], plain: dict) -> None:
    """pbft-ci's verdicts beside the plain runs: seconds, and each node's own step durations."""
    lines = [f"{PROJECT} {VERSION} on PostgreSQL, n={len(config.nodes)} f={config.f}: seconds"]
    for branch, (verdict, ledgers) in builds.items():
        run = plain[branch]
        steps = ", ".join(f"{name} {seconds:.1f} (exit {code})" for name, (code, seconds) in run.steps.items())
        lines.append(f"  {branch}: plain docker run {run.total_s:.1f} (postgres ready {run.ready_s:.1f}, {steps})")
        lines.append(f"  {branch}: pbft-ci verdict {verdict['elapsed_ms'] / 1000:.1f}, agreed by {verdict['agreed_by']}")
        for node_id, record in sorted(ledgers.items()):
            own = record["own_result"]
            durations = ", ".join(f"{step['name']} {step['duration_ms'] / 1000:.1f}" for step in own["steps"])
            lines.append(f"    node {node_id}: {durations}")
    print("\n" + "\n".join(lines))
