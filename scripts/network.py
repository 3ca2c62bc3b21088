#!/usr/bin/env python3
"""Change a running network's configuration through the order: propose, show, sign, submit.

The network document (everything in the configuration but each host's own folders,
engines, TLS and secret files) changes only when owners sign a change and the network
orders it (docs/operations.md, "Changing the network"). A change names the document it
replaces, so it applies once, to the network it was made for.

  network.py document --from http://10.0.0.10:9000 > network-next.yaml   # what runs now, as YAML
  network.py propose --from http://10.0.0.10:9000 --to network-next.yaml --out change.json
      # the document a node runs now (or a configuration file), the file you edited, the change
  network.py show change.json [--from URL]             # what it changes, who signed it
  network.py sign change.json --key /secure/owner.key --owner ada   # each owner, on their host
  network.py submit change.json --client http://10.0.0.20:8080 [--token-file keys/client.token]
  network.py status --from http://10.0.0.10:9000       # what every node runs

An owner's key is made once on the owner's host: `scripts/owner.py generate --key
/secure/ada.key` prints its public key for the document's `owners:` and writes ada.pub.
The change file carries the document it replaces beside the signed change, so that `show`
and `sign` list every difference (settings, repositories, members with their keys); they
check it against the digest the owners sign, and `--from` names a node or file instead.

A node's own host makes its key and the entry the owners put in the document's `nodes:`
(the private key never leaves that host); `--next` makes the key that is to replace the
node's own, which the node signs with from the change that names it:

  network.py join --node 4 --host 10.0.0.14 --port 9000 --keys-dir /etc/pbft-ci/keys [--next]
      [--first-from http://10.0.0.10:9000 --out /etc/pbft-ci/network.yaml]   # and the node's file

The node's file keeps its ledger in --data-dir and its logs in --log-dir, by default
/var/lib/pbft-ci and /var/log/pbft-ci, where deploy/systemd/pbft-ci-node@.service lets
the node write.

`sign` adds one owner's signature to the file, which goes from owner to owner; `submit`
hands it to a client, which answers once f+1 nodes agree: applied from a sequence number,
signed by the owners whose signatures counted, or refused with the nodes' reason. Exit
codes: 0 done, 1 refused (and for `status`: a node differs or does not answer), 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import ssl
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
from pbft.networkchange import MAX_DOCUMENT_CHARS, NetworkChange, OwnerSignature, document_digest  # noqa: E402
from pbft.networks import FIXED_KEYS, NetworkState  # noqa: E402
from pbft.wire import MessageError, decode_struct, encode  # noqa: E402
from shared.boundedread import read_bounded  # noqa: E402
from shared.config import ConfigError, load_config  # noqa: E402
from shared.config_files import node_key_file, node_next_key_file  # noqa: E402
from shared.crypto import (  # noqa: E402
    Ed25519Authenticator, generate_private_key, load_private_key, public_key_hex, save_private_key, sign_bytes,
)
from shared.networkdiff import differences, printable  # noqa: E402
from shared.networkdoc import agreed, document_problem  # noqa: E402
from shared.nodeanswers import NodeAnswerError, Running, Served, every_status, majority, served_document  # noqa: E402

TIMEOUT_S = 660  # a client waits up to its deadline (600 s by default) for f+1 answers
STATUS_TIMEOUT_S = 5.0
# The change, the document it replaces and the owners' signatures, each well within this.
MAX_CHANGE_FILE_BYTES = 4 * MAX_DOCUMENT_CHARS
# Beside the signed fields of a change file: the document the change replaces, so that every
# owner sees what the change does. Never sent: the nodes know what they run.
BASE_DOCUMENT = "base_document"
# Where deploy/systemd/pbft-ci-node@.service lets a node write (StateDirectory, LogsDirectory).
UNIT_DATA_DIR, UNIT_LOG_DIR = "/var/lib/pbft-ci", "/var/log/pbft-ci"
HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")  # a host name or an IP address, nothing a URL would read more into


class Refused(Exception):
    """What stops a command, in one line for its user."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def served(source: str, which: str = "/network/document") -> Served:
    """The network document a node serves (an http(s) URL of the node) or a file describes;
    `which` "/network/first": the one the node's ledger starts from."""
    if is_url(source):
        try:
            return served_document(source, which)
        except NodeAnswerError as error:
            raise Refused(f"{source} did not answer with its network document: {error}") from None
    try:
        document = agreed(load_config(source, read_secrets=False))
    except ConfigError as error:
        raise Refused(_hinted(str(error))) from None
    return Served(document, document_digest(document), None, ())


