"""Scenario tests as text, in the style of etcd/raft's datadriven interaction tests.

A scenario file (tests/scenarios/*.txt) is a list of blocks:

    command key=value ...
    ----
    what the command printed, one line per event

separated by blank lines; lines starting with `#` between blocks are
comments. The runner plays the commands on a `ScenarioCluster` (the test
cluster: real replicas, real signatures, the node's interpreter and store)
and compares each block's output with the file. Run with
PBFT_SCENARIO_REWRITE=1 to write the outputs into the files instead, then
read the diff.

Commands:

    cluster [setting=value ...]     a new cluster; settings of ReplicaSettings (n, f, ...), and
                                    artifacts=true: every build succeeds with the same artifacts;
                                    members=0,1,2,3: a network document of those nodes and an owner,
                                    the cluster's other nodes outside it (pbft.epochs)
    change members=0,1,2 [f=F] [to=...]
                                    the owner's change of the membership to those nodes
    request [branch=B] [to=0,1|all|none]
                                    a signed request of the next timestamp, delivered to those nodes
    resend t=T [to=...]             the client sends request T again (by default to every node)
    cancel t=T [to=0,1|all]         a signed cancel of request T, of the next timestamp (pbft.cancels)
    drop to=N [type=T] [branch=B] [carries=T]
                                    from now on, the network loses what matches (a relay matches
                                    `carries` if it holds a vote of that type)
    capture to=N [type=T] ...       as drop, but the network keeps what matches until `replay`
    replay to=N [type=T]            deliver what was captured for N (of that type), in order
    undrop                          forget every drop and capture rule
    deliver                         deliver until the network is quiet
    cut node=N / heal node=N        N receives nothing (its process runs on) / again
    slow node=N                     N's builds do not finish, nor do the stops of them land
    finish node=N                   N's builds report what they found, and N is no longer slow
    tick t=S [nodes=1,2] [unreachable=0]
                                    advance the clocks to S seconds (a driver's tick); their
                                    links say they cannot reach those nodes (pbft.reach)
    settle t=S                      tick at S and deliver, twice: every RESULT vote goes round
    hold node=N                     N's turns end (are saved and sent) only at `release`
    release node=N                  end N's held turns
    read-ledger node=N              what GET /builds/{seq} does first: write what waited unsynced
    crash node=N                    kill N: what its interpreter held unsaved is gone
    restart node=N                  start N again from its store
    status                          each node's view, mode, last executed and stable checkpoint
                                    (and its epoch, once a change began one)
    store node=N                    what N's store holds: its state's last executed and ledger entries
    clients node=N                  N's client table: the floor and how many executed requests it keeps

Events: `n1 execute seq=2 built=t2` (with `answered=t3` for what the order alone
answers, `learnt=t4` for what state transfer brought, `logged=t1` for the verdicts it appended
to the verdict log), `n1 stop t2` (the order
cancelled a build), `n1 build-learnt seq=3 t3`, `n1 verdict t3 certified`, `n1 reply t3 success`, `n0 view-change v=1`, `n1 new-view v=1`,
`n1 reply-again t3` (a retransmission answered from the store), `n3 fetch from=1`,
`n1 state-transfer stable=8 to=n3`, `n2 stable seq=8`, and
`n0 dropped request t2: <reason>` for what a replica refused.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from pbft.effects import (
    Broadcast, BuildLearnt, Effect, Execute, KeepStableProof, RecordVerdict, ResendReply, SendReply, SendTo, StopBuild,
)
from pbft.build import Result
from pbft.encoding import canonical
from pbft.messages import Fetch, Message, NewView, Relay, Request, StateTransfer, ViewChange
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from shared.crypto import generate_private_key, public_key_hex, sign_bytes
from tests.support.cluster import Cluster, keys

REWRITE = os.environ.get("PBFT_SCENARIO_REWRITE") == "1"


@dataclass(frozen=True)
class Block:
    command: str
    expected: str
    line: int  # where the command stands in its file


def parse(text: str) -> list[Block]:
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        line = lines[index]
        if not line.strip() or line.startswith("#"):
            index += 1
            continue
        command, start = line, index + 1
        assert index + 1 < len(lines) and lines[index + 1] == "----", f"line {start}: {command!r} lacks its ----"
        index += 2
        output = []
        while index < len(lines) and lines[index].strip():
            output.append(lines[index])
            index += 1
        blocks.append(Block(command, "\n".join(output), start))
    return blocks


def render(blocks: list[Block], outputs: list[str], comments: dict[int, list[str]]) -> str:
    parts = []
    for block, output in zip(blocks, outputs):
        parts += comments.get(block.line, [])
        parts.append(f"{block.command}\n----\n{output}\n" if output else f"{block.command}\n----\n")
    return "\n".join(parts)


def comments_before(text: str) -> dict[int, list[str]]:
    """Each command's line -> the comment lines (and blank lines between them) just before it."""
    found, pending, in_block = {}, [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_block:
            in_block = bool(line.strip())
            continue
        if line.startswith("#"):
            pending.append(line)
        elif line.strip() and line != "----":
            found[number] = pending
            pending = []
            in_block = True
    return found


def run_file(path: Path) -> list[tuple[Block, str]]:
    """Play a scenario file; return the blocks whose output differs, with what they printed."""
    text = path.read_text()
    blocks = parse(text)
    runner = ScenarioRunner()
    outputs = [runner.run(block.command) for block in blocks]
    if REWRITE:
        path.write_text(render(blocks, outputs, comments_before(text)))
        return []
    return [(block, output) for block, output in zip(blocks, outputs) if output != block.expected]


class ScenarioCluster(Cluster):
    """The test cluster, recording what each turn does as event lines."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.events: list[str] = []
        self.held: set[int] = set()

    def saw(self, node: int, effects: list[Effect]) -> None:
        for effect in effects:
            line = _event(effect)
            if line is not None:
                self.events.append(f"n{node} {line}")

    def deliver_to(self, node: int, message: Message) -> str | None:
        reason = super().deliver_to(node, message)
        if reason is not None:
            self.events.append(f"n{node} dropped {_name(message)}: {reason}")
        return reason

    def _end_turn(self, node: int) -> None:
        if node not in self.held:
            super()._end_turn(node)

    def take_events(self) -> str:
        """The events since the last call, a run of identical lines as one with its count."""
        events, self.events = self.events, []
        lines: list[list] = []
        for event in events:
            if lines and lines[-1][0] == event:
                lines[-1][1] += 1
            else:
                lines.append([event, 1])
        return "\n".join(event if count == 1 else f"{event} (x{count})" for event, count in lines)


def _name(message: Message) -> str:
    if isinstance(message, Request):
        return f"request t{message.timestamp}"
    return f"{message.TYPE} from n{getattr(message, 'sender', '?')}"


def _event(effect: Effect) -> str | None:
    if isinstance(effect, Execute):
        built = ",".join(f"t{request.timestamp}" for request in effect.requests) or "-"
        learnt = ",".join(f"t{request.timestamp}" for request in effect.learnt)
        answered = ",".join(f"t{request.timestamp}" for request in effect.answered)
        logged = ",".join(f"t{leaf.key[1]}" for leaf in effect.leaves)
        return (f"execute seq={effect.seq} built={built}" + (f" answered={answered}" if answered else "")
                + (f" learnt={learnt}" if learnt else "") + (f" logged={logged}" if logged else ""))
    if isinstance(effect, StopBuild):
        return f"stop t{effect.timestamp}"
    if isinstance(effect, BuildLearnt):
        return f"build-learnt seq={effect.seq} t{effect.request.timestamp}"
    if isinstance(effect, RecordVerdict):
        return f"verdict t{effect.timestamp} {effect.state}"
    if isinstance(effect, SendReply):
        return f"reply t{effect.reply.timestamp} {effect.reply.result.status}"
    if isinstance(effect, ResendReply):
        return f"reply-again t{effect.timestamp}"
    if isinstance(effect, KeepStableProof):
        return f"stable seq={effect.seq}"
    if isinstance(effect, (Broadcast, SendTo)):
        message = effect.message
        to = f" to=n{effect.node}" if isinstance(effect, SendTo) else ""
        if isinstance(message, ViewChange):
            return f"view-change v={message.view}{to}"
        if isinstance(message, NewView):
            return f"new-view v={message.view}{to}"
        if isinstance(message, Fetch):
            return f"fetch from={message.from_seq}{to}"
        if isinstance(message, StateTransfer):
            return f"state-transfer stable={message.stable_seq}{to}"
    return None


ARTIFACTS = Result("success", 0, "a" * 40, artifacts="sha256:" + "1" * 64)
OWNER = generate_private_key()


def membership_document(members: list[int], f: int, count: int) -> dict:
    """A network document of `members` (keys of the test cluster's `count` nodes) and one owner."""
    node_keys, _ = keys(count)
    return {"f": f, "nodes": [{"id": node, "public_key": public_key_hex(node_keys[node])} for node in members],
            "owners": {"threshold": 1, "keys": [{"name": "owner", "public_key": public_key_hex(OWNER)}]}}


def owner_signed(base: dict, wanted: dict) -> NetworkChange:
    unsigned = NetworkChange(document_digest(base), canonical(wanted).decode())
    signature = OwnerSignature("owner", sign_bytes(OWNER, canonical(unsigned.signed_payload())))
    return dataclasses.replace(unsigned, signatures=(signature,))


class ScenarioRunner:
    def __init__(self) -> None:
        self.cluster: ScenarioCluster | None = None
        self.drops: list[dict[str, str]] = []  # rules; a capture rule has "capture" set
        self.captured: list[tuple[int, Message]] = []
        self.requests: dict[int, Request] = {}

    def run(self, line: str) -> str:
        command, *words = shlex.split(line)
        args = dict(word.split("=", 1) for word in words)
        handler = getattr(self, "do_" + command.replace("-", "_"), None)
        assert handler is not None, f"unknown command {command!r}"
        printed = handler(args)
        events = self.cluster.take_events() if self.cluster is not None else ""
        return "\n".join(part for part in (events, printed) if part)

    def nodes(self, text: str) -> list[int]:
        if text == "none":
            return []
        return list(range(self.cluster.n)) if text == "all" else [int(node) for node in text.split(",")]

    def do_cluster(self, args: dict[str, str]) -> str:
        """`members=0,1,2,3`: a network document whose owner may change its membership (`change`);
        the other nodes of n run outside it until a change adds them."""
        settings = {
            key.replace("-", "_"): _value(value) for key, value in args.items()
            if key not in ("n", "f", "artifacts", "members")
        }
        n = int(args.get("n", 4))
        f = int(args.get("f", (n - 1) // 3))
        extra = {"build": lambda operation: ARTIFACTS} if args.get("artifacts") == "true" else {}
        if "members" in args:
            members = [int(node) for node in args["members"].split(",")]
            extra["document"] = membership_document(members, (len(members) - 1) // 3, n)
            settings["changes_membership"] = True
        self.cluster = ScenarioCluster(n=n, f=f, settings=settings, **extra)
        self.drops, self.captured, self.requests = [], [], {}
        return ""

    def do_change(self, args: dict[str, str]) -> str:
        """The owner's change of the membership to `members=...` (f: the most they tolerate)."""
        members = [int(node) for node in args["members"].split(",")]
        current = self.cluster.replicas[0].network.document
        wanted = membership_document(members, int(args.get("f", (len(members) - 1) // 3)), self.cluster.n)
        request = self.cluster.change(owner_signed(current, wanted))
        self.requests[request.timestamp] = request
        self._send(request, self.nodes(args.get("to", str(self.cluster.replicas[0].primary()))))
        return ""

    def do_request(self, args: dict[str, str]) -> str:
        request = self.cluster.request(args.get("branch", "master"))
        self.requests[request.timestamp] = request
        self._send(request, self.nodes(args.get("to", str(self.cluster.replicas[0].primary()))))
        return ""

    def do_cancel(self, args: dict[str, str]) -> str:
        request = self.cluster.cancel(self.requests[int(args["t"])])
        self.requests[request.timestamp] = request
        self._send(request, self.nodes(args.get("to", str(self.cluster.replicas[0].primary()))))
        return ""

    def do_resend(self, args: dict[str, str]) -> str:
        self._send(self.requests[int(args["t"])], self.nodes(args.get("to", "all")))
        return ""

    def _send(self, request: Request, nodes: list[int]) -> None:
        for node in nodes:
            if node not in self.cluster.crashed and self._kept(node, request):
                self.cluster.deliver_to(node, request)

    def do_drop(self, args: dict[str, str]) -> str:
        self.drops.append(args)
        return ""

    def do_capture(self, args: dict[str, str]) -> str:
        self.drops.append({**args, "capture": "true"})
        return ""

    def do_replay(self, args: dict[str, str]) -> str:
        node = int(args["to"])

        def chosen(to: int, message: Message) -> bool:
            return to == node and args.get("type", message.TYPE) == message.TYPE

        replayed = [message for to, message in self.captured if chosen(to, message)]
        self.captured = [(to, message) for to, message in self.captured if not chosen(to, message)]
        for message in replayed:
            self.cluster.deliver_to(node, message)
        return ""

    def do_undrop(self, args: dict[str, str]) -> str:
        self.drops = []
        return ""

    def _kept(self, node: int, message: Message) -> bool:
        for rule in self.drops:
            if "to" in rule and int(rule["to"]) != node:
                continue
            if "type" in rule and rule["type"] != message.TYPE:
                continue
            if "branch" in rule and getattr(getattr(message, "operation", None), "branch", None) != rule["branch"]:
                continue
            if "carries" in rule and not (
                isinstance(message, Relay) and any(vote.TYPE == rule["carries"] for vote in message.votes)
            ):
                continue
            if "capture" in rule:
                self.captured.append((node, message))
            return False
        return True

    def do_cut(self, args: dict[str, str]) -> str:
        self.cluster.crashed.add(int(args["node"]))
        return ""

    def do_heal(self, args: dict[str, str]) -> str:
        self.cluster.crashed.discard(int(args["node"]))
        return ""

    def do_slow(self, args: dict[str, str]) -> str:
        self.cluster.slow.add(int(args["node"]))
        return ""

    def do_finish(self, args: dict[str, str]) -> str:
        node = int(args["node"])
        self.cluster.slow.discard(node)
        self.cluster.finish_builds(node)
        return ""

    def do_clients(self, args: dict[str, str]) -> str:
        clients = self.cluster.replicas[int(args["node"])].clients
        return "\n".join(
            f"{client}: floor={clients.floor.get(client, -1)} kept={sum(1 for key in clients.executed if key[0] == client)}"
            f" waiting={sum(1 for key in clients.waiting if key[0] == client)}"
            for client in sorted(set(clients.latest) | {key[0] for key in clients.waiting})
        )

    def do_deliver(self, args: dict[str, str]) -> str:
        self.cluster.run(self._kept)
        return ""

    def do_tick(self, args: dict[str, str]) -> str:
        nodes = self.nodes(args["nodes"]) if "nodes" in args else None
        unreachable = frozenset(self.nodes(args["unreachable"])) if "unreachable" in args else frozenset()
        self.cluster.tick(float(args["t"]), nodes, unreachable)
        return ""

    def do_settle(self, args: dict[str, str]) -> str:
        self.cluster.send_results(float(args["t"]))
        return ""

    def do_hold(self, args: dict[str, str]) -> str:
        self.cluster.held.add(int(args["node"]))
        return ""

    def do_release(self, args: dict[str, str]) -> str:
        node = int(args["node"])
        self.cluster.held.discard(node)
        self.cluster._end_turn(node)
        return ""

    def do_read_ledger(self, args: dict[str, str]) -> str:
        self.cluster.interpreter(int(args["node"])).write_deferred()
        return ""

    def do_crash(self, args: dict[str, str]) -> str:
        node = int(args["node"])
        self.cluster.crashed.add(node)
        self.cluster.held.discard(node)
        self.cluster._turn_ends[node].clear()  # the scheduled saves die with the process
        self.cluster._interpreters.pop(node, None)
        return ""

    def do_restart(self, args: dict[str, str]) -> str:
        self.cluster.restart(int(args["node"]))
        return ""

    def do_status(self, args: dict[str, str]) -> str:
        lines = []
        for replica in self.cluster.replicas:
            mode = "view-change" if replica.changing_view else "normal"
            epoch = f" epoch={replica.epoch}" + ("" if replica.member else " (no member)") if replica.epoch else ""
            lines.append(f"n{replica.id}: view={replica.view} {mode} executed={replica.last_executed}"
                         f" stable={replica.low_watermark}{epoch}")
        return "\n".join(lines)

    def do_store(self, args: dict[str, str]) -> str:
        store = self.cluster.stores[int(args["node"])]
        loaded = store.load()
        if loaded is None:
            return "empty"
        last = loaded.state.last_executed
        entries = [entry.seq for entry in store.ledger_entries(1, max(last, 1) + 64)]
        return f"last_executed={last} ledger={','.join(map(str, entries)) or '-'}"


def _value(text: str) -> int | float | bool:
    if text in ("true", "false"):
        return text == "true"
    return float(text) if "." in text else int(text)
