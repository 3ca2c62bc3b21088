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

A network whose keys all live on one machine, as the example's, has no owner
to keep a key offline: there `local` makes the owner key if it is missing and
signs the layout the YAML's `in_toto_layout` names unless the one there is
already this owner's, names the YAML's nodes and has a month left to run
(scripts/setup.sh runs it for the example network):

  owner.py local --config example-config/network.yaml --key example-config/keys/owner.key

Publish owner.pub (it is what third parties verify with) and copy
network.layout to the client's host, where `in_toto_layout` in the network
YAML names it. A private key is never replaced and never printed. Exit codes:
0 done, 1 refused (key exists, is missing or unreadable, configuration
invalid), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from client.intoto import DEFAULT_EXPIRY_DAYS, default_expiry, layout, metadata_bytes, public_key_pem, sign_layout  # noqa: E402,E501
from pbft.attestation import keyid  # noqa: E402
from shared.config import ConfigError, NetworkConfig, load_config  # noqa: E402
from shared.crypto import (  # noqa: E402
    PrivateKey, generate_private_key, load_private_key, public_key_hex, save_private_key,
)
from pbft.quorum import reply_quorum  # noqa: E402


# `local` signs a new layout when the one in place has less than this left to run.
RENEW_BEFORE_DAYS = 30


class Refused(Exception):
    """What went wrong, for the operator; the command exits 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,show,layout,local}")
    for name, help in (("generate", "make the owner's key pair"), ("show", "print the owner's public key")):
        command = commands.add_parser(name, help=help)
        command.add_argument("--key", required=True, type=Path, help="the owner's private key file")
    command = commands.add_parser("layout", help="sign the network's in-toto layout")
    command.add_argument("--config", required=True, type=Path, help="the network YAML (public keys only)")
    command.add_argument("--key", required=True, type=Path, help="the owner's private key file")
    command.add_argument("--out", required=True, type=Path, help="where to write the signed layout")
    command.add_argument("--expires-days", type=int, default=DEFAULT_EXPIRY_DAYS,
                         help="days until in-toto-verify refuses the layout (default: %(default)s)")
    command = commands.add_parser("local", help="keep a one-machine network's owner key and layout in place")
    command.add_argument("--config", required=True, type=Path, help="the network YAML, naming in_toto_layout")
    command.add_argument("--key", required=True, type=Path, help="the owner's private key file, made if missing")
    return parser.parse_args(argv)


def public_path(key: Path) -> Path:
    return key.with_suffix(".pub")


def generate(args: argparse.Namespace) -> None:
    if args.key.exists():
        raise Refused(f"{args.key} exists: an owner key is never replaced (remove it first if you mean it)")
    _new_key(args.key)
    show(args)


def _new_key(path: Path) -> None:
    private_key = generate_private_key()
    save_private_key(private_key, path)
    public_path(path).write_text(public_key_pem(public_key_hex(private_key)))


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
    _sign(_config(args.config), _owner_key(args.key), args.out, args.expires_days)


def local(args: argparse.Namespace) -> None:
    # The configuration's owners may name this key's owner.pub, which is made here.
    config = _config(args.config, require_keys=args.key.exists())
    if config.in_toto_layout is None:
        raise Refused(f"{args.config} names no in_toto_layout: nothing to sign")
    if not args.key.exists():
        _new_key(args.key)
        config = _config(args.config)
    owner_key = _owner_key(args.key)
    if _current(config, owner_key, config.in_toto_layout):
        print(f"{config.in_toto_layout}: up to date, signed by owner key {keyid(public_key_hex(owner_key))[:8]}")
        return
    _sign(config, owner_key, config.in_toto_layout, DEFAULT_EXPIRY_DAYS)


def _config(path: Path, require_keys: bool = True) -> NetworkConfig:
    try:
        return load_config(path, read_secrets=False, require_keys=require_keys)
    except ConfigError as error:
        raise Refused(str(error)) from None


def _owner_key(path: Path) -> PrivateKey:
    try:
        return load_private_key(path)
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the owner key {path}: {error}") from None


def _sign(config: NetworkConfig, owner_key: PrivateKey, out: Path, expires_days: int) -> None:
    owner = public_key_hex(owner_key)
    if owner in {node.public_key for node in config.nodes}:
        raise Refused("the owner key is a node's key: the owner must hold a key of its own")
    expires = default_expiry(datetime.now(timezone.utc), expires_days)
    out.write_bytes(metadata_bytes(sign_layout(layout(config, expires), owner_key)))
    print(f"{out}: step build, functionaries nodes {[node.id for node in config.nodes]},"
          f" threshold {reply_quorum(config.f)}, expires {expires:%Y-%m-%dT%H:%M:%SZ},"
          f" signed by owner key {keyid(owner)[:8]}")


def _current(config: NetworkConfig, owner_key: PrivateKey, path: Path) -> bool:
    """Whether the layout at `path` is the one `_sign` would make now but for its expiry, signed
    by `owner_key`, with at least RENEW_BEFORE_DAYS left to run."""
    try:
        metadata = json.loads(path.read_bytes())
        signed = metadata["signed"]
        expires = datetime.strptime(signed["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (OSError, ValueError, TypeError, KeyError):
        return False  # missing, or not a layout: signed anew
    renew_at = datetime.now(timezone.utc) + timedelta(days=RENEW_BEFORE_DAYS)
    return expires > renew_at and metadata == sign_layout(layout(config, expires), owner_key)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        {"generate": generate, "show": show, "layout": sign, "local": local}[args.command](args)
    except Refused as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
