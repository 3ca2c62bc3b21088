#!/usr/bin/env python3
"""Generate the Ed25519 key pairs of a configuration's nodes, clients and action runners on this machine.

For a network on one machine (the example): every entry whose public key is
not known yet (its `public_key_file` does not exist) gets a key pair here.
Keys that already exist are kept, so running this again is harmless. Private
keys go to `<keys_dir>/node-<id>.key`, `<keys_dir>/client-<name>.key` and,
for each runner a client lists (clients[].runners), `<keys_dir>/runner-<name>.key`
(mode 0600, never committed); the public halves to the matching `.pub` files
that the configuration's `public_key_file` entries name.

An entry whose public key is known (inline, or a `.pub` file that exists)
but whose private key is not here belongs to another host and is left alone:
with one node per host, each host makes its own key with
`scripts/nodekey.py generate` (see docs/operations.md, "One node per host"),
and so does a runner on a host of its own (`--runner NAME`, docs/actions.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from shared.config import ConfigError, load_config  # noqa: E402
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key  # noqa: E402


def ensure_key(private_path: Path, public_key: str) -> str:
    """Make the key pair at `private_path` if its public key is not known yet.

    Returns "created", "kept" or "elsewhere" (known public key, no private key
    here: generating one would not match the configuration).
    """
    if private_path.exists():
        outcome = "kept"
    elif public_key:
        return "elsewhere"
    else:
        save_private_key(generate_private_key(), private_path)
        outcome = "created"
    # An existing .pub is never rewritten: if it disagrees with the private
    # key, the node refuses to start and says so, instead of the mismatch
    # being papered over here.
    public_path = private_path.with_suffix(".pub")
    if not public_path.exists():
        public_path.write_text(public_key_hex(load_private_key(private_path)) + "\n")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="example-config/network.yaml", help="network YAML (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, require_keys=False, read_secrets=False)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    entries = [(config.node_key_path(node.id), node.public_key) for node in config.nodes]
    entries += [(config.client_key_path(client.name), client.public_key) for client in config.clients]
    # Two clients may list one runner: its key is made once.
    runners = {runner.name: runner.public_key for client in config.clients for runner in client.runners}
    entries += [(config.runner_key_path(name), public_key) for name, public_key in runners.items()]
    outcomes = [ensure_key(path, public_key) for path, public_key in entries]
    line = f"keys in {config.keys_dir}: {outcomes.count('created')} created, {outcomes.count('kept')} kept"
    if "elsewhere" in outcomes:
        line += f", {outcomes.count('elsewhere')} on other hosts (public key in the configuration)"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
