"""The operator's scripts, run as a user runs them, from the repository root: every
script's --help from a plain shell; start scripts that say "up" only when the very
processes they started answer, refuse flags a running node would not take, and leave
running whatever did start; stopNetwork.sh for everything, one node or the client, and
the builds of nodes killed with kill -9; errors in one line.

Each test has its own configuration (free loopback ports, its own keys, data and
logs); the pid files are this checkout's run/, which must hold nothing running first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
import yaml

from builder.engine.host import remove_labelled_builds
from builder.workspace.checkouts import checkouts_root
from harness.network import write_network

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_PID_FILE = REPO_ROOT / "run" / "client.pid"
NETWORK_PID_FILE = REPO_ROOT / "run" / "network.pids"
EXAMPLE_REPO = REPO_ROOT / "data" / "example-repo"  # made by scripts/setup.sh, which every start script runs
SCRIPT_TIMEOUT_S = 120


def run(*command: str, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    """COMMAND from the checkout; with `run_dir`, its scripts keep their pid files there (PBFT_CI_RUN_DIR)."""
    environment = {**os.environ, "PBFT_CI_RUN_DIR": str(run_dir)} if run_dir else None
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, env=environment)


def runs_client(pid: int) -> bool:
    try:
        return "client/index.py" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# Nodes refuse to start without a build engine.
needs_docker = pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers `docker info`")


def ports_of(config: Path) -> tuple[list[int], int]:
    """The nodes' ports, by id, and the client's."""
    data = yaml.safe_load(config.read_text())
    return [node["port"] for node in sorted(data["nodes"], key=lambda node: node["id"])], data["clients"][0]["port"]


@contextmanager
def impostor(port: int, answer: dict) -> Iterator[None]:
    """Another program on 127.0.0.1:`port`, in this process, answering every GET with 200 and `answer`."""
    body = json.dumps(answer).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stopped_afterwards(tmp_path) -> Iterator[None]:
    """No client or node of this checkout's run/ may run before; ./stopNetwork.sh stops what the
    test started, and the Docker leftovers of its nodes go."""
    for pid_file in (CLIENT_PID_FILE, NETWORK_PID_FILE):
        if pid_file.exists():
            pytest.fail(f"{pid_file} exists: a client or network started by the scripts may be running; stop it first")
    yield
    stopped = run("./stopNetwork.sh")
    # What nodes the test killed left in Docker and in memory.
    if docker_answers():
        engine = docker.from_env()
        try:
            for data_dir in (tmp_path / "data").glob("node-*"):
                remove_labelled_builds(engine, data_dir.resolve())
                shutil.rmtree(checkouts_root(data_dir.resolve()), ignore_errors=True)
        finally:
            engine.close()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


SHELL_SCRIPTS = sorted([*REPO_ROOT.glob("*.sh"), *(REPO_ROOT / "scripts").glob("*.sh")])
PYTHON_COMMANDS = sorted([*(REPO_ROOT / "scripts").glob("*.py"),
                          *(REPO_ROOT / name / "index.py" for name in ("client", "node", "runner"))])
# What a plain shell has: no virtualenv on PATH, no PYTHONPATH, nothing of the caller's.
PLAIN_PATH = "/usr/bin:/bin"
# Words each help must hold, beyond the rules every help follows.
HELP_SAYS = {
    "startNetwork.sh": "--byzantine", "stopNetwork.sh": "--node ID", "startClient.sh": "--background",
    "setup.sh": "Prepare this machine", "bench.py": "--quick", "simulate.py": "--seeds", "keygen.py": "key pair",
    "nodekey.py": "generate --node 2",
}
# `python scripts/x.py` and the like: run by whichever python is first on PATH, which lacks the packages.
BARE_PYTHON = re.compile(r"(?<![\w/.])python3? (scripts|client|node|runner)/")


def plain_shell(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["env", "-i", f"PATH={PLAIN_PATH}", *command], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT_S, stdin=subprocess.DEVNULL)


def header_comment(script: Path) -> str:
    """A shell script's opening comment, from the line after #! to the first line that is not a comment."""
    lines = []
    for line in script.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "".join(f"{line}\n" for line in lines)


