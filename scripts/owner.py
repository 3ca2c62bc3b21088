#!/usr/bin/env python3
"""The network owner's key and the in-toto layout it signs.

The owner key belongs to whoever runs the network (the operator), never to a
node: it signs the layout that names the nodes' public keys as the
functionaries of the step `build`, with a threshold of f+1. `in-toto-verify`
trusts a build's links only through that layout, so the owner key decides
who may vouch for a verdict. Keep it offline; bring it out to sign a new
layout when a node key changes, or before the layout expires:

  owner.py generate --key /secure/owner.key          # once: the private key, and owner.pub beside it
  owner.py show --key /secure/owner.key              # the public key (PEM) and its keyid again
  owner.py layout --config network.yaml --key /secure/owner.key --out network.layout [--expires-days 365]

Publish owner.pub (it is what third parties verify with) and copy
network.layout to the client's host, where `in_toto_layout` in the network
YAML names it. A private key is never replaced and never printed. Exit codes:
0 done, 1 refused (key exists, is missing or unreadable, configuration
invalid), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from client.intoto import DEFAULT_EXPIRY_DAYS, default_expiry, layout, metadata_bytes, public_key_pem, sign_layout  # noqa: E402,E501
from pbft.attestation import keyid  # noqa: E402
from shared.config import ConfigError, load_config  # noqa: E402
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key  # noqa: E402
from pbft.quorum import reply_quorum  # noqa: E402


class Refused(Exception):
    """What went wrong, for the operator; the command exits 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,show,layout}")
    for name, help in (("generate", "make the owner's key pair"), ("show", "print the owner's public key")):
        command = commands.add_parser(name, help=help)
        command.add_argument("--key", required=True, type=Path, help="the owner's private key file")
    command = commands.add_parser("layout", help="sign the network's in-toto layout")
    command.add_argument("--config", required=True, type=Path, help="the network YAML (public keys only)")
    command.add_argument("--key", required=True, type=Path, help="the owner's private key file")
    command.add_argument("--out", required=True, type=Path, help="where to write the signed layout")
    command.add_argument("--expires-days", type=int, default=DEFAULT_EXPIRY_DAYS,
                         help="days until in-toto-verify refuses the layout (default: %(default)s)")
    return parser.parse_args(argv)


def public_path(key: Path) -> Path:
    return key.with_suffix(".pub")


def generate(args: argparse.Namespace) -> None:
    if args.key.exists():
        raise Refused(f"{args.key} exists: an owner key is never replaced (remove it first if you mean it)")
    private_key = generate_private_key()
    save_private_key(private_key, args.key)
    public_path(args.key).write_text(public_key_pem(public_key_hex(private_key)))
    show(args)


def show(args: argparse.Namespace) -> None:
    try:
        public = public_key_hex(load_private_key(args.key))
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the owner key {args.key}: {error}") from None
    print(f"keyid {keyid(public)} (public key {public}); publish {public_path(args.key)}:")
    print(public_key_pem(public), end="")


def sign(args: argparse.Namespace) -> None:
    if args.expires_days < 1:
        raise Refused("--expires-days must be at least 1")
    try:
        config = load_config(args.config, read_secrets=False)
    except ConfigError as error:
        raise Refused(str(error)) from None
    try:
        owner_key = load_private_key(args.key)
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the owner key {args.key}: {error}") from None
    owner = public_key_hex(owner_key)
    if owner in {node.public_key for node in config.nodes}:
        raise Refused("the owner key is a node's key: the owner must hold a key of its own")
    expires = default_expiry(datetime.now(timezone.utc), args.expires_days)
    args.out.write_bytes(metadata_bytes(sign_layout(layout(config, expires), owner_key)))
    print(f"{args.out}: step build, functionaries nodes {[node.id for node in config.nodes]},"
          f" threshold {reply_quorum(config.f)}, expires {expires:%Y-%m-%dT%H:%M:%SZ},"
          f" signed by owner key {keyid(owner)[:8]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        {"generate": generate, "show": show, "layout": sign}[args.command](args)
    except Refused as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
