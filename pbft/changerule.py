"""Whether a network change the order executed applies, as every honest node decides it.

A change executed at a sequence number applies if the running document's owners signed
it and it passes every check (`pbft.networks.NetworkState.problem`, with the schema's own
`check_network`), and, if it changes who the members are, if no other change of the
members is pending or began at that same sequence number (`pbft.epochs`): the next
epoch's members are the first change's to agree on. The replica applies a change where it
executes; a restart replays the ledger's changes by this same rule (`ChangeRule.replay`),
so that a restarted node runs the document, and is in the epoch, its peers are.
"""

from __future__ import annotations

from typing import Callable, Iterable

from pbft.epochs import Epochs
from pbft.membership import Membership
from pbft.messages import Request
from pbft.networkchange import NetworkChange
from pbft.networks import NetworkState, membership_changes
from pbft.slot import ReplicaSettings

VerifyKey = Callable[[str, dict, str], bool]
CheckNetwork = Callable[[dict], "str | None"]


def membership(document: dict | None, settings: ReplicaSettings) -> Membership:
    """The nodes a network document names, with their keys and f; without a document, nodes
    0..n-1 of `settings`, whose keys the authenticator holds."""
    if document is None:
        return Membership.of(((node, "") for node in range(settings.n)), settings.f, settings.log_window)
    return Membership.of(((node["id"], node["public_key"]) for node in document["nodes"]), document["f"],
                         settings.log_window)


class ChangeRule:
    """The rule a change passes, over the document this node runs (`network`) and the members of
    each epoch (`epochs`), both of which it reads and the replay moves on."""

    def __init__(self, settings: ReplicaSettings, verify_key: VerifyKey, network: NetworkState, epochs: Epochs,
                 check_network: CheckNetwork) -> None:
        self.settings, self.verify_key, self.check_network = settings, verify_key, check_network
        self.network, self.epochs = network, epochs

    def problem(self, seq: int, change: NetworkChange) -> tuple[str | None, bool]:
        """Why the change executed at `seq` is refused (None: it applies), and whether it changes
        the membership: one such change per batch, the next one's members being the first's to
        agree on (`pbft.epochs`)."""
        problem = self.network.problem(change, self.verify_key, self.check_network,
                                       membership=self.settings.changes_membership)
        if problem is not None:
            return problem, False
        if not membership_changes(self.network.document, change.parsed()):
            return None, False
        if self.epochs.pending is not None or self.epochs.boundaries[-1:] == [seq]:
            return "another change of the membership executed at this sequence number: submit it again", False
        return None, True

    def apply(self, seq: int, change: NetworkChange) -> None:
        """The change executed at `seq` passed `problem`: its document runs from there."""
        self.network.apply(seq, change, self.network.signers(change, self.verify_key))

    def pending_members(self) -> Membership:
        """The members of the document just applied, for the epoch it pends."""
        return membership(self.network.document, self.settings)

    def replay(self, changes: Iterable[tuple[int, Request]], last_executed: int, low_watermark: int,
               boundary: Callable[[int], None]) -> None:
        """After a restart: apply again, in ledger order, the changes the ledger executed
        (`pbft.storage.Loaded.changes`), by the rule that applied or refused each one, from the
        document the node starts with. A change above the stable checkpoint is a checkpoint
        boundary again (`boundary`); one of the members at or below it began its epoch there."""
        for seq, request in changes:
            change = request.operation.change
            assert change is not None and seq <= last_executed, "a change the ledger did not execute"
            problem, new_members = self.problem(seq, change)
            if problem is not None:
                continue
            self.apply(seq, change)
            if seq > low_watermark:
                boundary(seq)
            if new_members:
                self.epochs.pend(seq, self.pending_members())
                if seq <= low_watermark:  # its checkpoint was stable: the epoch had begun
                    self.epochs.begin()