def document_of(source: str, which: str = "/network/document") -> dict:
    return served(source, which).document


def _hinted(problems: str) -> str:
    """The loader's words, with the command that makes a missing public key on the host it
    belongs to: an owner's, or a node's (scripts/keygen.py makes the keys of a network on one
    machine, which has no owners to speak of)."""
    lines = []
    for line in problems.splitlines():
        if line.endswith("(run scripts/keygen.py)"):
            if ": owners." in line or line.lstrip().startswith("owners."):
                line = line.replace("(run scripts/keygen.py)", "(the owner makes it on their host: "
                                    "scripts/owner.py generate --key FILE writes FILE's .pub)")
            elif ": nodes[" in line or line.lstrip().startswith("nodes["):
                line = line.replace("(run scripts/keygen.py)", "(the node's host makes its key: "
                                    "scripts/network.py join)")
        lines.append(line)
    return "\n".join(lines)


def read_change(path: str) -> tuple[NetworkChange, dict | None]:
    """The change in a change file, and the document it carries as the one the change replaces
    (None if it carries none; not checked here: `replaced_document` does)."""
    try:
        data = json.loads(read_bounded(path, MAX_CHANGE_FILE_BYTES))
        change = decode_struct(NetworkChange, data)
    except (OSError, ValueError, RecursionError, MessageError) as error:
        raise Refused(f"{path} holds no network change: {printable(str(error))[:200]}") from None
    base = data.get(BASE_DOCUMENT)
    if base is not None and not isinstance(base, dict):
        raise Refused(f"{path}: its {BASE_DOCUMENT} is no network document")
    return change, base


def write_change(path: str, change: NetworkChange, base: dict | None) -> None:
    data = encode(change) if base is None else {**encode(change), BASE_DOCUMENT: base}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def replaced_document(path: str, change: NetworkChange, carried: dict | None, source: str | None) -> tuple[dict, str]:
    """The document `change` replaces, and where it comes from: `source` (a node's URL or a
    configuration file) if given, else the one the file carries. Either must have the digest
    the change names, the one the owners sign: a file altered on its way from owner to owner
    shows no other document than the one the signatures are good for."""
    if source is not None:
        document = document_of(source)
        runs = "runs" if is_url(source) else "describes"
        if document_digest(document) != change.base:
            raise Refused(f"{source} {runs} network configuration {document_digest(document)[:16]}, and the change "
                          f"applies to {change.base[:16]}: a change already applied, or one made before another")
        where = f"as {source} {runs} it"
    elif carried is None:
        raise Refused(f"{path} carries no document it replaces: name it with --from (a node's URL, or the "
                      "configuration file the network runs)")
    elif document_digest(carried) != change.base:
        raise Refused(f"{path}: the document it carries as the one it replaces has the digest "
                      f"{document_digest(carried)[:16]}, and the change names {change.base[:16]}: the file was "
                      "altered; show it --from a node's URL")
    else:
        document, where = carried, f"as {path} carries it"
    problem = document_problem(document, Path.cwd())
    if problem is not None:
        raise Refused(f"the document {path} replaces is no network document: {printable(problem)}")
    return document, where


