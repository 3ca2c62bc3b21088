"""Changes of the network document in the simulation (`pbft.networks`), and their checker.

A simulated network starts with a document whose owners are three keys, two of which must
sign a change. A seed of the CI kind `network-change` submits a few changes from a menu made
for it: two that follow each other (`first`, then `second`), one signed by a single owner
(`undersigned`), one made from the starting document alongside `first` (`alongside`), one
whose document no node can hash (`unhashable`), which any client may hand in, and one that
undoes `first` (`back`), after which `first` handed in again is a replay. Two change the
membership: the standby node joins (`join`), then node 0, the first primary, leaves (`leave`)
and goes on running, no member: a removed node that keeps voting, and counts for nothing. Which
apply depends on the order they are ordered in — `second` before `first`, or `first` twice,
is refused as stale — and every honest node must decide alike, whether it executed the
change, learnt it by state transfer or restored it after a crash or a power cut.

The checker holds each honest node to that: no two honest nodes apply different documents at
one sequence number, and at the end honest nodes that executed as far run the same document,
changed at the same point.
"""

from __future__ import annotations

import random

from pbft.encoding import canonical
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from pbft.sim.auth import SimKeys, keyed_signature
from pbft.sim.checkers import Violation

OWNERS = ("ada", "bob", "cy")
THRESHOLD = 2
MENU = ("first", "second", "undersigned", "alongside", "unhashable", "back", "join", "leave")
# Changes of the membership (`pbft.epochs`): a seed that draws one runs a standby node beside
# the first document's members.
MEMBERSHIP = ("join", "leave")


def owner_secrets(seed: int) -> dict[str, bytes]:
    """The owners' secrets, from an RNG of their own: the seed's other draws stay as they were."""
    rng = random.Random(f"owners-{seed}")
    return {name: rng.randbytes(32) for name in OWNERS}


def genesis(n: int, f: int, secrets: dict[str, bytes], builders: str = "all") -> dict:
    """The document a simulated network starts with. Its nodes' keys are the authenticators'
    by id (`pbft.replica.membership`: an empty key); its repository's builders are all the
    members, or f+1 the order picks (`pbft.builders`)."""
    return {
        "f": f,
        "nodes": [{"id": node, "public_key": ""} for node in range(n)],
        "owners": {"threshold": THRESHOLD, "keys": [
            {"name": name, "public_key": SimKeys.owner_key(secret)} for name, secret in secrets.items()]},
        "repositories": [{"name": "example", **({"builders": "f+1"} if builders == "f+1" else {})}],
    }


def menu(document: dict, secrets: dict[str, bytes]) -> dict[str, NetworkChange]:
    """The changes a seed may submit, each signed as its name says; the standby node is the one
    after the first document's."""
    first = {**document, "build": {"memory_mb": 512}}
    second = {**first, "build": {"memory_mb": 1024}, "repositories": [{"name": "example"}, {"name": "more"}]}
    alongside = {**document, "build": {"cpus": 2.0}}
    standby = len(document["nodes"])
    joined = {**document, "nodes": [*document["nodes"], {"id": standby, "public_key": ""}]}
    left = {**joined, "nodes": [node for node in joined["nodes"] if node["id"] != 0]}

    def change(base: dict, new: dict, signers: tuple[str, ...]) -> NetworkChange:
        unsigned = NetworkChange(document_digest(base), canonical(new).decode())
        payload = unsigned.signed_payload()
        return NetworkChange(unsigned.base, unsigned.document, tuple(
            OwnerSignature(name, keyed_signature(secrets[name], payload)) for name in signers))

    return {
        "first": change(document, first, ("ada", "bob")),
        "second": change(first, second, ("bob", "cy")),
        "undersigned": change(document, first, ("cy",)),
        "alongside": change(document, alongside, ("ada", "cy")),
        # Any client may hand one in: a document the canonical encoding cannot hash.
        "unhashable": NetworkChange(document_digest(document), '{"f": NaN, "nodes": 1e999}'),
        "back": change(first, document, ("ada", "cy")),
        "join": change(document, joined, ("ada", "bob")),
        "leave": change(joined, left, ("bob", "cy")),
    }


