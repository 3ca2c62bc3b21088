"""Checks of the verdict log (`pbft.ci.verdictlog`), kind `log`.

The log must be a function of the order alone, whatever each node saw certified and when:

- every honest node appends the same leaf at each position (executed, learnt by state
  transfer or replayed after a restart alike), and signs the same head (size, root) in its
  CHECKPOINT at each sequence number: honest heads agree at every checkpoint;
- each leaf is a verdict of a build an honest node executed at the sequence number it names;
- once the network settled, every honest node has logged every verdict it holds certified (of
  the builds its client table still holds): a verdict certified is not left out for good, by
  a primary that is down, lost its PRE-PREPARE or strips the verdicts from its batches
  (`drop-proofs`), whether or not requests still come.

Only honest nodes are watched: a Byzantine one may sign any head, and its CHECKPOINT then
counts towards no co-signed head of the others'.
"""

from __future__ import annotations

import hashlib
from pbft.effects import Execute
from pbft.messages import Checkpoint
from pbft.sim.checkers import Violation


class LogChecker:
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._leaves: dict[int, tuple[int, bytes]] = {}  # position -> (first node, SHA-256 of its leaf)
        self._heads: dict[int, tuple[int, tuple[int, str]]] = {}  # checkpoint seq -> (first node, its head)
        self._ordered: dict[tuple[str, int], int] = {}  # request -> where honest nodes executed it

    def executed(self, time_s: float, node: int, effect: Execute) -> None:
        """Honest `node` executed (or learnt) the batch of `effect`, which appended its `leaves`."""
        for request in effect.batch:
            self._ordered.setdefault(request.key, effect.seq)
        for leaf in effect.leaves:
            if self._ordered.get(leaf.key) != leaf.seq or leaf.seq >= effect.seq:
                self._violate(time_s, f"node {node} logged build {leaf.key} as ordered at seq {leaf.seq} (at position"
                                      f" {leaf.position}, seq {effect.seq}), where no honest node executed it")
            data = hashlib.sha256(leaf.data).digest()
            first = self._leaves.setdefault(leaf.position, (node, data))
            if first[1] != data:
                self._violate(time_s, f"position {leaf.position}: node {first[0]} and node {node} appended"
                                      f" different leaves (node {node}'s: build {leaf.key} ordered at seq {leaf.seq})")

    def checkpointed(self, time_s: float, node: int, checkpoint: Checkpoint) -> None:
        """Honest `node` signed `checkpoint`."""
        head = (checkpoint.log_size, checkpoint.log_root)
        first = self._heads.setdefault(checkpoint.seq, (node, head))
        if first[1] != head:
            self._violate(time_s, f"checkpoint {checkpoint.seq}: node {first[0]} signed log head {_short(first[1])}"
                                  f" but node {node} {_short(head)}")

    def _violate(self, time_s: float, text: str) -> None:
        self.violations.append(Violation("log", time_s, text))


def _short(head: tuple[int, str]) -> str:
    return f"size {head[0]} root {head[1][:8] or '-'}"


def end_failures(time_s: float, replicas: dict) -> list[Violation]:
    """`replicas`: the converged honest nodes' replicas, once settled (`pbft.sim.settled`)."""
    failures = []
    for node, replica in sorted(replicas.items()):
        log = replica.verdicts.log
        unlogged = sorted(key for key, state in replica.verdicts.result_votes.decided.items()
                          if state == "certified" and key not in log.logged)
        if unlogged:
            failures.append(Violation("log", time_s, f"node {node} holds {len(unlogged)} certified verdict(s) it never"
                                                     f" logged after settling, {unlogged[0]} first"
                                                     f" ({len(log.pending)} pending, {len(log.proposed)} proposed)"))
    return failures
