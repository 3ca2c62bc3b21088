"""Changes of the network made by the network itself, one node per host: docs/operations.md's
"Changing the members" and "Changing the network", on hosts in network namespaces.

Four operators run the key ceremony and start their nodes with the documented commands
(tests/e2e/test_multihost_netns.py's set-up, two owners added). While builds run, the
network grows to five (node 4's host makes its key and its file and starts as no member),
to seven with f = 2, node 1's key is replaced by one its host made, a repository is added
and the build limits changed, and the network shrinks back to four. After each change a
webhook gets its verdict from real builds with a host cut off at the switch whose absence
only the new members make up for. No process restarts; at the end every member has the
same ledger (its state digest) and runs the same document.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from shared.config import load_config
from tests.e2e.network_owners import owner_keys
from tests.e2e.example_network import EXAMPLE_REPO
from tests.e2e.netns_hosts import (
    NODES, NETNS_MARKS, Hosts, ReadmeCommands, http_json, key_ceremony, lan_of_hosts, set_up_hosts, start_network,
    status, wait_until, webhook,
)

pytestmark = NETNS_MARKS

ALL_NODES = 7
OWNERS = ("ada", "bob")
CHANGE_TIMEOUT_S = 120


@pytest.fixture
def hosts(tmp_path):
    with lan_of_hosts(tmp_path, ALL_NODES) as made:
        yield made


def with_owners(hosts: Hosts) -> None:
    """The operators' YAML gets two owners, both of whom sign each change; every host's copy too."""
    operator = hosts.root / "operator-network.yaml"
    data = yaml.safe_load(operator.read_text())
    data["owners"] = {"threshold": len(OWNERS), "keys": owner_keys(hosts.root / "owners", OWNERS)}
    operator.write_text(yaml.safe_dump(data, sort_keys=False))
    for index in range(NODES):
        (hosts.folder(f"node-{index}") / "network.yaml").write_text(operator.read_text())
    (hosts.folder("client") / "network.yaml").write_text(operator.read_text())


def network_py(hosts: Hosts, host: str, *args: str) -> subprocess.CompletedProcess:
    ran = hosts.run(host, [".venv/bin/python", "scripts/network.py", *args])
    assert ran.returncode == 0, (args, ran.stdout, ran.stderr, hosts.tails())
    return ran


def joined(hosts: Hosts, node: int, port: int, source: str, *, rotate: bool = False) -> dict:
    """On node `node`'s own host: its key (or its next one), its entry and, joining, its file."""
    folder = hosts.folder(f"node-{node}")
    # Its ledger and logs in its host's folder, not where a systemd unit would keep them.
    extra = ["--next"] if rotate else ["--first-from", source, "--out", str(folder / "network.yaml"),
                                       "--data-dir", str(folder / "data"), "--log-dir", str(folder / "log")]
    made = network_py(hosts, f"node-{node}", "join", "--node", str(node), "--host",
                      hosts.lan.hosts[f"node-{node}"].address, "--port", str(port), "--keys-dir", str(folder / "keys"),
                      *extra)
    [entry] = yaml.safe_load(made.stdout)
    return entry