class NetworkChecker:
    """Where each honest node applied which document, as it did so live (NetworkChanged)."""

    def __init__(self, first: str) -> None:
        # node -> seq -> the digests of the changes it applied there, in batch order (one
        # batch may hold several: each applies to the document the one before it made)
        self.applied: dict[int, dict[int, list[str]]] = {}
        # node -> the steps (from digest, to digest) it took, and where: no step is taken twice
        self.steps: dict[int, dict[tuple[str, str], int]] = {}
        self.running: dict[int, str] = {}  # node -> the digest it runs, from `first`
        self.first = first
        self.violations: list[Violation] = []
        # Each build an honest node started: (node, seq, build, the digest of the document it
        # was made from). Bounded by the builds of the run.
        self.builds: list[tuple[int, int, tuple[str, int], str]] = []

    def changed(self, time_s: float, node: int, seq: int, digest: str) -> None:
        step = (self.running.get(node, self.first), digest)
        self.running[node] = digest
        steps = self.steps.setdefault(node, {})
        if step in steps and steps[step] != seq:
            self._violate(time_s, f"node {node} applied the change {step[0][:8]} -> {digest[:8]} at seq "
                                  f"{steps[step]} and again at seq {seq}: a replay")
        steps.setdefault(step, seq)
        at_seq = self.applied.setdefault(node, {}).setdefault(seq, [])
        at_seq.append(digest)
        index = len(at_seq) - 1
        for other, applied in self.applied.items():
            theirs = applied.get(seq, [])
            if other != node and index < len(theirs) and theirs[index] != digest:
                self._violate(time_s, f"node {node} applied {digest[:8]} at seq {seq}, node {other} "
                                      f"{theirs[index][:8]}")

    def built(self, node: int, seq: int, key: tuple[str, int], digest: str) -> None:
        """`node` started the build `key`, ordered at `seq`, with the document `digest`."""
        self.builds.append((node, seq, key, digest))

    def document_failures(self, time_s: float) -> list[Violation]:
        """Builds made from another document than the one in force at their sequence number:
        the last one the order applied at or before it (a change in the build's own batch
        applies to it), as the honest nodes applied them, whichever of them did."""
        changes: dict[int, str] = {}
        for applied in self.applied.values():
            for seq, digests in applied.items():
                changes[seq] = digests[-1]
        starts = sorted(changes)
        failures = []
        for node, seq, key, digest in self.builds:
            before = [start for start in starts if start <= seq]
            expected = changes[before[-1]] if before else self.first
            if digest != expected:
                failures.append(Violation("network", time_s, f"node {node} built {key} (seq {seq}) with document "
                                                             f"{digest[:8] or 'none'}, the order had {expected[:8]} "
                                                             f"in force there"))
        return failures[:1]

    def end_failures(self, time_s: float, states: dict[int, tuple[int, str, int]]) -> list[Violation]:
        """`states`: each honest node's (last executed, digest it runs, seq of the change that
        made it). Nodes that executed as far must run the same document, changed at the same
        point, whether they applied it live, learnt it or replayed it after a restart."""
        failures = list(self.violations)
        by_position: dict[int, set[tuple[str, int]]] = {}
        for last_executed, digest, changed_at in states.values():
            by_position.setdefault(last_executed, set()).add((digest, changed_at))
        for last_executed, ends in sorted(by_position.items()):
            if len(ends) > 1:
                shown = ", ".join(f"{digest[:8]} from seq {changed_at}" for digest, changed_at in sorted(ends))
                failures.append(Violation("network", time_s, f"honest nodes at seq {last_executed} run different "
                                                             f"documents: {shown}"))
        return failures

    def _violate(self, time_s: float, text: str) -> None:
        self.violations.append(Violation("network", time_s, text))
