"""End to end: a spec's `matrix:` on four real nodes, the client and Docker. A push of a
3-combination matrix gives the certified expansion, then three builds each with its own
agreed verdict, its own commit status context, and the expansion's status once all three
are in; a plain webhook call answers the expansion with its three builds' ids."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import yaml

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import GITHUB_PUSH, GITHUB_SECRET, encoded, github_headers
from tests.e2e.example_network import OWN_NETWORK_MARKS, MATRIX_SPEC, example_copy, matrix_settled
from tests.support.status_server import StatusServer

pytestmark = OWN_NETWORK_MARKS

STATUS_TOKEN = "forge-status-token"
LABELS = ["FLAVOUR=one", "FLAVOUR=two", "FLAVOUR=three"]


def matrix_network(network, tmp_path, statuses_url: str = "") -> tuple[Path, str]:
    """The example network, on ports of its own (other checkouts on this machine may run the
    example's meanwhile), building repository `hello` whose master's spec has a matrix; and
    its config's path and master's commit. With `statuses_url`, the repository posts statuses."""
    slow_repository(tmp_path / "forge", MATRIX_SPEC)
    head = subprocess.run(["git", "-C", str(tmp_path / "forge"), "rev-parse", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    config_path = example_copy(tmp_path, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    repository = {"name": "hello", "full_name": "Codertocat/Hello-World", "secret": GITHUB_SECRET,
                  "url": str(tmp_path / "forge")}
    if statuses_url:
        repository.update(status_api=statuses_url, status_token=STATUS_TOKEN)
    data["repositories"] = [repository]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    return config_path, head


def test_a_three_combination_matrix_gives_three_agreed_verdicts_and_three_statuses(network, tmp_path):
    statuses = StatusServer(STATUS_TOKEN).start()
    config_path, head = matrix_network(network, tmp_path, statuses.url)
    config = load_config(config_path)
    path = f"/repos/Codertocat/Hello-World/statuses/{head}"

    try:
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            push = copy.deepcopy(GITHUB_PUSH)
            push.update({"ref": "refs/heads/master", "after": head, "commits": [],
                         "head_commit": {**GITHUB_PUSH["head_commit"], "id": head}})
            push["before"] = "0" * 40  # a new branch: no changed paths to count
            body = encoded(push)
            code, answer = http_json("POST", f"{base_url}/webHook", body,
                                     github_headers(body, event="push", delivery="matrix-1"))
            assert code == 202, answer

            expansion = matrix_settled(base_url, answer["build_id"])
            assert (expansion["state"], expansion["result"]["status"], expansion["result"]["commit"]) == (
                "accepted", "matrix", head), expansion
            assert expansion["result"]["combinations"] == [[["FLAVOUR", label.split("=")[1]]] for label in LABELS]
            assert len(expansion["agreed_by"]) >= config.f + 1
            builds = expansion["matrix_builds"]
            assert [(build["combination"], build["state"], build["status"]) for build in builds] == [
                (LABELS[0], "accepted", "success"), (LABELS[1], "accepted", "success"),
                (LABELS[2], "accepted", "failure")], builds
            for build in builds:
                record = http_json("GET", f"{base_url}/builds/{build['build_id']}")[1]
                assert (record["matrix_of"], record["result"]["commit"]) == (answer["build_id"], head), record
                assert len(record["agreed_by"]) >= config.f + 1, record
                assert record["result"]["spec"]["image"] == "pbft-ci/busybox:latest", record

            assert [statuses.final(path, f"pbft-ci/{label}").state for label in LABELS] == [
                "success", "success", "failure"]
            assert statuses.final(path, "pbft-ci").state == "failure"
            assert {call.context for call in statuses.calls} == {"pbft-ci"} | {f"pbft-ci/{l}" for l in LABELS}

            # A plain call answers once the expansion is certified, naming its builds.
            code, plain = http_json("POST", f"{base_url}/webHook", {"repository": "hello", "branch": "master"})
            assert code == 200 and plain["status"] == "matrix", plain
            assert [build["combination"] for build in plain["matrix"]] == LABELS, plain
            again = matrix_settled(base_url, plain["build_id"])["matrix_builds"]
            assert [build["build_id"] for build in again] == [build["build_id"] for build in plain["matrix"]]
            assert [build["status"] for build in again] == ["success", "success", "failure"]
    finally:
        statuses.stop()

