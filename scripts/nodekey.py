#!/usr/bin/env python3
"""The key ceremony of a network with one node per host.

Each host makes its own key pair and shows only the public half; the
operator pastes the public keys into the network YAML and copies that file to
every host, which then checks it against its own private key:

  nodekey.py generate --node 2 --keys-dir /etc/pbft-ci/keys   # on node 2's host: prints the public key
  nodekey.py show --node 2 --keys-dir /etc/pbft-ci/keys       # prints it again
  nodekey.py check /etc/pbft-ci/network.yaml --node 2         # "ok: ..." or what is wrong

`--client NAME` instead of `--node ID` does the same for a client, and
`--runner NAME` for an action runner a client lists (clients[].runners). The keys
folder must be the configuration's `keys_dir`. A private key is never
replaced and never printed. Exit codes: 0 done or ok, 1 the check failed (or
the key exists, is missing, unreadable), 2 usage.
"""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from shared.config import (  # noqa: E402
    ClientConfig,
    ConfigError,
    NetworkConfig,
    NodeConfig,
    RunnerKeyConfig,
    client_key_file,
    is_client_name,
    load_config,
    node_key_file,
    runner_key_file,
)
from shared.config_files import node_next_key_file  # noqa: E402
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key  # noqa: E402


class Refused(Exception):
    """What went wrong, for the operator; the command exits 1."""


def client_name(text: str) -> str:
    if not is_client_name(text):
        raise argparse.ArgumentTypeError(f"not a client name (letters, digits, . _ -): {text!r}")
    return text


def node_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a node id is a number 0..n-1, not {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,show,check}")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help, description=help)
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--node", type=node_id, metavar="ID", help="a node, by its id in the configuration")
        who.add_argument("--client", type=client_name, metavar="NAME", help="a client, by its name")
        who.add_argument("--runner", type=client_name, metavar="NAME",
                         help="an action runner, by the name a client's runners list gives it")
        return command

    for name, help in (("generate", "make this host's private key (mode 0600) and print its public key;"
                                    " an existing key is never replaced"),
                       ("show", "print the public key of this host's private key")):
        command = add(name, help)
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--keys-dir", type=Path, metavar="DIR",
                           help="the folder the configuration's keys_dir will name, e.g. /etc/pbft-ci/keys")
        where.add_argument("--config", type=Path, help="take the keys folder from this configuration's keys_dir")
    check = add("check", "check that CONFIG gives this host's private key to the node or client, and that"
                         " no two entries share an id, a name, an address or a key")
    check.add_argument("config", type=Path, metavar="CONFIG", help="the network YAML, as copied to this host")
    return parser.parse_args(argv)


def who(args: argparse.Namespace) -> str:
    if args.node is not None:
        return f"node {args.node}"
    return f"client {args.client!r}" if args.client is not None else f"runner {args.runner!r}"


def flag(args: argparse.Namespace) -> str:
    if args.node is not None:
        return f"--node {args.node}"
    return f"--client {args.client}" if args.client is not None else f"--runner {args.runner}"


def key_path(args: argparse.Namespace, keys_dir: Path) -> Path:
    if args.node is not None:
        return node_key_file(keys_dir, args.node)
    return client_key_file(keys_dir, args.client) if args.client is not None else runner_key_file(keys_dir, args.runner)


def keys_dir_of(args: argparse.Namespace) -> Path:
    if args.keys_dir is not None:
        return args.keys_dir
    try:
        return load_config(args.config, require_keys=False, read_secrets=False).keys_dir
    except ConfigError as error:
        raise Refused(str(error)) from None


def read_public_key(args: argparse.Namespace, path: Path) -> str:
    if not path.exists():
        raise Refused(f"no private key for {who(args)} at {path} (on {who(args)}'s own host:"
                      f" nodekey.py generate {flag(args)} --keys-dir {path.parent})")
    try:
        return public_key_hex(load_private_key(path))
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the private key at {path}: {error}") from None


