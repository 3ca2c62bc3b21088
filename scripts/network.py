#!/usr/bin/env python3
"""Change a running network's configuration through the order: propose, sign, submit.

The network document (everything in the configuration but each host's own folders,
engines, TLS and secret files) changes only when owners sign a change and the network
orders it (docs/operations.md, "Changing the network"). A change names the document it
replaces, so it applies once, to the network it was made for.

  network.py propose --from http://10.0.0.10:9000 --to network-next.yaml --out change.json
      # the document a node runs now (or a configuration file), the file you edited, the change
  network.py show change.json                           # what it changes
  network.py sign change.json --key /secure/owner.key --owner ada   # each owner, on their host
  network.py submit change.json --client http://10.0.0.20:8080 [--token-file keys/client.token]

A node's own host makes its key and the entry the owners put in the document's `nodes:`
(the private key never leaves that host); `--next` makes the key that is to replace the
node's own, which the node signs with from the change that names it:

  network.py join --node 4 --host 10.0.0.14 --port 9000 --keys-dir /etc/pbft-ci/keys [--next]
      [--first-from http://10.0.0.10:9000 --out /etc/pbft-ci/network.yaml]   # and the node's file

`sign` adds one owner's signature to the file, which goes from owner to owner; `submit`
hands it to a client, which answers once f+1 nodes agree: applied from a sequence number,
or refused with the nodes' reason. Exit codes: 0 done, 1 refused, 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from pbft.encoding import canonical  # noqa: E402
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest  # noqa: E402
from pbft.wire import MessageError, decode_struct, encode  # noqa: E402
from shared.config import ConfigError, load_config  # noqa: E402
from shared.config_files import node_key_file, node_next_key_file  # noqa: E402
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key, sign_bytes  # noqa: E402
from shared.networkdoc import agreed, document_problem  # noqa: E402

TIMEOUT_S = 660  # a client waits up to its deadline (600 s by default) for f+1 answers


class Refused(Exception):
    """What stops a command, in one line for its user."""


def document_of(source: str, which: str = "/network/document") -> dict:
    """The network document a node runs (an http(s) URL of the node) or a file describes;
    `which` "/network/first": the one the node's ledger starts from."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source.rstrip("/") + which, timeout=10) as response:
                answer = json.load(response)
        except (OSError, ValueError) as error:
            raise Refused(f"{source} did not answer with its network document: {error}") from None
        document = answer.get("document") if isinstance(answer, dict) else None
        if not isinstance(document, dict) or document_digest(document) != answer.get("digest"):
            raise Refused(f"{source} answered no network document with its digest")
        return document
    try:
        return agreed(load_config(source, read_secrets=False))
    except ConfigError as error:
        raise Refused(str(error)) from None


def read_change(path: str) -> NetworkChange:
    try:
        return decode_struct(NetworkChange, json.loads(Path(path).read_text()))
    except (OSError, ValueError, MessageError) as error:
        raise Refused(f"{path} holds no network change: {error}") from None


def write_change(path: str, change: NetworkChange) -> None:
    Path(path).write_text(json.dumps(encode(change), indent=1) + "\n")


def differences(before: dict, after: dict) -> list[str]:
    """What a change changes, by top-level key and, for the repositories, by name."""
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) == after.get(key):
            continue
        if key == "repositories":
            old = {repo["name"]: repo for repo in before.get(key, [])}
            new = {repo["name"]: repo for repo in after.get(key, [])}
            for name in sorted(old.keys() | new.keys()):
                if name not in new:
                    lines.append(f"repositories: removes {name}")
                elif name not in old:
                    lines.append(f"repositories: adds {name}")
                elif old[name] != new[name]:
                    changed = sorted(k for k in old[name].keys() | new[name].keys() if old[name].get(k) != new[name].get(k))
                    lines.append(f"repositories: changes {name} ({', '.join(changed)})")
        elif isinstance(before.get(key, {}), dict) and isinstance(after.get(key, {}), dict):
            old, new = before.get(key, {}), after.get(key, {})
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            lines.append(f"{key}: {', '.join(f'{k} {shown(old, k)} -> {shown(new, k)}' for k in changed)}")
        else:
            lines.append(f"{key}: changes")
    return lines


def shown(section: dict, key: str) -> str:
    return json.dumps(section[key]) if key in section else "(default)"


def propose(args: argparse.Namespace) -> str:
    before, after = document_of(args.source), document_of(args.to)
    if before == after:
        raise Refused(f"{args.to} describes the network document {args.source} runs: nothing to change")
    problem = document_problem(after, Path(args.to).resolve().parent)
    if problem is not None:
        raise Refused(f"the nodes would refuse {args.to}: {problem}")
    change = NetworkChange(document_digest(before), canonical(after).decode())
    write_change(args.out, change)
    return "\n".join([f"wrote {args.out}: network configuration {change.base[:16]} -> {change.target()[:16]}",
                      *differences(before, after), "next: each owner signs it (network.py sign)"])


