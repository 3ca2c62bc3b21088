"""End to end: the network's configuration changed through the order, with the project's own
commands (scripts/network.py propose, sign, submit) against real node processes and the real
client.

Two owners of three must sign. A change signed by one is refused with the nodes' reason; with
both it applies at one sequence number on every node: a repository is added and the build
limits change, the client takes webhooks for the new repository, and a webhook gets its
verdict; submitted again, the same change is refused as one already applied. `show` lists
what the change does and who signed it; the nodes, `status`, `document` and the client's
audit name the owners whose signatures carried it. A node killed and started again replays
the change from its ledger and runs the same document, signers included.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import yaml

from harness.network import write_network
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS
from tests.e2e.network_owners import network_py, with_owners
from tests.support.node_processes import RealNodes, wait_until

pytestmark = OWN_NETWORK_MARKS


def test_owners_change_the_network_through_the_order(tmp_path):
    config_path = with_owners(write_network(tmp_path, allow_byzantine=True))
    config = load_config(config_path)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"].append({"name": "newrepo", "url": "https://git.example.org/newrepo.git"})
    data["build"] = {**data.get("build", {}), "memory_mb": 512}
    wanted = tmp_path / "network-next.yaml"
    wanted.write_text(yaml.safe_dump(data))
    target = load_config(wanted).digest
    change = str(tmp_path / "change.json")
    nodes = RealNodes(config_path)
    try:
        for node_id in range(4):
            nodes.start(node_id)
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            code, answer = http_json("POST", f"{base_url}/webHook", {"branch": "main", "repository": "newrepo"})
            assert code == 400 and answer["error"].startswith("unknown repository 'newrepo'")

            proposed = network_py("propose", "--from", config.node(0).url(""), "--to", str(wanted), "--out", change)
            assert proposed.returncode == 0, proposed.stderr
            differences = ["build: memory_mb (default) -> 512",
                           "repositories: adds newrepo (url https://git.example.org/newrepo.git)"]
            assert proposed.stdout.splitlines()[1:3] == differences

            signed = network_py("sign", change, "--key", str(tmp_path / "owners" / "ada.key"), "--owner", "ada")
            assert signed.returncode == 0, signed.stderr
            shown = network_py("show", change, "--from", config.node(1).url(""))
            assert shown.stdout.splitlines()[1:] == [
                *differences, "signed by ada: 1 of the 2 owners' signatures it needs"], shown.stderr
            refused = network_py("submit", change, "--client", base_url)
            assert refused.returncode == 1
            assert refused.stderr.strip() == ("refused: network change refused: signed by 1 of the 2 owners a change "
                                              "needs (ada)")
            assert all(nodes.status(i)["network"]["digest"] == config.digest for i in range(4))

            network_py("sign", change, "--key", str(tmp_path / "owners" / "bob.key"), "--owner", "bob")
            applied = network_py("submit", change, "--client", base_url)
            assert applied.returncode == 0, applied.stderr
            found = re.fullmatch(rf"network configuration {target}, signed by ada, bob, runs from sequence number "
                                 r"(\d+) \(build \d+, agreed by nodes \[.*\]\)\n", applied.stdout)
            assert found, applied.stdout
            seq = int(found.group(1))

            def all_run_it() -> bool:
                return all(nodes.get(i, "/network/document")[1]["digest"] == target for i in range(4))

            wait_until(all_run_it, 30, "every node runs the new document")
            assert all(nodes.status(i)["network"] == {"digest": target, "foreign": {}} for i in range(4))
            served = [nodes.get(i, "/network/document")[1] for i in range(4)]
            assert {(answer["changed_at"], tuple(answer["signed_by"])) for answer in served} == {(seq, ("ada", "bob"))}
            status = network_py("status", "--from", config.node(3).url(""))
            assert status.returncode == 0, status.stdout
            assert status.stdout.splitlines()[-1] == (f"all 4 nodes run network {target[:16]}, epoch 0, members "
                                                      "0 1 2 3, f 1")
            running = network_py("document", "--from", config.node(2).url(""))
            assert running.stdout.startswith(f"# network document {target}: run from sequence number {seq}, signed by "
                                             "ada, bob\n")
            assert yaml.safe_load(running.stdout)["build"]["memory_mb"] == 512

            code, verdict = http_json("POST", f"{base_url}/webHook", {"branch": "main", "repository": "newrepo"})
            assert code == 200 and verdict["status"] == "success", verdict
            code, network = http_json("GET", f"{base_url}/network")
            assert network["client"]["network"] == {"digest": target, "foreign": {}}

            again = network_py("submit", change, "--client", base_url)
            assert again.returncode == 1 and "a change already applied, or one made before another" in again.stderr
            # The audit names who handed each change in, and the owners whose signatures carried the one applied.
            code, audit = http_json("GET", f"{base_url}/audit?action=change")
            assert [(entry["verdict"], entry["signed_by"]) for entry in audit["actions"]] == [
                ("error", None), ("success", ["ada", "bob"]), ("error", None)]
            assert {entry["actor"]["kind"] for entry in audit["actions"]} == {"machine"}

            nodes.kill(2, signal.SIGKILL)
            nodes.start(2)
            assert nodes.get(2, "/network/document")[1] == {**nodes.get(0, "/network/document")[1]}
            assert nodes.get(2, "/network/document")[1]["signed_by"] == ["ada", "bob"]  # replayed from its ledger
            assert json.loads(Path(change).read_text())["base"] == config.digest
    finally:
        nodes.close()
