"""Verdicts on builds: the RESULT votes of the members (`pbft.votes`), those that came before
their build was ordered here, the builds this member stands by for while the order's picked
builders build them (`pbft.builders`), the learnt builds it builds once their votes leave
them open, and the votes it serves its peers.

It owns that state and the rules that move it; what it takes from the replica is named in
`pbft.ci.ports`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterable, Mapping

from pbft.builders import Standby
from pbft.ci.ordered import OrderedBuild
from pbft.ci.ports import Ports
from pbft.ci.verdictlog import Leaf, VerdictLog, proof_problem
from pbft.effects import Broadcast, BuildLearnt, RecordVerdict, ServeVotes, Store
from pbft.messages import MAX_VOTE_FETCH, Request, ResultVote, VerdictProof, VoteFetch, signed
from pbft.seat import keep_per_sender
from pbft.votes import ResultVotes

logger = logging.getLogger(__name__)

Key = tuple[str, int]


class Verdicts:
    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        settings = ports.settings
        self.id = ports.node_id
        self.result_votes = ResultVotes(ports.members_at, settings.vote_retry_s)
        # Builds the order gave f+1 other members to build (`pbft.builders`): ours if they disagree or fall silent.
        self.standby = Standby(settings.standby_s)
        # RESULTs of builds not ordered yet: kept per sender, so that one faulty node's flood
        # cannot push out anybody else's.
        self.early_votes: dict[int, deque[ResultVote]] = {}
        self.votes_served_at: dict[int, float] = {}
        # Every certified verdict, in the order's order (`pbft.ci.verdictlog`).
        self.log = VerdictLog()

    def on_result_vote(self, message: ResultVote) -> str | None:
        """Count another node's RESULT towards the build's verdict. A vote that agrees
        with a certified verdict changes nothing: it is neither checked nor kept (nor, by
        a relaying primary, passed on); one against it is, to show the dissent."""
        if self.result_votes.confirms(message):
            return None
        reason = self._signature_problem(message)
        if reason is not None:
            return reason
        if message.key in self.result_votes:
            return None if self.count(message) else "ignore_result_not_first_vote"
        if self.ports.clients.expired(message.key):
            return "ignore_result_expired"
        # A faster node finished a build we have not ordered yet: keep it, bounded.
        keep_per_sender(self.early_votes, message.sender, message, self.ports.settings.per_sender_buffer)
        return None

    def _signature_problem(self, message: ResultVote) -> str | None:
        """Why a RESULT is not signed by a member: of the epoch that ordered its build, with the
        key it had there or has now (a node removed or re-keyed since still votes on the builds
        ordered before), or of this epoch for a build not ordered here yet."""
        seq = self.result_votes.seq.get(message.key)
        reason = self.ports.signature_problem(message)
        if reason is None or seq is None:
            return reason
        then = self.ports.members_at(seq).signature_problem(message, self.ports.auth)
        return None if then is None else reason

    def count(self, vote: ResultVote) -> bool:
        ports = self.ports
        if vote.sender not in ports.members_at(self.result_votes.seq[vote.key]):
            return False  # a node that joined after the build was ordered: not one of its voters
        kept, decided, evidence, proof = self.result_votes.add(vote)
        if proof:
            self.log.certified(vote.key, VerdictProof(proof), ports.now())
        if kept:
            ports.emit(Store(vote))
            if ports.primary_relays():
                ports.queue_for_relay(vote)
        if evidence is not None:
            # Every member learns it, and leaves the sender out of the picked builders' agreement (docs/faults.md).
            logger.warning("node=%d view=%d seq=%d build=%s evidence: node %d signed two results", self.id,
                           ports.view(), vote.seq, vote.key, vote.sender)
            for signed_vote in evidence:
                ports.emit(Broadcast(signed_vote))
        if self.standby.open(vote.key):
            if decided is not None:
                self.standby.decided(vote.key)
            elif kept:
                self.standby.vote(vote.key, vote.sender, ports.now())
                self._check_standby(vote.key)
            elif evidence is not None and vote.sender in self.standby.waiting[vote.key].chosen:
                self.build_standing_by(vote.key, f"chosen builder {vote.sender} signed two results")
        if decided is not None:
            state, result = decided
            seq = self.result_votes.seq[vote.key]
            logger.info("node=%d view=%d seq=%d build=%s verdict=%s", self.id, ports.view(), seq, vote.key, state)
            ports.emit(RecordVerdict(seq, vote.client, vote.timestamp, state, result))
        return kept or evidence is not None

    def release_early_votes(self, batch: tuple[Request, ...]) -> None:
        keys = {request.key for request in batch if request.key in self.result_votes}
        for sender, votes in self.early_votes.items():
            if any(vote.key in keys for vote in votes):
                for vote in votes:
                    if vote.key in keys:
                        self.count(vote)
                self.early_votes[sender] = deque((v for v in votes if v.key not in keys), maxlen=votes.maxlen)

    def tick(self) -> None:
        """The clock moved: build what a chosen builder is late with, the learnt builds the
        votes left open, and ask for the votes still missing."""
        for key in self.standby.overdue(self.ports.now()):
            self.build_standing_by(key, f"a chosen builder's result is {self.standby.standby_s:g} s late")
        self._build_learnt_still_open()  # before the ask that would move the answer deadline on
        self._ask_for_votes()

    def _ask_for_votes(self) -> None:
        keys = self.result_votes.due(self.ports.now(), MAX_VOTE_FETCH)
        if keys:
            # Every peer: any one of them may be the only one that heard the vote we lack.
            logger.info("node=%d view=%d phase=vote-fetch builds=%d", self.id, self.ports.view(), len(keys))
            self.ports.emit(Broadcast(signed(VoteFetch(tuple(keys), self.id), self.ports.auth.sign)))

    def ask_again(self, now: float) -> None:
        """Ask for the votes of every build whose verdict is not known yet."""
        for key in list(self.result_votes.votes):
            self.result_votes.expect(key, now)

    def _build_learnt_still_open(self) -> None:
        """Build, oldest first, the learnt requests whose verdict the peers' votes did not
        decide (2f+1 matching) once two of our asks were answered and the answers had their
        time (or four went out): the nodes that built them may be too few without us. Asking
        first spares a node that caught up on hours of history from building what was
        certified long ago."""
        transfer = self.ports.transfer
        while (key := transfer.oldest_open()) is not None:
            still_open = self.result_votes.open_after_asking(key, times=2, now=self.ports.now())
            if still_open is None:
                return  # its answers may still come: the oldest is built first, once they had their time
            transfer.stop_waiting(key)
            if still_open:
                self.build_learnt(key)

    def build_learnt(self, key: tuple[str, int]) -> None:
        seq, request = self.ports.transfer.take(key)
        logger.info("node=%d view=%d seq=%d build=%s-%d learnt by state transfer: building it",
                    self.id, self.ports.view(), seq, key[0], key[1])
        self.ports.emit(BuildLearnt(self.ordered(seq, request)))

    def on_vote_fetch(self, message: VoteFetch) -> str | None:
        """Send a peer every signed vote we hold for the builds it asks about (each is
        checkable on its own), at most once per quarter retry period per peer (an
        honest one asks at most every half period)."""
        # A node the order removed still owes replies for the builds ordered while it was a
        # member: it asks for their votes as a member of the epoch they were ordered in.
        reason = self.ports.past_member_signature_problem(message)
        if reason is not None or message.sender == self.id:
            return reason or "ignore_vote-fetch_from_self"
        now = self.ports.now()
        if now < self.votes_served_at.get(message.sender, float("-inf")) + self.ports.settings.vote_retry_s / 4:
            return "ignore_vote-fetch_too_soon"
        self.votes_served_at[message.sender] = now
        keys = tuple(key for key in message.keys if key in self.result_votes)
        if keys:
            self.ports.emit(ServeVotes(message.sender, keys))
        return None

    def holds(self, vote: ResultVote) -> bool:
        return vote.key in self.result_votes and self.result_votes.has_vote(vote.key, vote.sender)

    def ordered(self, seq: int, request: Request) -> OrderedBuild:
        """A build learnt, stood by for or run again after a restart, as one just executed is
        given to the driver: with the document in force at `seq` and its picked builders."""
        return OrderedBuild.at(seq, request, self.ports.network.document_at(seq),
                               self.result_votes.chosen.get(request.key, ()))

    def build_standing_by(self, key: tuple[str, int], why: str) -> None:
        waiting = self.standby.take(key)
        logger.info("node=%d view=%d seq=%d build=%s-%d stood by, building it: %s",
                    self.id, self.ports.view(), waiting.seq, key[0], key[1], why)
        self.ports.emit(BuildLearnt(self.ordered(waiting.seq, waiting.request)))

    def _check_standby(self, key: tuple[str, int]) -> None:
        """Build now what we stand by for if its chosen builders' results differ, or one
        carries artifacts (agreed by 2f+1)."""
        waiting = self.standby.waiting[key]
        said = [vote.result for sender, vote in self.result_votes.votes.get(key, {}).items() if sender in waiting.chosen]
        if len({result.agreed_key() for result in said}) > 1:
            self.build_standing_by(key, "the chosen builders' results differ")
        elif any(result.artifacts is not None for result in said):
            self.build_standing_by(key, "its artifacts are agreed by 2f+1")

    def forget(self, forgotten: list[Key]) -> None:
        """The client table forgot these requests at a checkpoint: so do the verdicts, and a
        build forgotten before its verdict reached us stays open in no table: the ledger says
        so ("expired") rather than "pending" for ever."""
        self.log.forget(forgotten)
        for key in forgotten:
            self.standby.drop(key)
        for (client, timestamp), seq in self.result_votes.forget(forgotten):
            logger.warning("node=%d view=%d seq=%d build=%s-%d verdict=expired", self.id, self.ports.view(), seq,
                           client, timestamp)
            self.ports.emit(RecordVerdict(seq, client, timestamp, "expired", None))

    def log_verdicts(self, seq: int, proofs: Iterable[VerdictProof]) -> tuple[Leaf, ...]:
        """Append to the verdict log, where the batch at `seq` executes, the verdicts its proofs
        certify, each checked by rules of the order alone (`pbft.ci.verdictlog`): of a build
        ordered before `seq` and still in the client table, not logged yet."""
        leaves = []
        for proof in proofs:
            first = proof.votes[0]
            if first.key in self.log.logged or self.result_votes.seq.get(first.key) != first.seq or first.seq >= seq:
                continue
            problem, data = proof_problem(proof, self.ports.members_at, self.ports.auth,
                                          self.result_votes.chosen.get(first.key, ()))
            if problem is not None:
                logger.warning("node=%d seq=%d build=%s-%d verdict proof refused: %s", self.id, seq, first.client,
                               first.timestamp, problem)
                continue
            leaves.append(self.log.append(first.key, first.seq, data))
        return tuple(leaves)

    def restore(self, executed: Mapping[Key, tuple[int, bool]], chosen: Mapping[Key, tuple[int, ...]] | None,
                votes: Iterable[ResultVote], leaves: Iterable[tuple[Key, bytes]] = ()) -> None:
        """After a restart: the builds the ledger executed (key -> (seq, replied)), less what
        expired, with the builders the order picked for them, the verdict log's leaves, and the
        votes on those builds, counted by the same rule as live."""
        clients = self.ports.clients
        for key, (seq, replied) in executed.items():
            if not clients.expired(key):
                clients.remember(key, True if replied else None)
                self.result_votes.ordered(key, seq, (chosen or {}).get(key, ()))
        self.log.restore(leaves, lambda key: key in self.result_votes)
        for vote in votes:
            if vote.key in self.result_votes:
                proof = self.result_votes.add(vote).proof
                if proof:
                    self.log.certified(vote.key, VerdictProof(proof), self.ports.now())
