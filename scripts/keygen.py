#!/usr/bin/env python3
"""Generate the Ed25519 key pair of every node and client of a configuration.

Keys that already exist are kept, so running this again is harmless. Private
keys go to `<keys_dir>/node-<id>.key` and `<keys_dir>/client-<name>.key`
(mode 0600, never committed); the public halves to the matching `.pub` files
that the configuration's `public_key_file` entries name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbft.config import ConfigError, load_config  # noqa: E402
from pbft.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key  # noqa: E402


def ensure_key(private_path: Path) -> bool:
    """Create the key pair at `private_path` if missing; return True if created."""
    created = not private_path.exists()
    if created:
        save_private_key(generate_private_key(), private_path)
    public_path = private_path.with_suffix(".pub")
    public_path.write_text(public_key_hex(load_private_key(private_path)) + "\n")
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="example-config/network.yaml", help="network YAML (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, require_keys=False)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    paths = [config.node_key_path(node.id) for node in config.nodes]
    paths += [config.client_key_path(client.name) for client in config.clients]
    created = [path.name for path in paths if ensure_key(path)]
    print(f"keys in {config.keys_dir}: {len(created)} created, {len(paths) - len(created)} kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
