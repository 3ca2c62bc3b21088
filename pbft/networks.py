"""The network document this replica runs, how a change replaces it, and which document each
peer says it runs (shared/networkdoc.py, pbft/networkchange.py).

Every CHECKPOINT and STATUS a node signs names the digest of its network document. A
peer whose digest is not ours runs another configuration: other members, keys, limits
or repositories. Its checkpoints never match ours (`pbft.checkpoints`), and a build it
runs may differ from ours for that reason alone, so it is named here — in the node's log,
its status and its metrics — from its first signed word, not discovered as a dispute.

A peer's claim is compared with the document we ran at the point of the order it speaks of:
a peer that has not executed a change yet is behind, not foreign. One entry per sender, the
digest it named last: bounded by n, and a node that fixes its file and restarts is no longer
named once it speaks again.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from pbft.networkchange import OWNER_NAME_PATTERN, NetworkChange, document_digest
from pbft.wire import MAX_TEXT


class NetworkClaims:
    def __init__(self) -> None:
        # sender -> the digest it named last, and the one we ran at the point it spoke of
        self.named: dict[int, tuple[str, str]] = {}

    def claim(self, sender: int, network: str, ours: str | None) -> bool:
        """Note that `sender` signed that it runs `network` where we run `ours` (None: a point of
        the order we have not reached, so nothing to compare). True if that is news: another
        network document than ours, named for the first time or changed."""
        if ours is None:
            return False
        before = self.named.get(sender)
        self.named[sender] = (network, ours)
        return network != ours and (before is None or before[0] != network)

    def foreign(self) -> dict[int, str]:
        """The peers that last named a network document other than ours, with its digest."""
        return {sender: network for sender, (network, ours) in sorted(self.named.items()) if network != ours}


MAX_HISTORY = 16
# What a change may not touch: the protocol, the clients' keys and the demo switch, which
# change at a restart of every node; and, where the replica is told so, the membership.
FIXED_KEYS = ("clients", "protocol", "allow_byzantine")
MEMBERSHIP_KEYS = ("f", "nodes")


def membership_changes(before: dict | None, after: dict) -> bool:
    """Whether `after` has other members (ids, keys) or another f than `before`."""
    def members(document: dict | None) -> tuple:
        document = document or {}
        nodes = document.get("nodes") or ()
        return document.get("f"), sorted((node.get("id"), node.get("public_key")) for node in nodes)

    return members(before) != members(after)


def membership_problem(document: dict) -> str | None:
    """Why the nodes and f of `document` make no membership the protocol can run, or None."""
    nodes, f = document.get("nodes"), document.get("f")
    if type(f) is not int or f < 0:
        return "f must be a whole number, 0 or more"
    if not isinstance(nodes, list) or not all(
        isinstance(node, dict) and type(node.get("id")) is int and node["id"] >= 0
        and isinstance(node.get("public_key"), str) for node in nodes
    ):
        return "every node needs an id (0 or more) and a public key"
    if len({node["id"] for node in nodes}) != len(nodes):
        return "two nodes have one id"
    if len(nodes) < 3 * f + 1:
        return f"n = {len(nodes)} nodes tolerate at most f = {max(len(nodes) - 1, 0) // 3}; need n >= 3f+1"
    return None


class NetworkState:
    """The network document this replica runs, and the rule a change must pass to replace it.

    Changed only where a change executes, in the order, so every honest node holds the same
    document after the same sequence number. `document` is None for a replica that was given
    only a digest (most core tests): it has no owners, and refuses every change.
    """

    def __init__(self, document: dict | None, digest: str) -> None:
        self.document = document
        self.digest = digest
        self.changed_at = 0  # the sequence number of the change that made it; 0: the one started with
        # The owners whose valid signatures carried that change (`signers`), sorted; () for the
        # document started with. Set where the change applies, so a node that executed it, learnt
        # it by state transfer or replays it after a restart names the same owners.
        self.signed_by: tuple[str, ...] = ()
        # The digests of the last few documents, each with the sequence number it ran from, so
        # that a peer's checkpoint or STATUS is compared with what we ran at its point, and a
        # build is made from the document in force where it was ordered (`document_at`).
        self.history: list[tuple[int, str]] = [(0, digest)]
        self._documents: dict[str, dict | None] = {digest: document}  # those of `history`, by digest
        # Every change applied, as the step (from digest, to digest) it took, with where: a
        # document may come back (a change undone), and a change signed for the step before
        # must not apply again. A few entries a year; rebuilt alike by a restart's replay.
        self.steps: dict[tuple[str, str], int] = {}

    def digest_at(self, seq: int, last_executed: int) -> str | None:
        """The digest of the document we ran after executing `seq`; None beyond `last_executed`
        (a change may come first) or before the history kept."""
        found = self.document_at(seq) if seq <= last_executed else None
        return None if found is None else found[0]

    def document_at(self, seq: int) -> tuple[str, dict | None] | None:
        """The digest and the document in force for a build executed at `seq`: the one run
        after executing `seq`, so a change in the build's own batch applies to it, as it does to
        the builders picked for it (`pbft.builders`). None before the history kept (a build
        still to run after MAX_HISTORY changes since its own)."""
        if seq < self.history[0][0]:
            return None
        digest = next(digest for start, digest in reversed(self.history) if start <= seq)
        return digest, self._documents[digest]

    def owners(self) -> tuple[int, dict[str, str]]:
        """The owners' threshold k and their public keys by name (0 and none: no owners)."""
        owners = (self.document or {}).get("owners") or {}
        keys = {key["name"]: key["public_key"] for key in owners.get("keys", ())}
        return owners.get("threshold", 0), keys

    def problem(self, change: NetworkChange, verify_key: Callable[[str, dict, str], bool],
                check: Callable[[dict], str | None], *, membership: bool = False) -> str | None:
        """Why `change` may not replace the running document, in words for its submitter; None if it may.

        `verify_key(public_key, payload, sig)` checks an owner's signature; `check` is the
        rest of what makes a document one every node can run (the driver's schema), a pure
        function of the document, so every honest node answers alike. `membership`: whether
        the change may change the nodes and f (`pbft.epochs`)."""
        threshold, _ = self.owners()
        if threshold == 0:
            return "this network has no owners: its configuration changes only at a restart of every node"
        if change.base != self.digest:
            return (f"the change applies to network configuration {change.base[:16]}, and the network runs "
                    f"{self.digest[:16]}: a change already applied, or one made before another")
        document = change.parsed()
        if document is None:
            return "the change's document is not a JSON object of finite numbers, nested within bounds"
        if change.target() == self.digest:
            return "the change's document is the one the network runs"
        applied_at = self.steps.get((change.base, change.target()))
        if applied_at is not None:
            return (f"the change was applied at sequence number {applied_at} already: a replay (to take that "
                    "step again, owners sign a document that differs in some setting)")
        signers = self.signers(change, verify_key)
        if len(signers) < threshold:
            named = f" ({', '.join(signers)})" if signers else ""
            return f"signed by {len(signers)} of the {threshold} owners a change needs{named}"
        fixed = FIXED_KEYS if membership else MEMBERSHIP_KEYS + FIXED_KEYS
        changed = [key for key in fixed if document.get(key) != (self.document or {}).get(key)]
        if changed:
            return f"changes {', '.join(changed)}, which change only at a restart of every node"
        return membership_problem(document) or check(document)

    def signers(self, change: NetworkChange, verify_key: Callable[[str, dict, str], bool]) -> tuple[str, ...]:
        """The owners of the running document whose signatures of `change` hold, sorted by name:
        a signature by a key that is no owner's, or a second one by one owner, counts for nothing.
        A pure function of the document and the change, so every honest node names the same."""
        _, keys = self.owners()
        payload = change.signed_payload()
        return tuple(sorted({signature.owner for signature in change.signatures
                             if signature.owner in keys and verify_key(keys[signature.owner], payload, signature.sig)}))

    def apply(self, seq: int, change: NetworkChange, signed_by: tuple[str, ...]) -> None:
        """The change executed at `seq` passed `problem`, carried by the signatures of
        `signed_by` (`signers`, asked before it applies: the owners are the replaced document's):
        its document runs from there."""
        document = change.parsed()
        assert document is not None, "a change applied unchecked"
        self.steps.setdefault((self.digest, change.target()), seq)
        self._run(document, change.target(), seq)
        self.changed_at, self.signed_by = seq, signed_by

    def reload(self, document: dict, seq: int) -> None:
        """An operator reloaded `document` after `seq`, in a network the order never changed."""
        assert not self.changed_at, "a document the order changed changes through the order only"
        self._run(document, document_digest(document), seq)

    def _run(self, document: dict, digest: str, seq: int) -> None:
        self.document, self.digest = document, digest
        self.history = [*self.history, (seq, self.digest)][-MAX_HISTORY:]
        self._documents[digest] = document
        kept = {digest for _, digest in self.history}
        self._documents = {digest: document for digest, document in self._documents.items() if digest in kept}


