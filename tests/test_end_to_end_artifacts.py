"""End to end: four real nodes agree on the bytes a build makes, or say that they differ.

The README's commands start the network and the client; the one repository
is a git repository of the test's own with two branches. `reproducible`
writes the same archive on every node (its time from SOURCE_DATE_EPOCH);
`random` writes 32 random bytes. The first gets one agreed digest from 2f+1
nodes; the second ends `divergent`, with every node's digest in the verdict,
the build record and the nodes' own ledgers, and none of them as the build's.
"""

from __future__ import annotations

import subprocess
import time

import yaml

from pbft.config import load_config
from tests.test_end_to_end import (
    E2E_MARKS,
    client,
    http_json,
    network,  # noqa: F401 (a fixture: pytest passes it by name)
)
from tests.test_end_to_end_faults import example_copy

pytestmark = E2E_MARKS

DIGEST_CHARS = len("sha256:") + 64

REPRODUCIBLE_SPEC = """\
commands:
  - mkdir -p dist && echo "built at $SOURCE_DATE_EPOCH" > dist/stamp.txt
  - touch -d "@$SOURCE_DATE_EPOCH" dist/stamp.txt
  - tar -cf dist/app.tar dist/stamp.txt
artifacts:
  - dist/*.tar
"""
RANDOM_SPEC = """\
commands:
  - mkdir -p dist && head -c 32 /dev/urandom > dist/noise.bin
artifacts:
  - dist/noise.bin
"""


def artifact_repository(path) -> None:
    """A git repository with a branch `reproducible` and a branch `random`."""
    path.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)

    git("init", "-q", "-b", "reproducible")
    (path / ".pbft-ci.yml").write_text(REPRODUCIBLE_SPEC)
    git("add", ".")
    git("commit", "-q", "-m", "a reproducible artifact")
    git("checkout", "-q", "-b", "random")
    (path / ".pbft-ci.yml").write_text(RANDOM_SPEC)
    git("commit", "-q", "-am", "a random artifact")


def settled_votes(base_url: str, build_id: str, config) -> dict:
    """GET /builds/{id}/nodes once every node voted and every ledger decided the build."""
    deadline = time.monotonic() + 60
    while True:
        code, view = http_json("GET", f"{base_url}/builds/{build_id}/nodes")
        assert code == 200, view
        voted = {vote["node"] for vote in view["votes"]}
        decided = all(node["verdict"] and node["verdict"]["state"] != "pending" for node in view["nodes"])
        if voted == {node.id for node in config.nodes} and decided:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def test_a_reproducible_artifact_is_agreed_and_a_random_one_is_divergent(network, tmp_path):
    artifact_repository(tmp_path / "artifacts")
    config_path = example_copy(tmp_path, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "artifacts", "url": str(tmp_path / "artifacts")}]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    config = load_config(config_path)
    quorum = 2 * config.f + 1

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        code, agreed = http_json("POST", f"{base_url}/webHook", {"branch": "reproducible"})
        assert code == 200 and (agreed["status"], agreed["exit_code"]) == ("success", 0), agreed
        assert len(agreed["artifacts"]) == DIGEST_CHARS and len(agreed["agreed_by"]) >= quorum, agreed
        view = settled_votes(base_url, agreed["build_id"], config)
        assert {result["artifacts"] for vote in view["votes"] for result in vote["results"]} == {agreed["artifacts"]}
        assert all(node["verdict"]["state"] == "certified" for node in view["nodes"]), view

        code, divergent = http_json("POST", f"{base_url}/webHook", {"branch": "random"})
        assert code == 200 and divergent["status"] == "divergent", divergent
        assert divergent["agreed_by"] == [] and "artifacts" not in divergent, divergent
        by_node = divergent["artifacts_by_node"]
        assert set(by_node) == {str(node.id) for node in config.nodes}, "every node's digest is in the verdict"
        assert len(set(by_node.values())) == config.n, by_node
        code, record = http_json("GET", f"{base_url}/builds/{divergent['build_id']}")
        assert code == 200 and record["state"] == "divergent", record
        assert record["result"]["artifacts_by_node"] == by_node, record
        # Each node's own ledger holds every node's signed vote, and no verdict.
        view = settled_votes(base_url, divergent["build_id"], config)
        assert {str(vote["node"]): vote["results"][0]["artifacts"] for vote in view["votes"]} == by_node
        assert all(node["verdict"]["state"] == "disputed" for node in view["nodes"]), view
