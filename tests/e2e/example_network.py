"""The example network run with the README's own scripts, as the end-to-end tests check it:
its verdicts, node status and logs, and copies of its config with a data directory of their
own. What benches use too (the scripts and the client as processes, webhooks and their
certificates, repositories to build) is in harness/."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import yaml

from harness.network import free_ports
from harness.scripts import listening
from harness.verdicts import WEBHOOK_TIMEOUT_S, check_certificate, http_json
from shared.config import NetworkConfig, load_config
from tests.client.forge_deliveries import GITHUB_PUSH, encoded, github_headers

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO_ROOT / "example-config" / "network.yaml"
EXAMPLE_REPO = REPO_ROOT / "data" / "example-repo"
LOG_DIR = REPO_ROOT / "log"

FEATURE_EXIT_CODE = 3  # example-config/project-feature makes test.sh exit with 3


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


E2E_MARKS = [
    pytest.mark.e2e,
    pytest.mark.docker,
    pytest.mark.skipif(
        not _docker_answers(),
        reason="no Docker engine answers `docker info` (scripts/setup.sh installs and starts one as root on Debian)",
    ),
]


# End-to-end tests on a network of their own (example_copy, or write_network's fresh keys and
# ports) and their own PBFT_CI_RUN_DIR: they run beside the machine's group (tests/conftest.py).
OWN_NETWORK = pytest.mark.own_network
OWN_NETWORK_MARKS = [*E2E_MARKS, OWN_NETWORK]


def running_node(pid: int) -> bool:
    """True when `pid` is alive and runs a node (a zombie's command line is empty)."""
    try:
        return b"node/index.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_dir() -> Path:
    """Where the scripts keep their pid files: the test's own folder, which the e2e fixtures
    name in PBFT_CI_RUN_DIR, so that networks of tests on other workers are not this one's."""
    return REPO_ROOT / os.environ.get("PBFT_CI_RUN_DIR", "run")


def network_pids() -> dict[int, int]:
    """Node id → pid, from the pid file startNetwork.sh writes."""
    pids = {}
    for line in (run_dir() / "network.pids").read_text().splitlines():
        pid, node_id, _config = line.split(" ", 2)
        pids[int(node_id)] = int(pid)
    return pids


@contextmanager
def named_client(config_path: Path, name: str, log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Client `name` of the configuration at `config_path` (client/index.py --name), in a process
    group of its own; yields its URL and the process, stopped at the end."""
    entry = load_config(config_path).client(name)
    command = [sys.executable, "client/index.py", "--config", str(config_path), "--name", name,
               "--log-file", str(log_path)]
    with listening(command, entry.host, entry.port, log_path.with_suffix(".out")) as process:
        yield f"http://{entry.host}:{entry.port}", process


def github_push(base_url: str, branch: str, head: str, delivery: str) -> str:
    """A signed GitHub push of `head` to a new `branch`, delivered as `delivery`; returns the
    build id it started."""
    payload = copy.deepcopy(GITHUB_PUSH)
    payload.update({"ref": f"refs/heads/{branch}", "after": head, "before": "0" * 40, "commits": [],
                    "head_commit": {**GITHUB_PUSH["head_commit"], "id": head}})
    body = encoded(payload)
    code, answer = http_json("POST", f"{base_url}/webHook", body, github_headers(body, event="push", delivery=delivery))
    assert code == 202, answer
    return answer["build_id"]


def settled(status_url: str, timeout_s: float = 120, headers: dict | None = None) -> dict:
    """The record at a build's status URL once it has its verdict (read with `headers`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, record = http_json("GET", status_url, headers=headers)
        if code == 200 and record.get("state") != "pending":
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.5)


def branch_commit(branch: str) -> str:
    return subprocess.run(
        ["git", "-C", str(EXAMPLE_REPO), "rev-parse", f"refs/heads/{branch}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def webhook(base_url: str, config: NetworkConfig, branch: str, timeout_s: float = WEBHOOK_TIMEOUT_S) -> dict:
    code, verdict = http_json("POST", f"{base_url}/webHook", {"branch": branch}, timeout_s=timeout_s)
    assert code == 200, (branch, code, verdict)
    assert {"status", "exit_code", "commit", "agreed_by", "build_id", "elapsed_ms"} <= verdict.keys(), verdict
    assert len(set(verdict["agreed_by"])) >= config.f + 1, verdict
    check_certificate(base_url, config, verdict)
    return verdict


def check_three_verdicts(base_url: str, config: NetworkConfig) -> list[dict]:
    """master passes, feature fails with the test's exit code, a missing branch is an error."""
    master = webhook(base_url, config, "master")
    assert (master["status"], master["exit_code"]) == ("success", 0), master
    assert master["commit"] == branch_commit("master"), master

    feature = webhook(base_url, config, "feature")
    assert (feature["status"], feature["exit_code"]) == ("failure", FEATURE_EXIT_CODE), feature
    assert feature["commit"] == branch_commit("feature"), feature

    missing = webhook(base_url, config, "no-such-branch")
    assert missing["status"] == "error", missing
    assert missing.get("reason"), missing
    return [master, feature, missing]


def node_status(config: NetworkConfig, node_id: int) -> dict:
    node = config.node(node_id)
    with urllib.request.urlopen(f"http://{node.host}:{node.port}/status", timeout=5) as response:
        return json.load(response)


def log_offsets(log_dir: Path = LOG_DIR) -> dict[str, int]:
    """Current sizes of the logs in `log_dir`, so a test reads only what it caused."""
    names = [f"node-{i}.log" for i in range(4)] + ["client.log"]
    return {name: (log_dir / name).stat().st_size if (log_dir / name).exists() else 0 for name in names}


def new_log_text(name: str, offsets: dict[str, int] | None = None, log_dir: Path = LOG_DIR) -> str:
    """What log `name` in `log_dir` got since `offsets` were taken; all of it without them."""
    path = log_dir / name
    assert path.exists(), f"{path} does not exist"
    with path.open("rb") as log:
        log.seek((offsets or {}).get(name, 0))
        return log.read().decode(errors="replace")


def check_logs(offsets: dict[str, int], started_at: float) -> None:
    for node_id in range(4):
        text = new_log_text(f"node-{node_id}.log", offsets)
        assert re.search(rf"node={node_id} view=\d+ seq=\d+ phase=\S+ digest=[0-9a-f]+", text), text[-2000:]
        assert re.search(r"build .*status=\w+ exit_code=", text), text[-2000:]
    text = new_log_text("client.log", offsets)
    assert re.search(r"submitted build \d+", text), text[-2000:]
    assert re.search(r"accepted build \d+: .*status=\w+", text), text[-2000:]
    outputs = [path for path in LOG_DIR.glob("build-*.log") if path.stat().st_mtime >= started_at]
    assert outputs, f"no build output file written under {LOG_DIR}"
    assert any(path.stat().st_size > 0 for path in outputs), outputs


def liar_config(tmp_path: Path) -> Path:
    """The example config with byzantine switches allowed, every path made absolute."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    here = EXAMPLE_CONFIG.parent
    data["allow_byzantine"] = True
    for key in ("keys_dir", "data_dir", "log_dir"):
        data[key] = str((here / data[key]).resolve())
    runners = [runner for client in data["clients"] for runner in client.get("runners", [])]
    owners = data.get("owners", {}).get("keys", [])
    for entry in data["nodes"] + data["clients"] + runners + owners:
        entry["public_key_file"] = str((here / entry["public_key_file"]).resolve())
    for repository in data["repositories"]:
        repository["url"] = str((here / repository["url"]).resolve())
    if data.get("in_toto_layout"):
        data["in_toto_layout"] = str((here / data["in_toto_layout"]).resolve())
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


EXECUTE_LINE = re.compile(r"node=(\d+) view=\d+ seq=(\d+) phase=execute digest=([0-9a-f]+)")


def wait_for_statuses(config: NetworkConfig, nodes, done, timeout_s: float = 30) -> dict[int, dict]:
    """Statuses of `nodes` once `done` holds for each (nodes finish a step at slightly different times)."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = {node_id: node_status(config, node_id) for node_id in nodes}
        if all(done(s) for s in statuses.values()) or time.monotonic() >= deadline:
            return statuses
        time.sleep(0.2)


def wait_logged(config: NetworkConfig, verdicts: int, timeout_s: float = 60) -> dict[int, dict]:
    """Every node's verdict log head once it co-signs `verdicts` verdicts or more: the network has
    ordered the batch that logged them (about a second after they were certified) and is idle."""
    deadline = time.monotonic() + timeout_s
    heads: dict[int, dict] = {}
    while True:
        for node in config.nodes:
            code, head = http_json("GET", f"http://{node.host}:{node.port}/log/head")
            heads[node.id] = head if code == 200 else {"size": -1, "answer": head}
        if all(head["size"] >= verdicts for head in heads.values()):
            return heads
        assert time.monotonic() < deadline, f"verdict log heads: {heads}"
        time.sleep(0.2)


def record_on(config: NetworkConfig, node_id: int, build_id: int) -> dict:
    """Node `node_id`'s ledger record of the client's build `build_id` (its request's timestamp)."""
    node = config.node(node_id)
    code, record = http_json("GET", f"http://{node.host}:{node.port}/requests/{config.clients[0].name}/{build_id}")
    assert code == 200, record
    return record


def example_copy(tmp_path: Path, *, allow_byzantine: bool, repositories: list[dict] | None = None,
                 protocol: dict | None = None) -> Path:
    """The example network with ports, a data directory and logs of its own (`tmp_path/data`,
    `tmp_path/log`), so that it runs beside the example network and other tests' copies;
    with `repositories`, those in place of the example's; `protocol` settings over the example's.

    Nodes keep their protocol state across restarts, so the example's own
    data directory may hold any view another run left behind; a fresh one
    starts in view 0 with node 0 as the primary. Keys and the example repository stay the
    example's.
    """
    path = liar_config(tmp_path)
    data = own_ports(yaml.safe_load(path.read_text()))
    data["data_dir"] = str(tmp_path / "data")
    data["log_dir"] = str(tmp_path / "log")
    data["allow_byzantine"] = allow_byzantine
    if repositories is not None:
        data["repositories"] = repositories
    if protocol is not None:
        data["protocol"] = {**data.get("protocol", {}), **protocol}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def expect(verdict: dict, branch: str) -> None:
    if branch == "master":
        assert (verdict["status"], verdict["exit_code"]) == ("success", 0), verdict
    else:
        assert (verdict["status"], verdict["exit_code"]) == ("failure", FEATURE_EXIT_CODE), verdict
    assert verdict["commit"] == branch_commit(branch), verdict


def kill_9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running_node(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.05)


def runs_command(container, command: str) -> bool:
    """Whether a build's container runs `command` (one of its script's, as `ps` shows it). A
    container runs from its start, held at its gate (builder/engine/gate.py) while its node
    fills the workspace: before the script is handed over, a kill or its node's death ends it
    with nothing run. The engine keeps no build's output, so its processes tell."""
    try:
        container.reload()
        return container.status == "running" and any(
            command in " ".join(row) for row in container.top()["Processes"] or [])
    except docker.errors.APIError:  # gone, or ended meanwhile
        return False


def with_quick_branch(path) -> None:
    """Add a branch `quick` to a `slow_repository`, whose build passes at once."""
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-b", "quick"], check=True)
    (path / ".pbft-ci.yml").write_text("commands:\n  - echo quick\n")
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "-am", "quick"], check=True)


def poll(what: str, probe: Callable, timeout_s: float = 60, every_s: float = 0.2):
    """What `probe()` returns once it is truthy; failing, the last answer says why."""
    deadline = time.monotonic() + timeout_s
    while not (answer := probe()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s ({answer!r})"
        time.sleep(every_s)
    return answer


def finished_log(base_url: str, build_id: str, node: int) -> str:
    """Node `node`'s output of a build once it ended there (its `== status` line): a verdict
    needs only f+1 nodes, and the others may still be building when the client answers."""
    def finished() -> str | None:
        try:
            with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node={node}", timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            if error.code != 404:  # 404: the node has not started the build yet (its fetch is slower)
                raise
            return None
        return text if "\n== status " in text else None
    return poll(f"node {node}'s log of build {build_id}", finished)


def node_record(config: NetworkConfig, node_id: int, build_id: str) -> dict | None:
    """Node `node_id`'s own ledger record of the client's build `build_id` (GET
    /requests/<client>/<timestamp>); None while it has none or does not answer."""
    node = config.node(node_id)
    try:
        code, record = http_json("GET", f"http://{node.host}:{node.port}/requests/{config.clients[0].name}/{build_id}",
                                 timeout_s=5)
    except OSError:
        return None
    return record if code == 200 else None


def followed_events(url: str):
    """(event, data) pairs of a server-sent event stream, as they arrive."""
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event, data = "message", []
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") or line == "data:":
                data.append(line[len("data: "):])
            elif not line:
                if data or event != "message":
                    yield event, "\n".join(data)
                event, data = "message", []


# Three builds: two pass, FLAVOUR=three fails.
MATRIX_SPEC = """image: pbft-ci/busybox:latest
matrix:
  FLAVOUR: [one, two, three]
commands:
  - echo "flavour $FLAVOUR"
  - test "$FLAVOUR" != three
"""


def own_ports(data: dict) -> dict:
    """A network config's data with its nodes and client on free ports: other checkouts on this
    machine may run the example network meanwhile."""
    *node_ports, client_port = free_ports(len(data["nodes"]) + 1)
    for node, port in zip(data["nodes"], node_ports):
        node["port"] = port
    data["clients"][0]["port"] = client_port
    return data


def matrix_settled(base_url: str, build_id: str, timeout_s: float = 180) -> dict:
    """The record of build `build_id` once it has its verdict and, if that is a matrix, once
    every build of its combinations has one too."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, record = http_json("GET", f"{base_url}/builds/{build_id}")
        result = record.get("result") or {}
        expanded = len(record.get("matrix_builds", [])) == len(result.get("combinations", []))
        if code == 200 and record["state"] != "pending" and expanded and all(
                build["state"] != "pending" for build in record["matrix_builds"]):
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.3)
