"""Throw-away network configurations for tests and benches: fresh keys, free loopback ports;
GET /metrics parsed."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from shared.crypto import generate_private_key, public_key_hex, save_private_key


def free_port() -> int:
    return free_ports(1)[0]


# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux), where no
# outgoing connection takes one as its own between the choice and a node's bind, and a
# range of their own per pytest-xdist worker, so that tests running at once on two
# workers never choose the same port. Each worker walks its range in turn: a port it just
# handed out is not chosen again until the range wraps.
_FIRST_PORT, _END_PORT = 20000, 32000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS_PER_WORKER = (_END_PORT - _FIRST_PORT) // max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
_ports = itertools.cycle(range(_FIRST_PORT + _WORKER * _PORTS_PER_WORKER, _FIRST_PORT + (_WORKER + 1) * _PORTS_PER_WORKER))


def free_ports(count: int) -> list[int]:
    """Distinct ports of this worker's range that nothing listens on or holds now."""
    chosen: list[int] = []
    for _ in range(_PORTS_PER_WORKER):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError(f"fewer than {count} free ports in this worker's range")


def write_network(
    root: Path,
    *,
    n: int = 4,
    f: int = 1,
    repositories: dict[str, str | dict] | None = None,
    allow_byzantine: bool = False,
    protocol: dict | None = None,
    build: dict | None = None,
    runners: tuple[str, ...] = (),
    clients: tuple[str, ...] = ("client",),
) -> Path:
    """Write keys and a network YAML under `root`; return the YAML's path. `repositories` maps a
    name to its URL, or to its entry's settings (`{"url": ..., "builders": "f+1"}`). Each of `clients` has
    a key of its own in keys/client-<name>.key and a port of its own; the first lists the action
    `runners` named, each with a key of its own in keys/runner-<name>.key."""
    keys = root / "keys"

    def key_for(name: str) -> str:
        private = generate_private_key()
        save_private_key(private, keys / f"{name}.key")
        return public_key_hex(private)

    ports = free_ports(n + len(clients))
    node_ports, client_ports = ports[:n], ports[n:]
    config = {
        "f": f,
        "nodes": [
            {"id": i, "host": "127.0.0.1", "port": node_ports[i], "public_key": key_for(f"node-{i}")}
            for i in range(n)
        ],
        # A loopback client, so the README's plain `curl -d` call needs no bearer token.
        "clients": [
            {"name": name, "host": "127.0.0.1", "port": port, "public_key": key_for(f"client-{name}"),
             "plain_without_token": True,
             **({"runners": [{"name": runner, "public_key": key_for(f"runner-{runner}")} for runner in runners]}
                if runners and name == clients[0] else {})}
            for name, port in zip(clients, client_ports)
        ],
        "repositories": [
            {"name": name, **({"url": given} if isinstance(given, str) else given)}
            for name, given in (repositories or {"example": str(root / "repo")}).items()
        ],
        "keys_dir": "keys",
        "data_dir": "data",
        "log_dir": "log",
        "allow_byzantine": allow_byzantine,
    }
    if protocol:
        config["protocol"] = protocol
    if build:
        config["build"] = build
    path = root / "network.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text, parsed with prometheus-client's own parser: {(sample, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