def summary(path: str, change: NetworkChange, before: dict, where: str) -> list[str]:
    """What `change` changes in `before` and who signed it, as `show` prints it."""
    after = change.parsed()
    if after is None:
        raise Refused(f"{path}: its document is not a JSON object of finite numbers, nested within bounds")
    lines = [f"{path}: network configuration {change.base[:16]} -> {change.target()[:16]} "
             f"(the document it replaces: {where})", *differences(before, after)]
    fixed = [key for key in FIXED_KEYS if before.get(key) != after.get(key)]
    if fixed:
        lines.append(f"the nodes will refuse it: it changes {', '.join(fixed)}, which change only at a restart of "
                     "every node")
    state = NetworkState(before, change.base)
    threshold, _ = state.owners()
    if threshold == 0:
        lines.append("the nodes will refuse it: the network it changes has no owners, and changes only at a restart "
                     "of every node")
    # The nodes' own rule (pbft.networks): what counts is a valid signature by an owner of the
    # document the change replaces, once per owner.
    counted = state.signers(change, Ed25519Authenticator(None, {}, {}).verify_key)
    lines.append(f"signed by {', '.join(counted) or 'no owner yet'}: {len(counted)} of the {threshold} owners' "
                 "signatures it needs")
    others = sorted({signature.owner for signature in change.signatures} - set(counted))
    if others:
        lines.append(f"not counted: {', '.join(others)} (no owner of the document it replaces, or a signature of "
                     "another change)")
    return lines


def propose(args: argparse.Namespace) -> str:
    before, after = document_of(args.source), document_of(args.to)
    if before == after:
        raise Refused(f"{args.to} describes the network document {args.source} runs: nothing to change")
    problem = document_problem(after, Path(args.to).resolve().parent)
    if problem is not None:
        raise Refused(f"the nodes would refuse {args.to}: {problem}")
    change = NetworkChange(document_digest(before), canonical(after).decode())
    write_change(args.out, change, before)
    return "\n".join([f"wrote {args.out}: network configuration {change.base[:16]} -> {change.target()[:16]}",
                      *differences(before, after),
                      "next: each owner reads it (network.py show) and signs it (network.py sign)"])


def show(args: argparse.Namespace) -> str:
    change, carried = read_change(args.change)
    before, where = replaced_document(args.change, change, carried, args.source)
    return "\n".join(summary(args.change, change, before, where))


def sign(args: argparse.Namespace) -> str:
    change, carried = read_change(args.change)
    before, where = replaced_document(args.change, change, carried, args.source)
    if change.parsed() is None:
        raise Refused(f"{args.change}: its document is not a JSON object of finite numbers, nested within bounds")
    try:
        key = load_private_key(Path(args.key))
    except (OSError, ValueError) as error:
        raise Refused(f"cannot read the owner's key {args.key}: {error}") from None
    # Only the replaced document's owners count (pbft.networks): a wrong key or name is said now,
    # not found out when the nodes refuse the change.
    _, owners = NetworkState(before, change.base).owners()
    if args.owner not in owners:
        raise Refused(f"the document {args.change} replaces names no owner {args.owner} (its owners: "
                      f"{', '.join(sorted(owners)) or 'none'})")
    if owners[args.owner] != public_key_hex(key):
        raise Refused(f"in the document {args.change} replaces, {args.owner}'s public key is {owners[args.owner]}, "
                      f"and {args.key} holds {public_key_hex(key)}")
    signature = OwnerSignature(args.owner, sign_bytes(key, canonical(change.signed_payload())))
    others = tuple(kept for kept in change.signatures if kept.owner != args.owner)
    signed = dataclasses.replace(change, signatures=(*others, signature))
    write_change(args.change, signed, before)
    return "\n".join([*summary(args.change, signed, before, where),
                      f"{args.change}: signed by {args.owner} ({public_key_hex(key)[:16]}...)"])