def generate(args: argparse.Namespace) -> None:
    path = key_path(args, keys_dir_of(args))
    if path.exists():
        raise Refused(f"{path} exists already and is never replaced; its public key is"
                      f" {read_public_key(args, path)} (nodekey.py show prints it). A new key means removing"
                      f" this one yourself and changing {who(args)}'s entry in every host's configuration.")
    # The folder holds private keys: only its owner may even list it.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        save_private_key(generate_private_key(), path)
    except FileExistsError:
        raise Refused(f"{path} appeared while generating; it is kept") from None
    public_key = read_public_key(args, path)
    path.with_suffix(".pub").write_text(public_key + "\n")
    print(public_key)
    print(f"{who(args)}: private key written to {path} (mode 0600; it stays on this host)."
          f" For {who(args)}'s entry of the network YAML:\n  public_key: {public_key}", file=sys.stderr)


def show(args: argparse.Namespace) -> None:
    print(read_public_key(args, key_path(args, keys_dir_of(args))))


def check(args: argparse.Namespace) -> str:
    """The "ok" line (and a note on stray keys), or Refused with what is wrong."""
    try:
        # Also refuses shared ids, names, addresses and keys. A node's host
        # holds none of the client's secrets, so only a client reads them.
        config = load_config(args.config, read_secrets=args.client is not None)
    except ConfigError as error:
        raise Refused(str(error)) from None
    entry = find_entry(args, config)
    path = key_path(args, config.keys_dir)
    own = read_public_key(args, path)
    keys = principal_keys(config)
    if entry.public_key != own and args.node is not None:
        # The entry may name the key that is to replace this one (scripts/network.py join --next).
        next_path = node_next_key_file(path.parent, args.node)
        if next_path.exists() and read_public_key(args, next_path) == entry.public_key:
            path, own = next_path, entry.public_key
    if entry.public_key != own:
        owner = [label for label, public_key in keys if public_key == own]
        hint = (f"this host's key is {owner[0]}'s in {config.path}: is this {owner[0]}'s host?" if owner else
                f"paste the output of `nodekey.py show {flag(args)} --keys-dir {path.parent}` into"
                f" {who(args)}'s entry")
        raise Refused(f"mismatch: {who(args)}'s entry in {config.path} has public key {entry.public_key}, but the"
                      f" private key at {path} belongs to {own}; {hint}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise Refused(f"{path} is readable by others (mode {mode:04o}): chmod 600 {path}")
    address = f" ({entry.host}:{entry.port})" if not isinstance(entry, RunnerKeyConfig) else ""
    line = (f"ok: {who(args)}{address} in {config.path} has the public key of {path}"
            f" ({own[:16]}…); n={config.n}, f={config.f}, {len(keys)} distinct keys; network document"
            f" {config.digest[:16]}")
    others = sorted(other.name for other in config.keys_dir.glob("*.key") if other != path)
    if others:
        line += (f"\nnote: {config.keys_dir} also holds {', '.join(others)}; with one node per host, each"
                 " host keeps only its own private key")
    return line


def find_entry(args: argparse.Namespace, config: NetworkConfig) -> NodeConfig | ClientConfig | RunnerKeyConfig:
    if args.runner is not None:
        runners = {runner.name: runner for client in config.clients for runner in client.runners}
        if args.runner not in runners:
            raise Refused(f"{config.path} has no {who(args)} in any client's runners"
                          f" (it has: {', '.join(runners) or 'none'})")
        return runners[args.runner]
    try:
        return config.node(args.node) if args.node is not None else config.client(args.client)
    except KeyError:
        names = [str(node.id) for node in config.nodes] if args.node is not None else \
            [client.name for client in config.clients]
        raise Refused(f"{config.path} has no {who(args)} (it has: {', '.join(names)})") from None


def principal_keys(config: NetworkConfig) -> list[tuple[str, str]]:
    runners = {runner.name: runner.public_key for client in config.clients for runner in client.runners}
    return [(f"node {node.id}", node.public_key) for node in config.nodes] + \
        [(f"client {client.name!r}", client.public_key) for client in config.clients] + \
        [(f"runner {name!r}", public_key) for name, public_key in runners.items()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "generate":
            generate(args)
        elif args.command == "show":
            show(args)
        else:
            print(check(args))
    except Refused as refusal:
        print(f"nodekey {args.command}: {refusal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
