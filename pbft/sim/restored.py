"""What a crashed node had, and the `restore` check of what it gets back from its store.

A restarted honest node must hold what its saved steps held: every request it executed
(above each client's floor) and every checkpoint it signed above its stable one, known as a
checkpoint there. A checkpoint off the interval (where a change of the network document or a
batch of verdicts alone executed) that a restart forgets is one its peers' votes can no longer
make stable here, and one a later proof of it (a view change's, a state transfer's) finds
this node unaware of.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbft.sim.checkers import RequestKey, _first


@dataclass
class Down:
    """What a node had when it went down, to compare with what it restores."""

    executed: set[RequestKey]
    power_loss: bool
    # seq -> what it vouched for there (`Checkpoint.vouches`), above its stable checkpoint
    checkpoints: dict[int, tuple]

    @classmethod
    def of(cls, replica, unsaved: set[RequestKey], power_loss: bool) -> Down:
        # Signed: a node that is no member of a checkpoint's epoch computes what it would vouch
        # for there (`Checkpoints.computed`) but signs and stores nothing a restart could restore.
        checkpoints = replica.checkpoints
        own = {seq: vouched for seq, vouched in checkpoints.own.items()
               if seq > checkpoints.stable_seq and replica.id in checkpoints.votes.get(seq, {})}
        return cls(set(replica.clients.executed) - unsaved, power_loss, own)


def restore_problem(node: int, before: set[RequestKey], after: set[RequestKey], floors: dict[str, int]) -> str | None:
    """Why a restarted node's executed requests (above each client's floor) differ from those it had at the crash."""
    def above(keys: set[RequestKey]) -> set[RequestKey]:
        return {key for key in keys if key[1] > floors.get(key[0], -1)}

    lost, gained = sorted(above(before) - above(after)), sorted(above(after) - above(before))
    if not lost and not gained:
        return None
    parts = []
    if lost:
        parts.append(f"lost {len(lost)} executed request(s) {_first(lost)}")
    if gained:
        parts.append(f"gained {len(gained)} it had not executed {_first(gained)}")
    return f"node {node} restarted and " + " and ".join(parts)


def checkpoints_problem(node: int, before: dict[int, tuple], replica) -> str | None:
    """Why a restarted node does not know a checkpoint it signed before the crash, above its
    stable one and within what its store says it executed (a step the crash or a power cut
    took is rightly gone with its checkpoint)."""
    checkpoints = replica.checkpoints
    for seq in sorted(before):
        if not checkpoints.stable_seq < seq <= replica.last_executed:
            continue
        if not checkpoints.due(seq):
            return f"node {node} restarted not knowing seq {seq} as a checkpoint, though it signed one there"
        if checkpoints.own.get(seq) != before[seq]:
            return f"node {node} restarted without the checkpoint it signed at seq {seq}"
    return None