# The answer every node gives a change that applied. Its reason text is each node's own, not
# part of the agreed result (`pbft.build.Result.agreed`): a reader that trusts the signers it
# names takes them only where every node of a quorum named the same (client.tables.audit).
_APPLIED = re.compile(r"network configuration ([0-9a-f]{64}), signed by (.+), runs from sequence number (\d+)")


def applied_reason(digest: str, seq: int, signed_by: tuple[str, ...]) -> str:
    """`network configuration <digest>, signed by ada, bob, runs from sequence number 12`. Owners'
    names are short; where sixteen long ones would not fit a reason's bound, their count
    stands for them (GET /network/document on a node names them all)."""
    named = f"network configuration {digest}, signed by {', '.join(signed_by)}, runs from sequence number {seq}"
    if len(named) <= MAX_TEXT:
        return named
    return f"network configuration {digest}, signed by {len(signed_by)} owners, runs from sequence number {seq}"


def signers_named(reason: str) -> tuple[str, ...] | None:
    """The owners an applied change's reason (`applied_reason`) names; None for any other text,
    and for the count that stands for too many names."""
    found = _APPLIED.fullmatch(reason)
    if found is None:
        return None
    names = tuple(found.group(2).split(", "))
    return names if all(OWNER_NAME_PATTERN.fullmatch(name) for name in names) else None


def agreed_signers(reasons: Iterable[str]) -> tuple[str, ...] | None:
    """The owners that the reasons of the nodes whose results agreed on an applied change (at
    least f+1 of them, so one honest node at least) all name alike; None if one names others
    or none. A faulty node among them can keep the names from being known, never change them."""
    named = {signers_named(reason) for reason in reasons}
    return next(iter(named)) if len(named) == 1 else None
