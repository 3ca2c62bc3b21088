"""The README's scripts and the client, run as processes from the repository's root: a
script's run and how it ended, and the client started in the background until it listens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.config import NetworkConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
# startNetwork.sh runs the set-up first, which on a fresh machine installs
# packages and the Docker engine.
START_TIMEOUT_S = 900
CLIENT_START_TIMEOUT_S = 120  # scripts/startClient.sh waits as long


def run_script(*command: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def describe(result: subprocess.CompletedProcess) -> str:
    return f"{' '.join(result.args)} exited {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def client(config: NetworkConfig, log_path: Path, *args: str) -> Iterator[str]:
    """Run ./scripts/startClient.sh ARGS in the background; yield the webhook URL."""
    with client_process(config, log_path, *args) as (base_url, _):
        yield base_url


@contextmanager
def client_process(config: NetworkConfig, log_path: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like `client`; yields the webhook URL and the process (the leader of its own group)."""
    host, port = config.clients[0].host, config.clients[0].port
    assert not port_open(host, port), f"something already listens on {host}:{port}; a client left running?"
    with listening(["./scripts/startClient.sh", *args], host, port, log_path) as process:
        yield f"http://{host}:{port}", process


@contextmanager
def listening(command: list[str], host: str, port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run `command` (a client), its output in `log_path`, until it listens on `port`; yield the
    process, the leader of its own group, which is stopped at the end (SIGTERM, then SIGKILL)."""
    with log_path.open("wb") as output:
        # Its own process group, so the signal reaches whatever the script runs.
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + CLIENT_START_TIMEOUT_S
        while not port_open(host, port):
            assert process.poll() is None, f"the client exited with {process.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"the client did not listen on {port}:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
