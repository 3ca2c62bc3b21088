"""Hosts in network namespaces for the one-node-per-host tests: each node and the client on a
host of its own with its own address on one switch (tests/support/netns.py), each holding only
its own private key and a copy of the operators' network YAML in a folder of its own (its
/etc/pbft-ci); docs/operations.md's commands run on them, as the README gives them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from harness.builds import remove_builds, remove_builds_under
from shared.config import NetworkConfig
from tests.e2e.example_network import E2E_MARKS, EXAMPLE_REPO, FEATURE_EXIT_CODE, branch_commit
from tests.support.netns import Lan, sweep_stale_namespaces
from tests.support.readme import code_blocks, section


# End to end, slow, and root for the namespaces.
NETNS_MARKS = [
    *E2E_MARKS,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs the suite as root)"),
]
REPO_ROOT = Path(__file__).resolve().parents[2]
NODES = 4
DOCS_SECTION = "One node per host"
ETC = "/etc/pbft-ci"  # each test host's folder stands for it
WEBHOOK_TIMEOUT_S = 120
START_TIMEOUT_S = 60
STOP_GRACE_S = 10
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_the_test() -> None:
    """In a child before exec: SIGKILL it when the test process dies, even by SIGKILL, so no
    node outlives a run killed before its teardown."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Hosts:
    """The LAN, each host's folder, and the processes started on the hosts."""

    def __init__(self, root: Path, nodes: int = NODES) -> None:
        """`nodes` hosts for nodes (the first NODES of them in the README's network) and the client's."""
        self.lan = Lan([f"node-{i}" for i in range(nodes)] + ["client"])
        # Named after the LAN, so that what a killed run left in Docker can be found by its tag.
        self.root = root / self.lan.tag
        self.processes: dict[str, subprocess.Popen] = {}

    def folder(self, name: str) -> Path:
        """What /etc/pbft-ci is on that host: its keys, and its copy of network.yaml."""
        return self.root / name

    def run(self, name: str, command: list[str], stdout: Path | None = None) -> subprocess.CompletedProcess:
        """A README command on host `name`, from the repository root (/opt/pbft-ci)."""
        with open(stdout, "w") if stdout else contextlib.nullcontext(subprocess.PIPE) as output:
            return subprocess.run([*self.lan.exec_prefix(name), *command], cwd=REPO_ROOT, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.PIPE)

    def start(self, name: str, command: list[str]) -> None:
        output = (self.folder(name) / "stdout").open("wb")
        self.processes[name] = subprocess.Popen(
            [*self.lan.exec_prefix(name), *command], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_the_test,
        )
        output.close()

    def call_in(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        return self.lan.call_in(name, function, *args)

    def tails(self) -> str:
        """The last lines each host's processes wrote, for failure messages."""
        parts = []
        for name in self.processes:
            for path in (self.folder(name) / "stdout", *sorted((self.folder(name) / "log").glob("*.log"))):
                if path.exists():
                    lines = path.read_text(errors="replace").splitlines()[-15:]
                    parts.append(f"--- {name}: {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every process started (systemctl stop), SIGKILL what is left after the grace."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def remove_builds_of_runs(tags: set[str]) -> None:
    """The build containers and volumes of nodes of runs killed before their teardown (their
    data directories lie under a folder named after the run's tag)."""
    if tags:
        remove_builds(lambda data_dir: any(part in tags for part in data_dir.parts))


@contextlib.contextmanager
def lan_of_hosts(tmp_path: Path, nodes: int = NODES):
    """A LAN of hosts, torn down with everything the test started on it."""
    remove_builds_of_runs(sweep_stale_namespaces())
    hosts = Hosts(tmp_path, nodes)
    try:
        hosts.lan.create()
        yield hosts
    finally:
        try:
            hosts.stop()
        finally:
            hosts.lan.destroy()
            remove_builds_under(tmp_path)
    assert not hosts.lan.leftovers(), hosts.lan.leftovers()




# --- HTTP from inside a host (run through Hosts.call_in) -------------------------------


def http_json(method: str, url: str, token: str | None = None, body: dict | None = None,
              timeout_s: float = 5) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def answers(url: str, token: str | None = None) -> bool:
    try:
        return http_json("GET", url, token, timeout_s=1)[0] == 200
    except (OSError, ValueError):
        return False


def connect_time_s(host: str, port: int) -> float:
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5):
        return time.monotonic() - started


def wait_until(condition: Callable[[], Any], timeout_s: float, what: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what()}")
        time.sleep(0.2)


# --- the README's commands and YAML ---------------------------------------------------


class ReadmeCommands:
    """The `.venv/bin/python ...` lines of the README's "One node per host", for one test host:
    its folder stands for /etc/pbft-ci, and the node id or client name for the README's."""

    def __init__(self) -> None:
        blocks = code_blocks(section(DOCS_SECTION), "sh")
        self.lines = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()
                      if line.startswith(".venv/bin/python ")]

    def get(self, *words: str, folder: Path, node: int | None = None, client: str | None = None,
            files: dict[str, Path] | None = None) -> tuple[list[str], Path | None]:
        """The one line whose arguments start with `words`, as argv, and where `>` sends its output."""
        matches = [argv for argv in self.lines if argv[1:1 + len(words)] == list(words)]
        assert len(matches) == 1, f"README, {DOCS_SECTION}: {len(matches)} lines start with {words}"
        argv, stdout = matches[0], None
        if ">" in argv:
            argv, stdout = argv[:argv.index(">")], argv[argv.index(">") + 1]
        command = []
        for previous, word in zip([None, *argv], argv):
            if previous in ("--node", "--id"):
                word = str(node)
            elif previous == "--client":
                word = client
            command.append(self.on_host(word, folder, files or {}))
        return command, None if stdout is None else Path(self.on_host(stdout, folder, {}))

    @staticmethod
    def on_host(word: str, folder: Path, files: dict[str, Path]) -> str:
        if word.startswith(ETC + "/"):
            return str(folder / word[len(ETC) + 1:])
        return str(files.get(word, word))


