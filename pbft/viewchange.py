"""Checking view-change evidence and deriving a new view (OSDI'99 §4.4, §4.5).

Pure functions over signed messages. A VIEW-CHANGE is only as good as the
proofs inside it, so every checkpoint and every prepared certificate it
carries is verified here; the new primary and every backup then compute the
same set of re-issued pre-prepares from the same 2f+1 view changes.

Each batch travels once. A VIEW-CHANGE signs its prepared pre-prepares without
their batches (a pre-prepare's digest binds its batch, and its signature never
covered it) and carries the batches beside them, unsigned, each checked against
its digest. The new primary re-issues each batch from them; its NEW-VIEW holds
the 2f+1 VIEW-CHANGEs without their batches, which its re-issued pre-prepares
carry once. A NEW-VIEW that held every VIEW-CHANGE whole was 2f+1 times the
largest of them, and outgrew a peer's frame under load (`scripts/bench.py frames`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pbft.authenticator import Authenticator
from pbft.membership import Membership
from pbft.messages import (
    Checkpoint,
    Commit,
    CommittedCertificate,
    LedgerEntry,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCertificate,
    ViewChange,
    batch_digest,
)
from pbft.quorum import commit_quorum, prepare_quorum

NULL_DIGEST = batch_digest(())


class LatestViewChanges:
    """Each node's latest VIEW-CHANGE, ours included (§4.4): what a new view needs.

    One per sender, so a faulty node inventing views holds one entry here, and
    a node that asks for a later view withdraws its support for earlier ones.
    """

    def __init__(self) -> None:
        self.by_sender: dict[int, ViewChange] = {}

    def supersedes(self, message: ViewChange) -> str | None:
        """Why `message` adds nothing to what its sender said before, or None."""
        kept = self.by_sender.get(message.sender)
        if kept is None or kept.view < message.view:
            return None
        return "duplicate" if kept.view == message.view else "superseded"

    def keep(self, message: ViewChange) -> None:
        self.by_sender[message.sender] = message

    def for_view(self, view: int) -> dict[int, ViewChange]:
        return {sender: vc for sender, vc in self.by_sender.items() if vc.view == view}

    def views_of_others(self, me: int) -> list[int]:
        return [vc.view for sender, vc in self.by_sender.items() if sender != me]

    def entered(self, view: int) -> None:
        """A view started: what asked for it or an earlier one is done."""
        self.by_sender = {sender: vc for sender, vc in self.by_sender.items() if vc.view > view}


def checkpoint_proof_problem(
    proof: tuple[Checkpoint, ...], seq: int, members: Membership, auth: Authenticator
) -> str | None:
    """Why `proof` does not show 2f+1 nodes vouching for one state at `seq`, or None."""
    if seq == 0:
        return None if not proof else "checkpoint_proof_for_genesis"
    senders = {c.sender for c in proof}
    if len(senders) != len(proof) or len(senders) < commit_quorum(members.n, members.f):
        return "checkpoint_proof_too_small"
    if len({c.vouches() for c in proof}) != 1 or any(c.seq != seq for c in proof):
        return "checkpoint_proof_mismatch"
    if not all(members.signed_by_member(checkpoint, auth) for checkpoint in proof):
        return "checkpoint_proof_bad_signature"
    return None


def _preprepare_problem(preprepare: PrePrepare, members: Membership, auth: Authenticator, epoch: int,
                        batch_apart: bool = False) -> str | None:
    """`batch_apart`: a VIEW-CHANGE's pre-prepare, whose batch may travel beside it (`batches_problem`)."""
    if preprepare.epoch != epoch:
        return "certificate_of_another_epoch"
    if preprepare.sender != members.primary(preprepare.view):
        return "certificate_preprepare_not_from_primary"
    if not (batch_apart and _without_batch(preprepare)) and preprepare.digest != batch_digest(preprepare.batch,
                                                                                              preprepare.verdicts):
        return "certificate_wrong_digest"
    if not members.signed_by_member(preprepare, auth):
        return "certificate_bad_preprepare_signature"
    return None


