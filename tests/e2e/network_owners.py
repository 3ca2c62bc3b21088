"""Owners of a test network, and the owners' command (scripts/network.py) run as they run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from shared.crypto import generate_private_key, public_key_hex, save_private_key
from tests.e2e.example_network import REPO_ROOT

OWNERS = ("ada", "bob", "cy")


def owner_keys(folder: Path, names: tuple[str, ...] = OWNERS) -> list[dict]:
    """A key for each owner, kept in `folder`/<name>.key; their entries for `owners.keys`."""
    keys = []
    for name in names:
        key = generate_private_key()
        save_private_key(key, folder / f"{name}.key")
        keys.append({"name": name, "public_key": public_key_hex(key)})
    return keys


def with_owners(config_path: Path) -> Path:
    """Give the network at `config_path` three owners, two of whom sign each change; their keys
    are in owners/ beside it."""
    data = yaml.safe_load(config_path.read_text())
    data["owners"] = {"threshold": 2, "keys": owner_keys(config_path.parent / "owners")}
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def network_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/network.py", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
