"""The key ceremony of a network with one node per host (scripts/nodekey.py), and what a node,
client or action runner does with only its own private key.

Each "host" here is a folder of its own holding only that host's keys, as
on separate machines; the commands run as the README's "One node per host"
section gives them.
"""

from __future__ import annotations

import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.network import free_ports, write_network
from runner.config import load_runner_config
from scripts import nodekey as nodekey_script
from shared.cli import own_key_problem
from shared.config import load_config
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES = 4


def run(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def nodekey(*args: str | Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "scripts/nodekey.py", *args)


def generate(host: Path, *who: str) -> str:
    """`nodekey.py generate` on one host: the public key it printed."""
    result = nodekey("generate", *who, "--keys-dir", host / "keys")
    assert result.returncode == 0, result.stderr
    public_key = result.stdout.strip()
    assert len(public_key) == 64 and f"public_key: {public_key}" in result.stderr, result
    return public_key


def generate_here(host: Path, *who: str) -> str:
    """`generate`'s own code in this process, for the hosts a test needs but does not test the
    command with (`generate` runs it as the README does, for the tests of the command): the
    public key it wrote."""
    assert nodekey_script.main(["generate", *who, "--keys-dir", str(host / "keys")]) == 0
    [public] = (host / "keys").glob("*.pub")
    return public.read_text().strip()


@pytest.fixture
def ceremony(tmp_path):
    """Four node hosts and a client host, each with only its own key, and the operator's YAML
    (inline public keys) copied to every host. Returns (hosts, public keys, write(data))."""
    hosts = {name: tmp_path / name for name in [f"node-{i}" for i in range(NODES)] + ["client"]}
    keys = {f"node-{i}": generate_here(hosts[f"node-{i}"], "--node", str(i)) for i in range(NODES)}
    keys["client"] = generate_here(hosts["client"], "--client", "ci")
    ports = free_ports(NODES + 1)
    data = {
        "f": 1,
        "nodes": [{"id": i, "host": "127.0.0.1", "port": ports[i], "public_key": keys[f"node-{i}"]}
                  for i in range(NODES)],
        # The token file exists on the client's host only: nodes never read the client's secrets.
        "clients": [{"name": "ci", "host": "127.0.0.1", "port": ports[-1], "public_key": keys["client"],
                     "token_file": "client.token"}],
        "repositories": [{"name": "example", "url": str(tmp_path / "repo")}],
        "keys_dir": "keys",
        "data_dir": "data",
        "log_dir": "log",
    }

    def write(data: dict) -> None:
        for host in hosts.values():
            (host / "network.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    write(data)
    (hosts["client"] / "client.token").write_text(secrets.token_hex(32) + "\n")
    return hosts, data, write


def test_generate_writes_a_private_key_for_its_owner_only_and_never_replaces_it(tmp_path):
    public_key = generate(tmp_path, "--node", "2")
    private = tmp_path / "keys" / "node-2.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700
    assert (tmp_path / "keys" / "node-2.pub").read_text().strip() == public_key
    shown = nodekey("show", "--node", "2", "--keys-dir", tmp_path / "keys")
    assert (shown.returncode, shown.stdout.strip()) == (0, public_key)

    before = private.read_bytes()
    again = nodekey("generate", "--node", "2", "--keys-dir", tmp_path / "keys")
    assert again.returncode == 1 and "never replaced" in again.stderr and public_key in again.stderr
    assert private.read_bytes() == before
    assert "PRIVATE" not in again.stdout + again.stderr + shown.stdout


def test_show_and_bad_arguments_say_what_is_wrong(tmp_path):
    missing = nodekey("show", "--node", "3", "--keys-dir", tmp_path / "keys")
    assert missing.returncode == 1
    assert "no private key for node 3" in missing.stderr and "generate --node 3" in missing.stderr
    for args in (("generate", "--client", "../etc", "--keys-dir", tmp_path),
                 ("generate", "--node", "-1", "--keys-dir", tmp_path),
                 ("generate", "--node", "1", "--client", "ci", "--keys-dir", tmp_path),
                 ("show", "--node", "1"),
                 ("check", "--node", "1")):
        result = nodekey(*args)
        assert result.returncode == 2, (args, result)
        assert "error:" in result.stderr, (args, result.stderr)
    assert not list(tmp_path.iterdir())


def test_every_host_checks_the_operators_yaml_against_its_own_key(ceremony):
    hosts, data, _write = ceremony
    for i in range(NODES):
        result = nodekey("check", hosts[f"node-{i}"] / "network.yaml", "--node", str(i))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"ok: node {i} (127.0.0.1:{data['nodes'][i]['port']})"), result.stdout
        assert "note:" not in result.stdout  # each host holds only its own private key
    client = nodekey("check", hosts["client"] / "network.yaml", "--client", "ci")
    assert client.returncode == 0 and client.stdout.startswith("ok: client 'ci'"), client
    # The client's host needs its token; a node's host has none.
    (hosts["client"] / "client.token").unlink()
    tokenless = nodekey("check", hosts["client"] / "network.yaml", "--client", "ci")
    assert tokenless.returncode == 1 and "clients[0].token_file: cannot read" in tokenless.stderr, tokenless


def test_a_key_pasted_into_the_wrong_entry_is_named(ceremony):
    hosts, data, write = ceremony
    nodes = data["nodes"]
    nodes[1]["public_key"], nodes[2]["public_key"] = nodes[2]["public_key"], nodes[1]["public_key"]
    write(data)
    result = nodekey("check", hosts["node-2"] / "network.yaml", "--node", "2")
    assert result.returncode == 1
    assert "mismatch: node 2's entry" in result.stderr and "this host's key is node 1's" in result.stderr, result.stderr

    wrong_host = nodekey("check", hosts["node-2"] / "network.yaml", "--node", "3")
    assert wrong_host.returncode == 1 and "no private key for node 3" in wrong_host.stderr
    absent = nodekey("check", hosts["node-2"] / "network.yaml", "--node", "7")
    assert absent.returncode == 1 and "has no node 7 (it has: 0, 1, 2, 3)" in absent.stderr


def test_check_catches_shared_keys_and_addresses(ceremony):
    hosts, data, write = ceremony
    data["nodes"][3]["public_key"] = data["nodes"][0]["public_key"]
    data["nodes"][2]["port"] = data["nodes"][1]["port"]
    write(data)
    result = nodekey("check", hosts["node-0"] / "network.yaml", "--node", "0")
    assert result.returncode == 1
    assert "node 3 has the same public key as node 0" in result.stderr, result.stderr
    assert f"node 2 listens on 127.0.0.1:{data['nodes'][1]['port']}, as node 1 does" in result.stderr

    data["nodes"][3].update(id=1, public_key=generate(hosts["node-3"] / "again", "--node", "3"))
    data["nodes"][2]["port"] += 1000
    write(data)
    result = nodekey("check", hosts["node-0"] / "network.yaml", "--node", "0")
    assert result.returncode == 1 and "each id must be a node's own; got [0, 1, 1, 2]" in result.stderr, result.stderr


def test_check_refuses_a_private_key_others_can_read(ceremony):
    hosts, _data, _write = ceremony
    (hosts["node-1"] / "keys" / "node-1.key").chmod(0o644)
    result = nodekey("check", hosts["node-1"] / "network.yaml", "--node", "1")
    assert result.returncode == 1 and "readable by others (mode 0644): chmod 600" in result.stderr


def test_a_node_or_client_whose_key_is_not_its_entrys_refuses_to_start(ceremony):
    hosts, data, write = ceremony
    data["nodes"][1]["public_key"], data["nodes"][2]["public_key"] = \
        data["nodes"][2]["public_key"], data["nodes"][1]["public_key"]
    write(data)
    node = run(sys.executable, "node/index.py", "--config", hosts["node-2"] / "network.yaml", "--id", "2")
    assert node.returncode == 2
    assert "the private key at" in node.stderr and "is not node 2's" in node.stderr, node.stderr
    elsewhere = run(sys.executable, "node/index.py", "--config", hosts["node-2"] / "network.yaml", "--id", "3")
    assert elsewhere.returncode == 2
    assert "no private key for node 3" in elsewhere.stderr and "nodekey.py generate --node 3" in elsewhere.stderr
    data["clients"][0]["public_key"] = public_key_hex(generate_private_key())
    write(data)
    client = run(sys.executable, "client/index.py", "--config", hosts["client"] / "network.yaml")
    assert client.returncode == 2 and "is not client 'ci''s" in client.stderr, client.stderr


def test_an_entry_that_names_the_nodes_next_key_passes_the_check_and_the_start(ceremony):
    """After a change re-keys node 1 (scripts/network.py join --next), its host's file may name
    the key that replaced the old one: both the check and the node's start take it."""
    hosts, data, write = ceremony
    keys = hosts["node-1"] / "keys"
    next_key = generate_private_key()
    save_private_key(next_key, keys / "node-1.next.key")
    data["nodes"][1]["public_key"] = public_key_hex(next_key)
    write(data)
    result = nodekey("check", hosts["node-1"] / "network.yaml", "--node", "1")
    assert result.returncode == 0 and "node-1.next.key" in result.stdout, result.stdout + result.stderr
    config = load_config(hosts["node-1"] / "network.yaml", read_secrets=False)
    assert own_key_problem(config, node_id=1) is None
    (keys / "node-1.next.key").unlink()
    assert "is not node 1's" in own_key_problem(config, node_id=1)


def test_keygen_leaves_entries_whose_key_lives_on_another_host_alone(ceremony):
    hosts, data, write = ceremony
    # Node 2 is listed by key file, as a one-machine network does; its file is not made yet.
    data["nodes"][2] = {key: value for key, value in data["nodes"][2].items() if key != "public_key"}
    data["nodes"][2]["public_key_file"] = "keys/node-2.pub"
    write(data)
    host = hosts["node-2"]
    (host / "keys" / "node-2.pub").unlink()
    before = (host / "keys" / "node-2.key").read_bytes()
    result = run(sys.executable, "scripts/keygen.py", host / "network.yaml")
    assert result.returncode == 0, result.stderr
    assert "0 created, 1 kept, 4 on other hosts" in result.stdout, result.stdout
    assert sorted(path.name for path in (host / "keys").iterdir()) == ["node-2.key", "node-2.pub"]
    assert (host / "keys" / "node-2.key").read_bytes() == before
    assert nodekey("check", host / "network.yaml", "--node", "2").returncode == 0


def test_a_runner_on_a_host_of_its_own_makes_its_key_there_and_starts_with_it(ceremony, tmp_path):
    hosts, data, write = ceremony
    host = tmp_path / "runner"
    public_key = generate(host, "--runner", "deploy")
    assert sorted(path.name for path in (host / "keys").iterdir()) == ["runner-deploy.key", "runner-deploy.pub"]
    data["clients"][0]["runners"] = [{"name": "deploy", "public_key": public_key}]
    write(data)
    (host / "network.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    # The runner's host holds neither the client's token nor any other key.
    result = nodekey("check", host / "network.yaml", "--runner", "deploy")
    assert result.returncode == 0 and result.stdout.startswith("ok: runner 'deploy' in "), result
    assert "6 distinct keys" in result.stdout, result.stdout
    absent = nodekey("check", host / "network.yaml", "--runner", "other")
    assert absent.returncode == 1 and "has no runner 'other' in any client's runners (it has: deploy)" in absent.stderr
    (host / "runner.yaml").write_text(yaml.safe_dump({"network": "network.yaml", "name": "deploy",
                                                      "client_url": "http://127.0.0.1:8080"}))
    assert load_runner_config(host / "runner.yaml").key.public_key().raw.hex() == public_key


def test_keygen_makes_the_key_of_a_runner_a_client_lists(tmp_path):
    path = write_network(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["clients"][0]["runners"] = [{"name": "deploy", "public_key_file": "keys/runner-deploy.pub"}]
    path.write_text(yaml.safe_dump(data))
    result = run(sys.executable, "scripts/keygen.py", path)
    assert result.returncode == 0 and "1 created, 5 kept" in result.stdout, result
    private = tmp_path / "keys" / "runner-deploy.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_config(path).clients[0].runner("deploy").public_key == \
        public_key_hex(load_private_key(private))