def readme_yaml() -> dict:
    return yaml.safe_load(code_blocks(section(DOCS_SECTION), "yaml")[0])


def operators_yaml(hosts: Hosts, public_keys: dict) -> dict:
    """The README's network YAML with the test's addresses and keys; the example repository;
    and, with every host's folders under one directory here, data and logs next to each copy."""
    network = readme_yaml()
    assert [node["id"] for node in network["nodes"]] == list(range(NODES)) and len(network["clients"]) == 1
    for node in network["nodes"]:
        node.update(host=hosts.lan.hosts[f"node-{node['id']}"].address, public_key=public_keys[node["id"]])
    client = network["clients"][0]
    client.update(host=hosts.lan.hosts["client"].address, public_key=public_keys[client["name"]])
    network["repositories"] = [{"name": "example", "url": str(EXAMPLE_REPO)}]
    assert (network["data_dir"], network["log_dir"]) == ("/var/lib/pbft-ci", "/var/log/pbft-ci"), network
    network.update(data_dir="data", log_dir="log")
    return network


def key_ceremony(hosts: Hosts, readme: ReadmeCommands) -> None:
    """Each host makes its key; the operator writes network.yaml with the public keys and
    copies it to every host, which checks it."""
    client = readme_yaml()["clients"][0]["name"]
    public_keys: dict[int | str, str] = {}
    for i in range(NODES):
        folder = hosts.folder(f"node-{i}")
        made = hosts.run(f"node-{i}", readme.get("scripts/nodekey.py", "generate", "--node", folder=folder, node=i)[0])
        assert made.returncode == 0, made.stderr
        public_keys[i] = made.stdout.strip()
    folder = hosts.folder("client")
    made = hosts.run("client", readme.get("scripts/nodekey.py", "generate", "--client", folder=folder,
                                          client=client)[0])
    assert made.returncode == 0, made.stderr
    public_keys[client] = made.stdout.strip()
    made = hosts.run("client", *readme.get("-c", folder=folder))
    assert made.returncode == 0, made.stderr

    operator = hosts.root / "operator-network.yaml"
    operator.write_text(yaml.safe_dump(operators_yaml(hosts, public_keys), sort_keys=False))
    for name in [*(f"node-{i}" for i in range(NODES)), "client"]:  # the network's first hosts
        (hosts.folder(name) / "network.yaml").write_text(operator.read_text())

    for i in range(NODES):
        folder = hosts.folder(f"node-{i}")
        checked = hosts.run(f"node-{i}", readme.get("scripts/nodekey.py", "check", ETC + "/network.yaml", "--node",
                                                    folder=folder, node=i)[0])
        assert checked.returncode == 0 and checked.stdout.startswith(f"ok: node {i} "), checked
        # With one node per host, the host holds its own private key and nothing else secret.
        assert sorted(path.name for path in (folder / "keys").iterdir()) == [f"node-{i}.key", f"node-{i}.pub"]
    checked = hosts.run("client", readme.get("scripts/nodekey.py", "check", ETC + "/network.yaml", "--client",
                                             folder=hosts.folder("client"), client=client)[0])
    assert checked.returncode == 0 and checked.stdout.startswith(f"ok: client '{client}' "), checked


