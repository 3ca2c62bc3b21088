"""scripts/network.py join: a node's own host makes its key (never replacing one) and prints
the entry owners put in the network document; --next makes the key that is to replace it."""

import subprocess
import sys
from pathlib import Path

import yaml

from shared.crypto import load_private_key, public_key_hex

REPO_ROOT = Path(__file__).resolve().parents[2]


def join(keys_dir: Path, *extra: str) -> tuple[str, dict]:
    done = subprocess.run(
        [sys.executable, "scripts/network.py", "join", "--node", "4", "--host", "10.0.0.14", "--port", "9000",
         "--keys-dir", str(keys_dir), *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [entry] = yaml.safe_load(done.stdout)
    return done.stdout, entry


def test_join_makes_the_key_once_on_its_own_host_and_prints_the_nodes_entry(tmp_path):
    printed, entry = join(tmp_path / "keys")
    key = tmp_path / "keys" / "node-4.key"
    assert entry == {"id": 4, "host": "10.0.0.14", "port": 9000,
                     "public_key": public_key_hex(load_private_key(key))}
    assert "made now" in printed and key.stat().st_mode & 0o077 == 0
    again, same = join(tmp_path / "keys")
    assert same == entry and "kept" in again
    _, next_entry = join(tmp_path / "keys", "--next")
    assert next_entry["public_key"] != entry["public_key"]
    assert next_entry["public_key"] == public_key_hex(load_private_key(tmp_path / "keys" / "node-4.next.key"))
