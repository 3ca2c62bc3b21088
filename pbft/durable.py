"""What a replica saves for crash recovery, besides the messages, votes and ledger it stores.

The store keeps a `DurableState` with every save (`pbft.storage.NodeStore`);
`pbft.replica.Replica.restore` rebuilds a replica from it and from the stored
messages, each part restoring its own state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pbft.messages import Checkpoint, decode, encode


@dataclass(frozen=True)
class DurableState:
    """What, besides the stored messages, votes and the ledger, a restart needs."""

    view: int
    changing_view: bool
    view_changes_in_a_row: int
    low_watermark: int
    last_executed: int
    next_seq: int
    view_stable_seq: int
    state_digest: str
    stable_proof: tuple[Checkpoint, ...]
    client_floor: dict[str, int]
    client_latest: dict[str, int]
    # The vote horizon (`pbft.horizon.Horizon`, field by field): votes in that epoch's view up
    # to that sequence number may have been sent unsynced; and the one a reboot left this node
    # silent inside. Stores from before it had neither: every vote there was synced.
    vote_horizon_epoch: int = 0
    vote_horizon_view: int = -1
    vote_horizon: int = 0
    silent_horizon_epoch: int = 0
    silent_horizon_view: int = -1
    silent_horizon: int = 0

    @classmethod
    def of(cls, replica) -> DurableState:
        """What `replica` (a `pbft.replica.Replica`) must save now, read from each of its parts."""
        return cls(
            view=replica.view,
            changing_view=replica.changing_view,
            view_changes_in_a_row=replica.views.in_a_row,
            low_watermark=replica.low_watermark,
            last_executed=replica.last_executed,
            next_seq=replica.next_seq,
            view_stable_seq=replica.views.stable_seq,
            state_digest=replica.state_digest,
            stable_proof=replica.stable_proof,
            client_floor=dict(replica.clients.floor),
            client_latest=dict(replica.clients.latest),
            vote_horizon_epoch=replica.horizon.durable.epoch,
            vote_horizon_view=replica.horizon.durable.view,
            vote_horizon=replica.horizon.durable.through,
            silent_horizon_epoch=replica.horizon.silent.epoch,
            silent_horizon_view=replica.horizon.silent.view,
            silent_horizon=replica.horizon.silent.through,
        )

    def to_json(self) -> dict:
        return {
            **{field.name: getattr(self, field.name) for field in fields(self)},
            "stable_proof": [encode(checkpoint) for checkpoint in self.stable_proof],
        }

    @classmethod
    def from_json(cls, data: dict) -> DurableState:
        # Stores written before view_stable_seq existed lack it: those views started from 0.
        return cls(**{
            **data,
            "view_stable_seq": data.get("view_stable_seq", 0),
            "stable_proof": tuple(decode(wire) for wire in data["stable_proof"]),
        })