def _votes_problem(
    votes: tuple[Prepare, ...] | tuple[Commit, ...],
    preprepare: PrePrepare,
    needed: int,
    members: Membership,
    auth: Authenticator,
) -> str | None:
    """Why `votes` are not `needed` distinct, valid votes for exactly this pre-prepare, or None."""
    kind = "prepare" if all(isinstance(vote, Prepare) for vote in votes) else "commit"
    senders = set()
    for vote in votes:
        if (vote.view, vote.seq, vote.digest, vote.epoch) != (preprepare.view, preprepare.seq, preprepare.digest,
                                                              preprepare.epoch):
            return f"certificate_{kind}_mismatch"
        # The primary's pre-prepare stands for its prepare (§4.2): it never counts twice.
        if kind == "prepare" and vote.sender == preprepare.sender:
            return f"certificate_{kind}_bad_sender"
        if not members.signed_by_member(vote, auth):
            return f"certificate_bad_{kind}_signature"
        senders.add(vote.sender)
    if len(senders) < needed:
        return f"certificate_too_few_{kind}s"
    return None


def certificate_problem(
    cert: PreparedCertificate, before_view: int, members: Membership, auth: Authenticator, epoch: int = 0
) -> str | None:
    """Why `cert` does not prove that its batch prepared in a view of `epoch` before `before_view`, or None."""
    if cert.preprepare.view >= before_view:
        return "certificate_from_future_view"
    return _preprepare_problem(cert.preprepare, members, auth, epoch, batch_apart=True) or _votes_problem(
        cert.prepares, cert.preprepare, prepare_quorum(members.n, members.f), members, auth
    )


def committed_certificate_problem(
    cert: CommittedCertificate, members: Membership, auth: Authenticator, epoch: int = 0
) -> str | None:
    """Why `cert` does not prove its batch committed in `epoch` (pre-prepare + 2f+1 matching commits), or None."""
    return _preprepare_problem(cert.preprepare, members, auth, epoch) or _votes_problem(
        cert.commits, cert.preprepare, commit_quorum(members.n, members.f), members, auth
    )


def view_change_problem(
    message: ViewChange, members: Membership, auth: Authenticator, epoch: int = 0, proof_members: Membership | None = None,
    *, with_batches: bool = True,
) -> str | None:
    """Why a VIEW-CHANGE is not acceptable evidence in `epoch`, or None; its own signature included.
    `proof_members` signed its checkpoint proof: the epoch before's at the epoch's own start.
    `with_batches`: it must carry the batch of every pre-prepare it proves prepared, as one sent
    to us does (inside a NEW-VIEW it comes without them)."""
    if message.epoch != epoch:
        return "of_another_epoch"
    if message.stable_seq < epoch:
        return "checkpoint_before_epoch"
    problem = members.signature_problem(message, auth)
    if problem is not None:
        return problem
    problem = checkpoint_proof_problem(message.checkpoint_proof, message.stable_seq, proof_members or members, auth)
    if problem is not None:
        return problem
    seqs = [cert.preprepare.seq for cert in message.prepared]
    if len(set(seqs)) != len(seqs):
        return "two_certificates_for_one_seq"
    if any(not message.stable_seq < seq <= message.stable_seq + members.log_window for seq in seqs):
        return "certificate_out_of_window"
    for cert in message.prepared:
        problem = certificate_problem(cert, message.view, members, auth, epoch)
        if problem is not None:
            return problem
    return batches_problem(message, with_batches)


def _without_batch(preprepare: PrePrepare) -> bool:
    """A pre-prepare whose batch travels apart: none here, and a digest that is not the null batch's."""
    return not preprepare.batch and not preprepare.verdicts and preprepare.digest != NULL_DIGEST