def status_url(config: NetworkConfig, node_id: int) -> str:
    node = config.node(node_id)
    return f"http://{node.host}:{node.port}/status"


def status(hosts: Hosts, config: NetworkConfig, node_id: int) -> dict:
    """GET /status of a node, asked on its own host."""
    code, body = hosts.call_in(f"node-{node_id}", http_json, "GET", status_url(config, node_id))
    assert code == 200, body
    return body


def verdicts_at(hosts: Hosts, config: NetworkConfig, node_id: int, seq: int) -> list[tuple]:
    """(build, verdict state, agreed result) of each build a node ordered at `seq`, asked on its host."""
    node = config.node(node_id)
    code, body = hosts.call_in(f"node-{node_id}", http_json, "GET", f"http://{node.host}:{node.port}/builds/{seq}")
    if code != 200:
        return [(f"GET /builds/{seq} answered {code}", None, None)]
    return [((record["client"], record["timestamp"]), record["verdict"]["state"], record["verdict"]["result"])
            for record in body["builds"]]


def start_network(hosts: Hosts, readme: ReadmeCommands, config: NetworkConfig) -> tuple[str, str]:
    for i in range(NODES):
        hosts.start(f"node-{i}", readme.get("node/index.py", folder=hosts.folder(f"node-{i}"), node=i)[0])
    hosts.start("client", readme.get("client/index.py", "--config", folder=hosts.folder("client"))[0])
    token = config.clients[0].token
    base_url = f"http://{config.clients[0].host}:{config.clients[0].port}"

    def all_up() -> bool:
        for name, process in hosts.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}\n{hosts.tails()}"
        nodes_up = all(hosts.call_in(f"node-{i}", answers, status_url(config, i)) for i in range(NODES))
        return nodes_up and hosts.call_in("client", answers, f"{base_url}/builds", token)

    wait_until(all_up, START_TIMEOUT_S, hosts.tails)
    return base_url, token


def webhook(hosts: Hosts, base_url: str, token: str, branch: str) -> dict:
    """The README's curl with the bearer token, sent on the client's host; checks the verdict."""
    code, verdict = hosts.call_in("client", http_json, "POST", f"{base_url}/webHook", token, {"branch": branch},
                                  WEBHOOK_TIMEOUT_S)
    assert code == 200, (branch, code, verdict, hosts.tails())
    expected = ("success", 0) if branch == "master" else ("failure", FEATURE_EXIT_CODE)
    assert (verdict["status"], verdict["exit_code"]) == expected, verdict
    assert verdict["commit"] == branch_commit(branch), verdict
    assert len(set(verdict["agreed_by"])) >= 2, verdict
    return verdict


def verify_certificate_on_another_host(hosts: Hosts, readme: ReadmeCommands, base_url: str, token: str,
                                      verdict: dict) -> None:
    """The certificate, checked offline with the public keys of node 3's copy of the YAML."""
    code, certificate = hosts.call_in("client", http_json, "GET",
                                      f"{base_url}/builds/{verdict['build_id']}/certificate", token)
    assert code == 200, certificate
    path = hosts.root / "cert.json"
    path.write_text(json.dumps(certificate))
    checked = hosts.run("node-3", readme.get("client/index.py", "verify", folder=hosts.folder("node-3"),
                                             files={"cert.json": path})[0])
    assert checked.returncode == 0 and checked.stdout.startswith("valid:"), checked


def set_up_hosts() -> None:
    """Every node host runs the set-up (packages, Docker engine, build image); here they share one
    machine, and the example repository it makes stands for the repository URL of a deployment."""
    setup = subprocess.run(["./scripts/setup.sh"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                           stdin=subprocess.DEVNULL)
    assert setup.returncode == 0, setup.stdout + setup.stderr
