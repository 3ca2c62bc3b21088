"""The operator's scripts: --help everywhere, and a client started in the background
that ./stopNetwork.sh stops.

These run the real scripts from the repository root, as a user does. The
client runs on a throw-away configuration (free loopback ports, its own keys)
with no node up: starting, answering HTTP and stopping need none.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.network import write_network

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_PID_FILE = REPO_ROOT / "run" / "client.pid"
SCRIPT_TIMEOUT_S = 120


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def runs_client(pid: int) -> bool:
    try:
        return "client/index.py" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


@pytest.mark.parametrize("command, says", [
    (("./startNetwork.sh", "--help"), "--byzantine"),
    (("./stopNetwork.sh", "--help"), "run/client.pid"),
    (("./scripts/startClient.sh", "--help"), "--background"),
    (("./scripts/setup.sh", "--help"), "Prepare this machine"),
    ((sys.executable, "scripts/bench.py", "--help"), "--quick"),
    ((sys.executable, "scripts/simulate.py", "--help"), "--seeds"),
    ((sys.executable, "scripts/keygen.py", "--help"), "key pair"),
    ((sys.executable, "scripts/nodekey.py", "--help"), "generate --node 2"),
    ((sys.executable, "client/index.py", "--help"), "--config"),
    ((sys.executable, "node/index.py", "--help"), "--config"),
])
def test_every_command_explains_itself_with_help(command, says):
    result = run(*command)
    assert result.returncode == 0, result.stderr
    assert says in result.stdout


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

        again = run("./scripts/startClient.sh", str(config), "--background")
        assert again.returncode == 1 and f"pid {pid}" in again.stderr
        assert runs_client(pid)  # the refusal left the running client alone

        stopped = run("./stopNetwork.sh")
        assert stopped.returncode == 0, stopped.stderr
        assert "client stopped" in stopped.stdout
        assert not CLIENT_PID_FILE.exists()
        assert not runs_client(pid)

        nothing = run("./stopNetwork.sh")
        assert nothing.returncode == 0 and "nothing to stop" in nothing.stdout
    finally:
        if pid is not None and runs_client(pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
            time.sleep(0.1)
        CLIENT_PID_FILE.unlink(missing_ok=True)
