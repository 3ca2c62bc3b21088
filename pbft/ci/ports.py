"""What the CI's parts (`pbft.ci.verdicts`, `pbft.ci.answers`) are given by the replica that
runs them: the parts of its state they read and write (the client table, the ledger transfer's
learnt builds, the network document), and a few small callables for what only the replica
knows (its clock and view, the members of each stretch of the order, who signed a message,
whether its votes go through a relay) or does (its outbox).

Narrow on purpose: the CI decides what builds, what is answered and what the verdicts are, and
never reaches into how the order is made (views, epochs, checkpoints), which stays the
replica's; these are the only points where the two meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pbft.authenticator import Authenticator
from pbft.clients import ClientTable
from pbft.effects import Effect
from pbft.membership import Membership
from pbft.messages import Message, ResultVote
from pbft.networks import NetworkState
from pbft.slot import ReplicaSettings
from pbft.transfer import LedgerTransfer


@dataclass(frozen=True)
class Ports:
    node_id: int
    settings: ReplicaSettings
    auth: Authenticator
    clients: ClientTable
    transfer: LedgerTransfer  # the learnt builds not built yet, whose bookkeeping it keeps
    network: NetworkState  # the document in force at each sequence number, and the one run now
    now: Callable[[], float]  # the replica's clock, which only its inputs move
    view: Callable[[], int]  # for log lines and replies
    # Appends to the replica's outbox as it is at the call (`take_effects` swaps the list).
    emit: Callable[[Effect], None]
    members_at: Callable[[int], Membership]  # the members of the epoch that ordered a sequence number
    # Why a message is not signed by a current member (or, for the second, one of an epoch still
    # kept), or None: the replica's, which knows the epochs.
    signature_problem: Callable[[Message], str | None]
    past_member_signature_problem: Callable[[Message], str | None]
    # Whether this node is a relaying primary (`pbft.relay`): it passes on the RESULT votes it
    # keeps, its own among them; a backup of a relaying network hands its own to the primary.
    primary_relays: Callable[[], bool]
    queue_for_relay: Callable[[ResultVote], None]
