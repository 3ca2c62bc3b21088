"""What a replica saves for crash recovery, and how it is rebuilt from that after a restart."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Self

from pbft.authenticator import Authenticator
from pbft.messages import (
    Checkpoint,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ResultVote,
    decode,
    encode,
)
from pbft.quorum import commit_quorum, matching, prepare_quorum
from pbft.slot import ReplicaSettings, Slot, vote_digests


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


class Persistence:
    """Part of `pbft.replica.Replica`; the state it uses is set up there."""

    def durable_state(self) -> DurableState:
        return DurableState(
            view=self.view,
            changing_view=self.changing_view,
            view_changes_in_a_row=self.view_changes_in_a_row,
            low_watermark=self.low_watermark,
            last_executed=self.last_executed,
            next_seq=self.next_seq,
            view_stable_seq=self.view_stable_seq,
            state_digest=self.state_digest,
            stable_proof=self.stable_proof,
            client_floor=dict(self.clients.floor),
            client_latest=dict(self.clients.latest),
        )

    @classmethod
    def restore(
        cls,
        settings: ReplicaSettings,
        auth: Authenticator,
        state: DurableState,
        messages: list[Message],
        executed: dict[tuple[str, int], tuple[int, bool]],
        now: float = 0.0,
        learnt: list[tuple[int, Request]] = (),
    ) -> Self:
        """Rebuild a replica from what its driver persisted before a crash.

        `messages` are the protocol messages it stored (its own and those it
        accepted); they were verified before they were stored. Nothing is sent
        while restoring: the replica resumes in its view (or view change) and
        asks its peers for anything it missed.
        """
        replica = cls(settings, auth)
        replica.now = replica.catch_up.last_progress_at = now
        replica.view, replica.changing_view = state.view, state.changing_view
        replica.view_changes_in_a_row = state.view_changes_in_a_row
        replica.last_executed, replica.next_seq = state.last_executed, state.next_seq
        replica.view_stable_seq, replica.state_digest = state.view_stable_seq, state.state_digest
        replica.checkpoints.stable_seq, replica.checkpoints.stable_proof = state.low_watermark, state.stable_proof
        replica.clients.floor, replica.clients.latest = dict(state.client_floor), dict(state.client_latest)
        # Exactly-once: what the ledger executed (key -> (seq, replied)), built here or learnt,
        # less what expired; and the votes on those builds, counted by the same rule as live.
        for key, (seq, replied) in executed.items():
            if not replica.clients.expired(key):
                replica.clients.remember(key, True if replied else None)
                replica.result_votes.ordered(key, seq)
        by_view: dict[tuple[int, int], Slot] = {}
        for message in messages:
            if isinstance(message, NewView):
                if replica.last_new_view is None or replica.last_new_view.view < message.view:
                    replica.last_new_view = message
            elif isinstance(message, ResultVote):
                if message.key in replica.result_votes:
                    replica.result_votes.add(message)
            else:
                replica._restore_message(message, by_view)
        for (view, seq), slot in sorted(by_view.items()):
            replica._restore_progress(seq, slot)
            # Only the current view's slots take part in agreement; older ones
            # live on as prepared certificates for the next view change.
            if view == replica.view and not replica.changing_view:
                replica.log.slots[seq] = slot
        if replica.changing_view:
            # Peers forgot nothing, but the view changes we had collected are
            # gone: say ours again and wait for 2f+1 before timing anything.
            replica._send_view_change()
        # Peers may have moved on while we were down: ask them once at start, and
        # ask for the votes of every build whose verdict we do not know yet.
        # Requests learnt by state transfer and not built yet: built if their verdict is still
        # open after two asks, or when their client sends them again, as before the stop.
        for seq, request in learnt:
            if replica.clients.executed.get(request.key, False) is None:
                replica.learnt_unbuilt[request.key] = replica.learnt_open[request.key] = (seq, request)
        replica.catch_up.ask_at_once = True
        for key in list(replica.result_votes.votes):
            replica.result_votes.expect(key, now)
        replica._execute_ready()
        replica._check_invariants()
        return replica

    def builds_to_rerun(self, unfinished: list[tuple[int, Request]]) -> list[tuple[int, Request]]:
        """Of the builds a killed process left unfinished, those this replica still owes a reply."""
        return [(seq, request) for seq, request in unfinished if self.clients.executed.get(request.key, False) is None]


    def _restore_message(self, message: Message, by_view: dict[tuple[int, int], Slot]) -> None:
        if isinstance(message, Checkpoint):
            if message.seq >= self.low_watermark:
                self.checkpoints.votes.setdefault(message.seq, {})[message.sender] = message
                if message.sender == self.id:
                    self.checkpoints.computed(message.seq, message.state_digest)
            return
        if not self.in_window(message.seq):
            return
        slot = by_view.setdefault((message.view, message.seq), Slot())
        if isinstance(message, PrePrepare):
            slot.preprepare = message
        elif isinstance(message, Prepare):
            slot.prepares.setdefault(message.sender, message)
        else:
            slot.commits.setdefault(message.sender, message)

    def _restore_progress(self, seq: int, slot: Slot) -> None:
        """Recompute prepared and committed-local from the restored votes, sending nothing."""
        if slot.preprepare is None:
            return
        wanted = slot.preprepare.digest
        if matching(vote_digests(slot.prepares), wanted) >= prepare_quorum(self.f) or self.id in slot.commits:
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == wanted)
            if len(proof) >= prepare_quorum(self.f):
                self.log.prepared_certs[seq] = PreparedCertificate(slot.preprepare, proof)
        slot.committed = slot.prepared and matching(vote_digests(slot.commits), wanted) >= commit_quorum(self.f)

