"""End to end: the network's membership changed through the order, with no process restarted.

Real node processes and the real client, the owners' and the operators' own commands
(scripts/network.py join, propose, sign, submit). Four nodes grow to five (node 4 joins: its
host makes its key and its file, it starts as no member and catches up by state transfer),
to seven with f = 2 (nodes 5 and 6), node 1's key is rotated, and the network shrinks back
to four (nodes 3, 5 and 6 leave). After each change a webhook gets its verdict with a node
down whose absence only the new members make up for; at the end every member runs the same
document, has executed the same batches and shows the same state digest; a node restarted
with the final document as its file replays the changes from the first one all the same.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import yaml

from harness.network import free_ports, write_network
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS
from tests.e2e.network_owners import OWNERS, network_py, with_owners
from tests.support.node_processes import RealNodes, wait_until

pytestmark = OWN_NETWORK_MARKS


def joined(tmp_path: Path, node_id: int, port: int, first_from: str, *, rotate: bool = False) -> tuple[dict, Path]:
    """On node `node_id`'s own host: its key (or the next one) and, for a new node, its file."""
    host = tmp_path / f"host-{node_id}"
    # A node of the first four keeps its key where write_network put it, beside the others'.
    keys = tmp_path / "keys" if rotate else host / "keys"
    # Its ledger and logs on its own "host" too, not where a systemd unit would keep them.
    extra = ["--next"] if rotate else ["--first-from", first_from, "--out", str(host / "network.yaml"),
                                       "--data-dir", str(host / "data"), "--log-dir", str(host / "log")]
    made = network_py("join", "--node", str(node_id), "--host", "127.0.0.1", "--port", str(port),
                      "--keys-dir", str(keys), *extra)
    assert made.returncode == 0, made.stderr
    [entry] = yaml.safe_load(made.stdout)
    return entry, host / "network.yaml"


def changed(tmp_path: Path, base_url: str, source_url: str, data: dict, name: str) -> int:
    """The owners make, sign and submit the change to `data`; the sequence number it runs from."""
    wanted, change = tmp_path / f"{name}.yaml", str(tmp_path / f"{name}.json")
    wanted.write_text(yaml.safe_dump(data))
    proposed = network_py("propose", "--from", source_url, "--to", str(wanted), "--out", change)
    assert proposed.returncode == 0, proposed.stderr
    for owner in OWNERS[:2]:
        signed = network_py("sign", change, "--key", str(tmp_path / "owners" / f"{owner}.key"), "--owner", owner)
        assert signed.returncode == 0, signed.stderr
    applied = network_py("submit", change, "--client", base_url)
    assert applied.returncode == 0, applied.stderr + applied.stdout
    return int(re.search(r"runs from sequence number (\d+) ", applied.stdout).group(1))