def test_the_network_grows_to_seven_replaces_a_key_adds_a_repository_and_shrinks_to_four(hosts):
    set_up_hosts()
    readme = ReadmeCommands()
    key_ceremony(hosts, readme)
    with_owners(hosts)
    config = load_config(hosts.folder("client") / "network.yaml")  # the client's copy: its token too
    base_url, token = start_network(hosts, readme, config)
    data = yaml.safe_load((hosts.root / "operator-network.yaml").read_text())
    source = config.node(0).url("")
    port = config.node(0).port
    token_file = str(hosts.folder("client") / "keys" / "client.token")
    pids = {node: status(hosts, config, node)["pid"] for node in range(NODES)}
    webhook(hosts, base_url, token, "master")

    def change(name: str) -> int:
        """The owners' change to `data`, proposed, signed and submitted on the client's host while
        a build runs; the sequence number it runs from."""
        wanted, made = hosts.root / f"{name}.yaml", str(hosts.root / f"{name}.json")
        wanted.write_text(yaml.safe_dump(data, sort_keys=False))
        network_py(hosts, "client", "propose", "--from", source, "--to", str(wanted), "--out", made)
        for owner in OWNERS:
            network_py(hosts, "client", "sign", made, "--key", str(hosts.root / "owners" / f"{owner}.key"),
                       "--owner", owner)
        with ThreadPoolExecutor(1) as pool:
            building = pool.submit(webhook, hosts, base_url, token, "feature")
            submitted = network_py(hosts, "client", "submit", made, "--client", base_url, "--token-file", token_file)
            building.result(timeout=CHANGE_TIMEOUT_S)  # the build's verdict, as if no change had come
        return int(submitted.stdout.split("runs from sequence number ")[1].split()[0])

    def members_are(seq: int, members: list[int], f: int, where) -> None:
        def applied() -> bool:
            try:
                statuses = [status(hosts, where, node) for node in members]
            except OSError:  # a node just started may not listen yet; one that died shows in the tails
                return False
            return all((s["epoch"], s["members"], s["f"]) == (seq, members, f) and s["last_executed"] >= seq
                       for s in statuses)

        wait_until(applied, CHANGE_TIMEOUT_S, lambda: f"members {members}, f = {f}\n{hosts.tails()}")

    def cut_off(node: int):
        hosts.lan.link(f"node-{node}", up=False)
        try:
            return webhook(hosts, base_url, token, "master")
        finally:
            hosts.lan.link(f"node-{node}", up=True)

    # Node 4 joins from its own host; with node 3 cut off, the four left make a quorum of five.
    data["nodes"].append(joined(hosts, 4, port, source))
    hosts.start("node-4", readme.get("node/index.py", folder=hosts.folder("node-4"), node=4)[0])
    seq = change("five")
    five = load_config(hosts.root / "five.yaml", read_secrets=False)
    members_are(seq, [0, 1, 2, 3, 4], 1, five)
    assert 3 not in cut_off(3)["agreed_by"]

    # Nodes 5 and 6 join and f becomes 2 (the protocol, relay_votes with it, stays as it was).
    for node in (5, 6):
        data["nodes"].append(joined(hosts, node, port, source))
        hosts.start(f"node-{node}", readme.get("node/index.py", folder=hosts.folder(f"node-{node}"), node=node)[0])
    data["f"], data["protocol"] = 2, {**data.get("protocol", {}), "relay_votes": False}
    seq = change("seven")
    seven = load_config(hosts.root / "seven.yaml", read_secrets=False)
    members_are(seq, list(range(7)), 2, seven)
    cut_off(2)

    # Node 1's key is replaced by one its host made; a repository is added, the limits change.
    entry = joined(hosts, 1, port, source, rotate=True)
    data["nodes"][1] = {**data["nodes"][1], "public_key": entry["public_key"]}
    data["repositories"].append({"name": "second", "url": str(EXAMPLE_REPO)})
    data["build"] = {**data.get("build", {}), "memory_mb": 768}
    seq = change("rotated")
    members_are(seq, list(range(7)), 2, seven)
    code, verdict = hosts.call_in("client", http_json, "POST", f"{base_url}/webHook", token,
                                  {"branch": "master", "repository": "second"}, CHANGE_TIMEOUT_S)
    assert code == 200 and verdict["status"] == "success", verdict

    # Back to four: nodes 3, 5 and 6 leave and f is 1; with node 2 cut off, node 1 (its new key)
    # and node 4 make the quorum with node 0.
    data["nodes"] = [node for node in data["nodes"] if node["id"] not in (3, 5, 6)]
    data["f"] = 1
    seq = change("four")
    four = load_config(hosts.root / "four.yaml", read_secrets=False)
    members_are(seq, [0, 1, 2, 4], 1, four)
    assert set(cut_off(2)["agreed_by"]) <= {0, 1, 4}

    def agreed() -> bool:
        statuses = [status(hosts, four, node) for node in (0, 1, 2, 4)]
        ends = {(s["last_executed"], s["state_digest"], s["network"]["digest"]) for s in statuses}
        return len(ends) == 1 and statuses[0]["network"]["digest"] == four.digest

    wait_until(agreed, CHANGE_TIMEOUT_S, lambda: str([status(hosts, four, node) for node in (0, 1, 2, 4)]))
    # No process restarted: the first four nodes run in the processes they started in.
    assert {node: status(hosts, seven, node)["pid"] for node in range(NODES)} == pids
    assert all(process.poll() is None for process in hosts.processes.values()), hosts.tails()