def submit(args: argparse.Namespace) -> str:
    change, _ = read_change(args.change)  # the change alone: the nodes know the document it replaces
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
        raise Refused(printable(str(answer.get("reason") or answer.get("error") or f"HTTP {error.code}"))) from None
    except (OSError, ValueError) as error:
        raise Refused(f"{args.client} did not answer: {error}") from None
    return printable(f"{answer['reason']} (build {answer['build_id']}, agreed by nodes {answer['agreed_by']})")


def document(args: argparse.Namespace) -> str:
    """The running network document as YAML (what `propose --to` takes, edited)."""
    if args.first and not is_url(args.source):
        raise Refused("--first needs a node's URL: a configuration file describes one document")
    found = served(args.source, "/network/first" if args.first else "/network/document")
    if args.first:
        what = "the document the node's ledger starts from"
    elif found.changed_at:
        what = f"run from sequence number {found.changed_at}, signed by {', '.join(found.signed_by) or 'nobody named'}"
    elif found.changed_at == 0:
        what = "the one the node started with"
    else:
        what = "as the file describes it"
    return (f"# network document {found.digest}: {what}\n"
            + yaml.safe_dump(found.document, sort_keys=False)).rstrip("\n")


def status(args: argparse.Namespace) -> tuple[str, int]:
    """One line per node of the running document: what it runs, and whether more than half of
    the nodes run the same (document, epoch, members, f). Exit 1 if any differs or is silent."""
    nodes = document_of(args.source).get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise Refused(f"the document {args.source} runs names no nodes")
    urls, context = node_urls(args.source, nodes)
    statuses = every_status(urls, args.timeout, context)
    common = majority(statuses)
    lines = []
    for node_id, answer in statuses.items():
        where = f"node {node_id} ({urls[node_id].split('://', 1)[1]})"
        if isinstance(answer, NodeAnswerError):
            lines.append(f"{where}: no answer ({answer})")
        else:
            verdict = "runs what the majority runs" if answer.runs() == common else "differs"
            lines.append(f"{where}: {running(answer)}, executed {answer.last_executed}: {verdict}")
    wrong = sum(not isinstance(answer, Running) or answer.runs() != common for answer in statuses.values())
    if common is None:
        lines.append(f"no network runs on more than half of the {len(statuses)} nodes")
    elif wrong:
        lines.append(f"{wrong} of {len(statuses)} nodes differ or do not answer; the majority runs "
                     f"{running(Running(*common, 0))}")
    else:
        lines.append(f"all {len(statuses)} nodes run {running(Running(*common, 0))}")
    return "\n".join(lines), 1 if wrong else 0


def node_urls(source: str, nodes: list) -> tuple[dict[int, str], ssl.SSLContext | None]:
    """Each node's URL (over TLS where the source is reached so, or its file has `tls:`) and the
    context that checks the nodes' certificates against the network's CA, if the file names one."""
    context = None
    if is_url(source):
        scheme = source.split("://", 1)[0]
    else:
        config = load_config(source, read_secrets=False)
        scheme = "https" if config.tls is not None else "http"
        context = config.tls.client_context() if config.tls is not None else None
    urls = {}
    for node in nodes:
        if not (isinstance(node, dict) and type(node.get("id")) is int and type(node.get("port")) is int
                and isinstance(node.get("host"), str) and HOST.fullmatch(node["host"])):
            raise Refused(f"the document {source} runs has a node without an id, a host name and a port")
        host = f"[{node['host']}]" if ":" in node["host"] else node["host"]
        urls[node["id"]] = f"{scheme}://{host}:{node['port']}"
    return urls, context