def test_the_network_grows_to_seven_rotates_a_key_and_shrinks_to_four_without_a_restart(tmp_path):
    config_path = with_owners(write_network(tmp_path, allow_byzantine=True))
    config = load_config(config_path)
    data = yaml.safe_load(config_path.read_text())
    ports = dict(zip((4, 5, 6), free_ports(3)))
    nodes = RealNodes(config_path)
    source = config.node(0).url("")

    def start(node_id: int, path: Path | None = None) -> None:
        nodes.start(node_id, config_path=path)

    def members_are(seq: int, members: list[int], f: int) -> None:
        def applied() -> bool:
            statuses = [nodes.status(node) for node in members]
            return all((status["epoch"], status["members"], status["f"]) == (seq, members, f)
                       and status["last_executed"] >= seq for status in statuses)

        wait_until(applied, 60, f"members {members} with f = {f} from sequence number {seq}")

    def webhook() -> dict:
        code, verdict = http_json("POST", f"{base_url}/webHook", {"branch": "main"})
        assert code == 200 and verdict["status"] == "success", verdict
        return verdict

    try:
        for node_id in range(4):
            start(node_id)
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            webhook()
            pids = {node: nodes.status(node)["pid"] for node in (0, 1)}

            # Node 4 joins: no member yet, it links to the members its file names.
            entry, path = joined(tmp_path, 4, ports[4], source)
            nodes.config = load_config(path, read_secrets=False)
            start(4, path)
            assert nodes.status(4)["members"] == [0, 1, 2, 3]
            data["nodes"].append(entry)
            seq = changed(tmp_path, base_url, source, data, "five")
            nodes.config = load_config(tmp_path / "five.yaml", read_secrets=False)
            members_are(seq, [0, 1, 2, 3, 4], 1)
            # A quorum of five with f = 1 is four: with node 3 down, node 4 makes it.
            nodes.kill(3, signal.SIGKILL)
            webhook()
            start(3)

            # Nodes 5 and 6 join, and f becomes 2.
            files = {}
            for node_id in (5, 6):
                entry, files[node_id] = joined(tmp_path, node_id, ports[node_id], source)
                data["nodes"].append(entry)
            data["f"] = 2
            # Seven nodes would relay votes by default; the protocol changes only at a restart.
            data["protocol"] = {**data.get("protocol", {}), "relay_votes": False}
            (tmp_path / "seven.yaml").write_text(yaml.safe_dump(data))
            nodes.config = load_config(tmp_path / "seven.yaml", read_secrets=False)  # where the test finds them
            for node_id, path in files.items():
                start(node_id, path)
            seq = changed(tmp_path, base_url, source, data, "seven")
            members_are(seq, list(range(7)), 2)
            nodes.kill(2, signal.SIGKILL)  # five of six left, as f = 2 allows one more
            webhook()
            start(2)

            # Node 1's key is rotated: its host makes the next key, the node signs with it
            # from the change that names it.
            entry, _ = joined(tmp_path, 1, config.node(1).port, source, rotate=True)
            before = data["nodes"][1]["public_key"]
            data["nodes"][1] = {**data["nodes"][1], "public_key": entry["public_key"]}
            assert entry["public_key"] != before
            seq = changed(tmp_path, base_url, source, data, "rotated")
            members_are(seq, list(range(7)), 2)
            webhook()

            # Back to four: nodes 3, 5 and 6 leave, f is 1 again.
            data["nodes"] = [node for node in data["nodes"] if node["id"] not in (3, 5, 6)]
            data["f"] = 1
            seq = changed(tmp_path, base_url, source, data, "four")
            members_are(seq, [0, 1, 2, 4], 1)
            for node_id in (3, 5, 6):
                nodes.kill(node_id, signal.SIGTERM)
            nodes.kill(2, signal.SIGKILL)  # three of the four make a quorum; node 1 with its new key
            assert set(webhook()["agreed_by"]) <= {0, 1, 4}
            start(2)

            final = load_config(tmp_path / "four.yaml", read_secrets=False).digest

            seen: list[set] = []

            def agreed() -> bool:
                statuses = [nodes.status(node) for node in (0, 1, 2, 4)]
                seen[:] = [{(s["id"], s["last_executed"], s["state_digest"][:8], s["network"]["digest"][:8])
                            for s in statuses}]
                return (len({(s["last_executed"], s["state_digest"], s["network"]["digest"]) for s in statuses}) == 1
                        and statuses[0]["network"]["digest"] == final)

            try:
                wait_until(agreed, 60, "every member with the same ledger and document")
            except AssertionError:
                raise AssertionError(f"the members differ (id, executed, state, document): {seen}") from None
            code, network = http_json("GET", f"{base_url}/network")
            assert network["client"]["network"]["digest"] == final
            # Nodes 0 and 1 ran through every change in the processes they started in.
            assert {node: nodes.status(node)["pid"] for node in (0, 1)} == pids

            # A node whose file an operator replaced by the document the order made: its ledger's
            # changes still replay from the document the ledger started from, into the same epoch.
            nodes.kill(0, signal.SIGTERM)
            nodes.start(0, config_path=tmp_path / "four.yaml")
            status = nodes.status(0)
            assert (status["epoch"], status["members"], status["network"]["digest"]) == (seq, [0, 1, 2, 4], final)
    finally:
        nodes.close()