def batches_problem(message: ViewChange, required: bool) -> str | None:
    """Why the batches beside a VIEW-CHANGE's pre-prepares are not theirs, one each (and, if
    `required`, one for each pre-prepare without its own), or None."""
    apart = {cert.preprepare.seq: cert.preprepare.digest for cert in message.prepared if _without_batch(cert.preprepare)}
    seqs = [entry.seq for entry in message.batches]
    if len(set(seqs)) != len(seqs):
        return "two_batches_for_one_seq"
    for entry in message.batches:
        if apart.get(entry.seq) != batch_digest(entry.batch, entry.verdicts):
            return "batch_not_of_its_preprepare"
    if required and len(seqs) != len(apart):
        return "batch_missing"
    return None


def carrying_batches_once(view: int, stable_seq: int, proof: tuple[Checkpoint, ...],
                          prepared: tuple[PreparedCertificate, ...], sender: int, epoch: int) -> ViewChange:
    """A VIEW-CHANGE (unsigned) whose pre-prepares are signed without their batches, which travel beside them."""
    batches = tuple(LedgerEntry(cert.preprepare.seq, cert.preprepare.batch, cert.preprepare.verdicts)
                    for cert in prepared if cert.preprepare.batch or cert.preprepare.verdicts)
    headers = tuple(replace(cert, preprepare=replace(cert.preprepare, batch=(), verdicts=())) for cert in prepared)
    return ViewChange(view, stable_seq, proof, headers, sender, epoch=epoch, batches=batches)


def new_view_of(view: int, view_changes: tuple[ViewChange, ...], preprepares: tuple[PrePrepare, ...], sender: int,
                epoch: int) -> NewView:
    """A NEW-VIEW (unsigned) holding `view_changes` without their batches: `preprepares` carry them, once."""
    return NewView(view, tuple(replace(vc, batches=()) for vc in view_changes), preprepares, sender, epoch=epoch)


@dataclass(frozen=True)
class NewViewPlan:
    """What 2f+1 view changes determine: the checkpoint to start from and the batches to re-issue."""

    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]
    batches: dict[int, PrePrepare]  # seq -> the old pre-prepare to re-issue (a null one fills a gap)


def plan_new_view(view_changes: tuple[ViewChange, ...], view: int, members: Membership, epoch: int = 0) -> NewViewPlan:
    """min-s is the latest stable checkpoint any of them proves; for each sequence number
    up to max-s, re-issue the batch prepared in the highest view, or a null batch."""
    latest = max(view_changes, key=lambda vc: vc.stable_seq)
    min_s = latest.stable_seq
    chosen: dict[int, PrePrepare] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            pp = cert.preprepare
            if pp.seq > min_s and (pp.seq not in chosen or pp.view > chosen[pp.seq].view):
                chosen[pp.seq] = pp
    # Each with its batch where a VIEW-CHANGE carries it (the primary's always do: it took them
    # checked, `with_batches`); inside a NEW-VIEW they come without, and its pre-prepares carry them.
    batches: dict[tuple[int, str], LedgerEntry] = {}
    for vc in view_changes:  # each checked against its own pre-prepare's digest (`batches_problem`)
        digests = {cert.preprepare.seq: cert.preprepare.digest for cert in vc.prepared}
        for entry in vc.batches:
            batches.setdefault((entry.seq, digests[entry.seq]), entry)
    for seq, pp in chosen.items():
        entry = batches.get((seq, pp.digest))
        if entry is not None and _without_batch(pp):
            chosen[seq] = replace(pp, batch=entry.batch, verdicts=entry.verdicts)
    max_s = max(chosen, default=min_s)
    batches = {
        seq: chosen.get(seq) or PrePrepare(view, seq, NULL_DIGEST, members.primary(view), (), epoch=epoch)
        for seq in range(min_s + 1, max_s + 1)
    }
    return NewViewPlan(min_s, latest.checkpoint_proof, batches)