def running(answer: Running) -> str:
    return (f"network {answer.digest[:16]}, epoch {answer.epoch}, members {' '.join(map(str, answer.members))}, "
            f"f {answer.f}")


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
    replays every change from, its own entry under `joining:`, and the folders it keeps its
    keys, ledger and logs in (by default those deploy/'s systemd unit lets it write, since a
    relative folder would be beside the file); never over another file."""
    if args.out is None:
        raise Refused("--first-from needs --out, the node's configuration file to write")
    out = Path(args.out)
    if out.exists():
        raise Refused(f"{out} exists: the node's file is written once, never replaced")
    first = document_of(args.first_from, "/network/first")
    folders = {"keys_dir": str(keys_dir.resolve()), "data_dir": str(Path(args.data_dir).resolve()),
               "log_dir": str(Path(args.log_dir).resolve())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump({**first, "joining": entry, **folders}, sort_keys=False))
    return (f"# {out}: the node's file, with the document the network started from ({document_digest(first)}, "
            f"as {args.first_from} serves it: compare it with another operator's), its ledger in "
            f"{folders['data_dir']} and its logs in {folders['log_dir']}; start the node with it, then the "
            "owners' change adds it")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser("propose", help="write a change from the running document to a file's")
    command.add_argument("--from", dest="source", required=True, help="a node's URL, or the running configuration file")
    command.add_argument("--to", required=True, help="the configuration file with the network you want")
    command.add_argument("--out", required=True, help="where to write the change")
    command.set_defaults(run=propose)
    for name, run, help in (("show", show, "what a change changes and who signed it"),
                            ("sign", sign, "add one owner's signature, after showing what it signs")):
        command = commands.add_parser(name, help=help)
        command.add_argument("change")
        command.add_argument("--from", dest="source", help="a node's URL, or the running configuration file: the "
                                                           "document the change replaces (default: as the file "
                                                           "carries it)")
        command.set_defaults(run=run)
        if name == "sign":
            command.add_argument("--key", required=True, help="the owner's private key (PEM)")
            command.add_argument("--owner", required=True, help="the owner's name in the network's owners")
    command = commands.add_parser("submit", help="hand a signed change to a client and wait for the nodes")
    command.add_argument("change")
    command.add_argument("--client", required=True, help="the client's URL, e.g. http://127.0.0.1:8080")
    command.add_argument("--token-file", help="the client's bearer token, if it needs one")
    command.set_defaults(run=submit)
    command = commands.add_parser("document", help="print the running network document as YAML")
    command.add_argument("--from", dest="source", required=True, help="a node's URL, or a configuration file")
    command.add_argument("--first", action="store_true", help="the document the node's ledger starts from")
    command.set_defaults(run=document)
    command = commands.add_parser("status", help="what every node of the running document runs")
    command.add_argument("--from", dest="source", required=True, help="a node's URL, or the configuration file")
    command.add_argument("--timeout", type=float, default=STATUS_TIMEOUT_S, help="seconds to wait for each node")
    command.set_defaults(run=status)
    command = commands.add_parser("join", help="on a node's host: its key, and its entry for the document")
    command.add_argument("--node", type=int, required=True, help="the node's id")
    command.add_argument("--host", required=True, help="where the other nodes and the clients reach it")
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--keys-dir", required=True,
                         help="where its private key lives (made if missing, never replaced)")
    command.add_argument("--next", action="store_true", help="the key that is to replace the node's own")
    command.add_argument("--first-from", help="a node's URL: write the new node's file (--out) with the document "
                                              "the network started from")
    command.add_argument("--out", help="the new node's configuration file (with --first-from)")
    command.add_argument("--data-dir", default=UNIT_DATA_DIR, help="the node's ledger, in its file (default: "
                                                                  "%(default)s, as deploy/'s systemd unit has it)")
    command.add_argument("--log-dir", default=UNIT_LOG_DIR, help="the node's logs, in its file (default: %(default)s)")
    command.set_defaults(run=join)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "timeout", 1.0) <= 0:
        print("refused: --timeout must be more than 0 seconds", file=sys.stderr)
        return 1
    try:
        answer = args.run(args)
    except Refused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    text, code = answer if isinstance(answer, tuple) else (answer, 0)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