def test_every_script_is_asked_for_its_help():
    # A new script is picked up here; these are the ones known when this test was written.
    names = {path.relative_to(REPO_ROOT).as_posix() for path in SHELL_SCRIPTS + PYTHON_COMMANDS}
    assert {"startNetwork.sh", "stopNetwork.sh", "scripts/startClient.sh", "scripts/make-example-repo.sh",
            "scripts/bench.py", "client/index.py", "node/index.py"} <= names


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_every_shell_script_gives_its_whole_header_as_help_from_a_plain_shell(script):
    result = plain_shell(f"./{script.relative_to(REPO_ROOT)}", "--help")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    header = header_comment(script)
    # Whole: not cut off after a fixed number of lines (test.sh's adds pytest's own options).
    assert result.stdout.startswith(header) if script.name == "test.sh" else result.stdout == header
    assert script.name in header and HELP_SAYS.get(script.name, "") in header
    assert not BARE_PYTHON.search(header), header


@pytest.mark.parametrize("command", PYTHON_COMMANDS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_every_python_command_gives_its_help_with_the_system_python(command):
    python = shutil.which("python3", path=PLAIN_PATH)
    if python is None:
        pytest.skip(f"no python3 on {PLAIN_PATH}")
    for flag in ("--help", "-h"):
        result = plain_shell(python, str(command.relative_to(REPO_ROOT)), flag)
        assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
        assert result.stdout.startswith("usage: ") and HELP_SAYS.get(command.name, "") in result.stdout
        assert not BARE_PYTHON.search(result.stdout), result.stdout


def test_the_example_repository_script_takes_no_option_for_its_destination():
    refused = run("./scripts/make-example-repo.sh", "-x")
    assert refused.returncode == 2 and refused.stderr.startswith("usage: ")
    assert not (REPO_ROOT / "-x").exists()


def test_a_client_started_in_the_background_is_stopped_by_stop_network(tmp_path):
    if CLIENT_PID_FILE.exists():
        pytest.fail(f"{CLIENT_PID_FILE} exists: a client started with --background may be running; stop it first")
    config = write_network(tmp_path)
    pid = None
    try:
        started = run("./scripts/startClient.sh", str(config), "--background")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "client up" in started.stdout and "/webHook" in started.stdout and "client.log" in started.stdout
        pid = int(CLIENT_PID_FILE.read_text().split()[0])
        assert runs_client(pid)
        # Only the pid, for `kill $(cat run/client.pid)`.
        assert CLIENT_PID_FILE.read_text() == f"{pid}\n"
        assert subprocess.run(["bash", "-c", "kill -0 $(cat run/client.pid)"], cwd=REPO_ROOT).returncode == 0

        # A pid file of an older version ("pid config") is still read.
        CLIENT_PID_FILE.write_text(f"{pid} {config}\n")
        again = run("./scripts/startClient.sh", str(config), "--background")
        assert again.returncode == 1 and f"pid {pid}" in again.stderr
        assert runs_client(pid)  # the refusal left the running client alone

        stopped = run("./stopNetwork.sh")
        assert stopped.returncode == 0, stopped.stderr
        assert f"sent SIGTERM to client (pid {pid})\nclient stopped" in stopped.stdout
        assert not CLIENT_PID_FILE.exists()
        assert not runs_client(pid)

        nothing = run("./stopNetwork.sh")
        assert nothing.returncode == 0 and "nothing to stop" in nothing.stdout
    finally:
        if pid is not None and runs_client(pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
            time.sleep(0.1)
        CLIENT_PID_FILE.unlink(missing_ok=True)


def test_the_client_script_runs_the_client_its_name_picks_and_refuses_a_name_the_configuration_lacks(
    tmp_path, stopped_afterwards,
):
    config = write_network(tmp_path, clients=("client", "second"))
    port = yaml.safe_load(config.read_text())["clients"][1]["port"]
    refused = run("./scripts/startClient.sh", str(config), "--name", "third", "--background")
    assert refused.returncode == 1 and "no client named 'third'; its clients are client, second" in refused.stderr
    started = run("./scripts/startClient.sh", str(config), "--name", "second", "--background")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"127.0.0.1:{port}/webHook" in started.stdout and "client-second.log" in started.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/client", timeout=10) as answer:
        assert json.load(answer)["name"] == "second"


def test_the_client_is_up_only_once_the_process_started_answers(tmp_path, stopped_afterwards):
    config = write_network(tmp_path)
    _, port = ports_of(config)
    # Another program answers HTTP on the client's port: the client cannot listen there.
    with impostor(port, {"name": "client", "pid": 1}):
        started = run("./scripts/startClient.sh", str(config), "--background")
    assert started.returncode == 1, started.stdout + started.stderr
    assert "client up" not in started.stdout
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; pid {os.getpid()} (" in lines[0]
    assert not CLIENT_PID_FILE.exists()


@pytest.mark.docker
@needs_docker
def test_a_node_is_up_only_once_the_process_started_answers(tmp_path, stopped_afterwards):
    config = write_network(tmp_path)
    node_ports, _ = ports_of(config)
    # Something answers as node 3 (as node 3 of another network on this machine would) on its port.
    with impostor(node_ports[3], {"id": 3, "pid": 1}):
        started = run("./startNetwork.sh", str(config))
    assert started.returncode == 1, started.stdout + started.stderr
    assert "network up" not in started.stdout
    assert f"node 3 cannot listen on 127.0.0.1:{node_ports[3]}: Address already in use; pid {os.getpid()} (" \
        in started.stderr


def network_pids(pid_file: Path = NETWORK_PID_FILE) -> dict[int, int]:
    """Node id → pid, from the pid file ./startNetwork.sh writes."""
    return {int(line.split()[1]): int(line.split()[0]) for line in pid_file.read_text().splitlines()}


def node_lines(stdout: str) -> dict[int, str]:
    """The summary's line for each node, by id."""
    return {int(line.split()[1]): line for line in stdout.splitlines() if line.startswith("  node ")}


def runs_node(pid: int) -> bool:
    try:
        return b"node/index.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.docker
@needs_docker
def test_a_running_node_keeps_its_behaviour_and_the_summary_says_which(tmp_path, stopped_afterwards):
    config = write_network(tmp_path, allow_byzantine=True)
    started = run("./startNetwork.sh", str(config), "--byzantine", "3:lie")
    assert started.returncode == 0, started.stdout + started.stderr
    pids = network_pids()

    # Run again without flags, node 3 is still the liar it was started as.
    again = run("./startNetwork.sh", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
    assert node_lines(again.stdout)[3].endswith("(byzantine: lie)"), again.stdout
    assert "byzantine" not in node_lines(again.stdout)[2]

    # A flag for a running node would be shown and never take effect: refused before anything starts.
    for flag, node_id, now in (("3:silent", 3, "byzantine: lie"), ("2:lie", 2, "honest")):
        refused = run("./startNetwork.sh", str(config), "--byzantine", flag)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert f"node {node_id} is running (pid {pids[node_id]}, {now})" in refused.stderr
        assert f"stop it first with ./stopNetwork.sh --node {node_id}," in refused.stderr
        assert "allow_byzantine" not in refused.stderr
        assert network_pids() == pids and all(runs_node(pid) for pid in pids.values())

    # The same refusal says too when the configuration forbids the flag altogether.
    data = yaml.safe_load(config.read_text())
    data["allow_byzantine"] = False
    config.write_text(yaml.safe_dump(data))
    refused = run("./startNetwork.sh", str(config), "--byzantine", "2:lie")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stdout + refused.stderr
    assert f"node 2 is running (pid {pids[2]}, honest)" in refused.stderr
    assert f"{config} does not set allow_byzantine: true" in refused.stderr
    assert all(runs_node(pid) for pid in pids.values())


@contextmanager
def held(port: int) -> Iterator[None]:
    """Another program listening on 127.0.0.1:`port` (in this process) without answering."""
    with socket.create_server(("127.0.0.1", port)):
        yield


@pytest.mark.docker
@needs_docker
def test_a_node_that_cannot_start_stops_nobody_else(tmp_path, stopped_afterwards):
    config = write_network(tmp_path)
    node_ports, _ = ports_of(config)
    client = run("./scripts/startClient.sh", str(config), "--background")
    assert client.returncode == 0, client.stdout + client.stderr
    client_pid = int(CLIENT_PID_FILE.read_text().split()[0])

    with held(node_ports[2]):
        started = run("./startNetwork.sh", str(config))
    assert started.returncode == 1, started.stdout + started.stderr
    # One line for the node that failed, saying why in its own words.
    assert started.stderr.count("\n") == 1, started.stderr
    assert started.stderr.startswith("node 2 (pid ")
    assert f"node 2 cannot listen on 127.0.0.1:{node_ports[2]}: Address already in use; pid {os.getpid()} (" \
        in started.stderr
    assert "network partly up: 3 of 4 nodes" in started.stdout and "network up" not in started.stdout
    # The others and the client run on; the pid file lists the nodes that run.
    pids = network_pids()
    assert sorted(pids) == [0, 1, 3] and all(runs_node(pid) for pid in pids.values())
    assert runs_client(client_pid) and CLIENT_PID_FILE.exists()

    # With its port free, running the script again starts node 2 alone.
    again = run("./startNetwork.sh", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "network up: 4 nodes" in again.stdout and "(1 started now)" in again.stdout
    assert {i: pid for i, pid in network_pids().items() if i != 2} == pids
    assert runs_node(network_pids()[2]) and runs_client(client_pid)


@pytest.mark.docker
@needs_docker
def test_one_node_or_the_client_alone_is_stopped_and_started_again(tmp_path, stopped_afterwards):
    config = write_network(tmp_path)
    assert run("./startNetwork.sh", str(config)).returncode == 0
    assert run("./scripts/startClient.sh", str(config), "--background").returncode == 0
    pids, client_pid = network_pids(), int(CLIENT_PID_FILE.read_text().split()[0])

    stopped = run("./stopNetwork.sh", "--node", "1")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout == f"sent SIGTERM to node 1 (pid {pids[1]})\nnode 1 stopped\n"
    assert not runs_node(pids[1]) and runs_client(client_pid)
    assert network_pids() == {i: pid for i, pid in pids.items() if i != 1}
    assert all(runs_node(pids[i]) for i in (0, 2, 3))

    restarted = run("./startNetwork.sh", str(config))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "network up: 4 nodes" in restarted.stdout and "(1 started now)" in restarted.stdout
    assert {i: pid for i, pid in network_pids().items() if i != 1} == {i: pid for i, pid in pids.items() if i != 1}
    assert runs_node(network_pids()[1])

    unknown = run("./stopNetwork.sh", "--node", "9")
    assert unknown.returncode == 0 and "node 9 is not in run/network.pids" in unknown.stdout
    assert all(runs_node(pid) for pid in network_pids().values()) and runs_client(client_pid)

    stopped = run("./stopNetwork.sh", "--client")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout == f"sent SIGTERM to client (pid {client_pid})\nclient stopped\n"
    assert not runs_client(client_pid) and not CLIENT_PID_FILE.exists()
    assert all(runs_node(pid) for pid in network_pids().values())
    again = run("./scripts/startClient.sh", str(config), "--background")
    assert again.returncode == 0, again.stdout + again.stderr
    assert runs_client(int(CLIENT_PID_FILE.read_text().split()[0]))


@pytest.mark.parametrize("script", [("./startNetwork.sh",), ("./scripts/startClient.sh",)])
def test_a_configuration_error_is_the_whole_message(tmp_path, script):
    config = write_network(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["nodes"][1]["port"] = 70000
    config.write_text(yaml.safe_dump(data))
    refused = run(*script, str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr == f"{config}: nodes[1].port: must be at most 65535\n"

    config.write_text("f: 1\nnodes: [\n  - id: 0\n")
    refused = run(*script, str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith(f"{config}: line 3, column 3: not valid YAML: ")
    assert refused.stderr.count("\n") == 1 and "<unicode string>" not in refused.stderr


@pytest.mark.parametrize("script", [("./startNetwork.sh",), ("./scripts/startClient.sh", "--background")])
@pytest.mark.parametrize("wait", ["0", "soon", "-5", "1.5"])
def test_a_start_wait_that_is_no_whole_number_of_seconds_is_refused_before_anything_starts(
    tmp_path, monkeypatch, script, wait
):
    config = write_network(tmp_path)
    monkeypatch.setenv("PBFT_CI_START_WAIT_S", wait)
    refused = run(script[0], str(config), *script[1:], run_dir=tmp_path / "run")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr == f"PBFT_CI_START_WAIT_S is a whole number of seconds above 0; got '{wait}'\n"
    assert refused.stdout == "" and not (tmp_path / "run").exists()


@pytest.mark.docker
@needs_docker
def test_a_node_on_a_busy_port_says_so_in_one_line(tmp_path):
    config = write_network(tmp_path)
    node_ports, _ = ports_of(config)
    with held(node_ports[0]):
        refused = run(".venv/bin/python", "node/index.py", "--config", str(config), "--id", "0")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(
        f"node 0 cannot listen on 127.0.0.1:{node_ports[0]}: Address already in use; pid {os.getpid()} (")


def exited(pid: int) -> bool:
    """Whether every thread of `pid` has finished exiting. The main thread turns zombie before
    the others are done, and the threads share the open files (the port among them) until
    the last one exits, so a zombie main thread alone is not enough."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
        return threads == [str(pid)] and \
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def labelled_builds(data_dir: Path) -> list[str]:
    """The containers and volumes a node whose data directory is `data_dir` has on the engine."""
    engine = docker.from_env()
    try:
        label = {"label": f"pbft-ci.data={data_dir.resolve()}"}
        return ([f"container {c.name}" for c in engine.containers.list(all=True, filters=label, ignore_removed=True)]
                + [f"volume {v.name}" for v in engine.volumes.list(filters=label)])
    finally:
        engine.close()


@pytest.mark.docker
@needs_docker
def test_nodes_killed_with_kill_9_leave_no_builds_behind_after_stop_network(tmp_path, stopped_afterwards):
    config = write_network(tmp_path, repositories={"example": str(EXAMPLE_REPO)})
    node_ports, client_port = ports_of(config)
    assert run("./startNetwork.sh", str(config)).returncode == 0
    assert run("./scripts/startClient.sh", str(config), "--background").returncode == 0
    webhook = urllib.request.Request(f"http://127.0.0.1:{client_port}/webHook", data=b'{"branch": "master"}')
    with urllib.request.urlopen(webhook, timeout=120) as answer:
        verdict = json.load(answer)
    assert verdict["status"] == "success", verdict
    # After a build, each node keeps a prepared container waiting for the next one.
    data_dirs = {node_id: tmp_path / "data" / f"node-{node_id}" for node_id in (1, 2)}
    deadline = time.monotonic() + 60
    while not all(labelled_builds(data_dir) for data_dir in data_dirs.values()):
        assert time.monotonic() < deadline, {i: labelled_builds(d) for i, d in data_dirs.items()}
        time.sleep(0.2)

    pids = network_pids()
    for node_id in (1, 2):
        os.kill(pids[node_id], signal.SIGKILL)
    # Until each has exited: its command line reads empty while its files, its port among them,
    # are still being closed.
    while not all(exited(pids[node_id]) for node_id in (1, 2)):
        time.sleep(0.05)
    # Something else listens on node 1's port: it may be node 1 started another way, whose builds stay.
    with held(node_ports[1]):
        stopped = run("./stopNetwork.sh")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "node 2: removed the " in stopped.stdout and labelled_builds(data_dirs[2]) == [], stopped.stdout
    assert f"node 1: its leftover builds stay, since another process may be node 1: cannot listen on " \
           f"127.0.0.1:{node_ports[1]}" in stopped.stdout
    assert labelled_builds(data_dirs[1]), stopped.stdout


@pytest.mark.docker
@needs_docker
def test_two_networks_with_run_folders_of_their_own_start_and_stop_apart(tmp_path, stopped_afterwards):
    """Each script finds only what its PBFT_CI_RUN_DIR lists; each node's stdout is beside its log."""
    networks = {name: (write_network(tmp_path / name), tmp_path / f"run-{name}") for name in ("a", "b")}
    try:
        for config, run_dir in networks.values():
            started = run("./startNetwork.sh", str(config), run_dir=run_dir)
            assert started.returncode == 0 and "network up: 4 nodes" in started.stdout, started.stdout + started.stderr
            assert (config.parent / "log" / "node-3.stdout").is_file()
        assert not NETWORK_PID_FILE.exists()
        pids = {name: network_pids(run_dir / "network.pids") for name, (_, run_dir) in networks.items()}
        assert all(runs_node(pid) for pid in [*pids["a"].values(), *pids["b"].values()]), pids

        stopped = run("./stopNetwork.sh", run_dir=networks["a"][1])
        assert stopped.returncode == 0 and "network stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not any(runs_node(pid) for pid in pids["a"].values()), pids
        assert all(runs_node(pid) for pid in pids["b"].values()), pids
    finally:
        for _, run_dir in networks.values():
            run("./stopNetwork.sh", run_dir=run_dir)
    assert not any(runs_node(pid) for pid in pids["b"].values()), pids