def show(args: argparse.Namespace) -> str:
    change = read_change(args.change)
    signed_by = ", ".join(signature.owner for signature in change.signatures) or "nobody yet"
    return f"network configuration {change.base[:16]} -> {change.target()[:16]}, signed by {signed_by}"


def sign(args: argparse.Namespace) -> str:
    change = read_change(args.change)
    if change.parsed() is None:
        raise Refused(f"{args.change}: its document is not a JSON object of finite numbers, nested within bounds")
    try:
        key = load_private_key(Path(args.key))
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the owner's key {args.key}: {error}") from None
    signature = OwnerSignature(args.owner, sign_bytes(key, canonical(change.signed_payload())))
    others = tuple(kept for kept in change.signatures if kept.owner != args.owner)
    write_change(args.change, dataclasses.replace(change, signatures=(*others, signature)))
    return (f"{args.change}: signed by {args.owner} ({public_key_hex(key)[:16]}...), "
            f"{len(others) + 1} signature(s) in all")


def submit(args: argparse.Namespace) -> str:
    change = read_change(args.change)
    headers = {"Content-Type": "application/json"}
    if args.token_file:
        headers["Authorization"] = f"Bearer {Path(args.token_file).read_text().strip()}"
    request = urllib.request.Request(args.client.rstrip("/") + "/network/changes", method="POST", headers=headers,
                                     data=json.dumps(encode(change)).encode())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            answer = json.load(error)
        except ValueError:
            answer = {}
        raise Refused(answer.get("reason") or answer.get("error") or f"HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        raise Refused(f"{args.client} did not answer: {error}") from None
    return f"{answer['reason']} (build {answer['build_id']}, agreed by nodes {answer['agreed_by']})"


def join(args: argparse.Namespace) -> str:
    keys_dir = Path(args.keys_dir)
    path = node_next_key_file(keys_dir, args.node) if args.next else node_key_file(keys_dir, args.node)
    made = not path.exists()
    if made:
        save_private_key(generate_private_key(), path)
    try:
        key = load_private_key(path)
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read {path}: {error}") from None
    entry = {"id": args.node, "host": args.host, "port": args.port, "public_key": public_key_hex(key)}
    what = "the key that is to replace the node's own" if args.next else "the node's key"
    lines = [
        f"# {path}: {what}, {'made now' if made else 'kept'}; the private key stays on this host",
        "# the entry for the network document's nodes: (the owners put it in their next change)",
        yaml.safe_dump([entry], default_flow_style=None, sort_keys=False).rstrip(),
    ]
    if args.first_from is not None:
        lines.append(write_joining_file(args, entry, keys_dir))
    return "\n".join(lines)


def write_joining_file(args: argparse.Namespace, entry: dict, keys_dir: Path) -> str:
    """The new node's configuration: the document the network started from, which its ledger
    replays every change from, and its own entry under `joining:`; never over another file."""
    if args.out is None:
        raise Refused("--first-from needs --out, the node's configuration file to write")
    out = Path(args.out)
    if out.exists():
        raise Refused(f"{out} exists: the node's file is written once, never replaced")
    first = document_of(args.first_from, "/network/first")
    data = {**first, "joining": entry, "keys_dir": str(keys_dir.resolve())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return (f"# {out}: the node's file, with the document the network started from ({document_digest(first)}, "
            f"as {args.first_from} serves it: compare it with another operator's); start the node with it, then "
            "the owners' change adds it")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser("propose", help="write a change from the running document to a file's")
    command.add_argument("--from", dest="source", required=True, help="a node's URL, or the running configuration file")
    command.add_argument("--to", required=True, help="the configuration file with the network you want")
    command.add_argument("--out", required=True, help="where to write the change")
    command.set_defaults(run=propose)
    command = commands.add_parser("show", help="what a change changes and who signed it")
    command.add_argument("change")
    command.set_defaults(run=show)
    command = commands.add_parser("sign", help="add one owner's signature")
    command.add_argument("change")
    command.add_argument("--key", required=True, help="the owner's private key (PEM)")
    command.add_argument("--owner", required=True, help="the owner's name in the network's owners")
    command.set_defaults(run=sign)
    command = commands.add_parser("submit", help="hand a signed change to a client and wait for the nodes")
    command.add_argument("change")
    command.add_argument("--client", required=True, help="the client's URL, e.g. http://127.0.0.1:8080")
    command.add_argument("--token-file", help="the client's bearer token, if it needs one")
    command.set_defaults(run=submit)
    command = commands.add_parser("join", help="on a node's host: its key, and its entry for the document")
    command.add_argument("--node", type=int, required=True, help="the node's id")
    command.add_argument("--host", required=True, help="where the other nodes and the clients reach it")
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--keys-dir", required=True, help="where its private key lives (made if missing, never replaced)")
    command.add_argument("--next", action="store_true", help="the key that is to replace the node's own")
    command.add_argument("--first-from", help="a node's URL: write the new node's file (--out) with the document "
                                              "the network started from")
    command.add_argument("--out", help="the new node's configuration file (with --first-from)")
    command.set_defaults(run=join)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(args.run(args))
    except Refused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
