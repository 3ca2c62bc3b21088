"""What this node answers for the builds the order executes: which of a batch's builds it runs,
learns or stands by for, the answers the order alone gives (a cancel's, a duplicate delivery's,
a build its cancel overtook), the replies and RESULT votes it signs once a build ends, the
cancels it carries out (`pbft.cancels`) and the deliveries it builds once (`pbft.deliveries`).

It owns the cancels and deliveries the order took; the verdicts it feeds are
`pbft.ci.verdicts`'. A network change is the replica's to apply: it is given here as a
callable that applies one and returns its answer, so that the order of a batch's answers, and
of what they send, is the ledger's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from pbft.attestation import Signed
from pbft.build import Result
from pbft.builders import picked
from pbft.cancels import Cancels, cancel_result, cancelled_result, target_of
from pbft.ci.ordered import OrderedBuild
from pbft.ci.ports import Ports
from pbft.ci.variations import variations_of, vary_of
from pbft.ci.verdictlog import Leaf
from pbft.ci.verdicts import Verdicts
from pbft.deliveries import Deliveries, duplicate_result
from pbft.effects import RecordVerdict, SendReply, StopBuild
from pbft.messages import Reply, Request, ResultVote, VerdictProof, signed
from pbft.provenance import Provenance
from pbft.storage import Loaded

logger = logging.getLogger(__name__)
NO_FILES: Mapping[str, str] = MappingProxyType({})

Key = tuple[str, int]


def approval_answer(request: Request) -> Result:
    """What the order answers an approval of a deploy (`pbft.build.Approval`), on every node
    alike: like a cancel, a client speaks only of its own builds, and of ones it asked for before."""
    approves = request.operation.approves
    assert approves is not None, "not an approval"
    if approves.build >= request.timestamp:
        return Result("error", None, None, "an approval must name an earlier build of its own client")
    return Result("success", 0, None, f"approval of action {approves.action} of build {approves.build}"
                                      f" for environment {approves.environment} ordered")


@dataclass(frozen=True)
class Executed:
    """What the order decided, here, about the builds of one batch as it executes."""
    built: tuple[Request, ...]  # run by this node now
    learnt: tuple[Request, ...]  # left to others: learnt by state transfer, or stood by for
    answered: tuple[Request, ...]  # answered by the order alone, never built
    builders: tuple[tuple[Key, tuple[int, ...]], ...]  # the builders picked, for the builds that have them
    answers: Mapping[Key, Result | None]  # the order's answer to each request new in the batch
    targets: tuple[Key, ...]  # the builds the batch's cancels cancel
    leaves: tuple[Leaf, ...] = ()  # the verdicts the batch's proofs appended to the verdict log


class Answers:
    def __init__(self, ports: Ports, verdicts: Verdicts) -> None:
        self.ports = ports
        self.id = ports.node_id
        self.verdicts = verdicts
        # Builds the order cancelled: applied where each cancel executes (`pbft.cancels`).
        self.cancels = Cancels()
        # The deliveries the order took, each built once (`pbft.deliveries`).
        self.deliveries = Deliveries()

    def finished(self, request: Request, result: Result, seq: int, artifact_files: Mapping[str, str]) -> None:
        """A build started at `seq` has an outcome (`Replica.execution_finished`): reply to its
        client, and tell the other nodes. A build whose cancel executed here before its result
        came ends `cancelled`, whatever it reports (`pbft.cancels`)."""
        executed = self.ports.clients.executed
        if executed.get(request.key) is not None:
            return
        if request.key in self.cancels:  # a cancel is remembered as long as its own request
            result, artifact_files = cancelled_result(), NO_FILES
        if request.key not in executed:
            assert self.ports.clients.expired(request.key), "result for a request that was never executed"
            if self.id in self.ports.members_at(seq):
                # Its client's floor rose past it while it built or waited for a slot (its client
                # had max_requests_per_client newer ones executed at a checkpoint), and its client
                # may still wait: reply all the same, once, as a build's end comes once and a
                # restart runs no forgotten build again (`to_rerun`). No RESULT vote: the
                # verdicts forgot it too.
                self.ports.emit(SendReply(self._reply(seq, request, result, artifact_files)[0]))
            return
        self.answer(seq, request, result, artifact_files)

    def _reply(self, seq: int, request: Request, result: Result,
               artifact_files: Mapping[str, str]) -> tuple[Reply, str, str, str]:
        """This node's signed reply to `request`, executed at `seq`, with the signatures it
        carries (statement, link, provenance) for the RESULT vote to carry too."""
        statement_sig, link_sig = self._sign_attestation(request, result)
        provenance_sig = self._sign_provenance(seq, request, result, artifact_files)
        reply = signed(
            Reply(self.ports.view(), request.timestamp, request.client, self.id, result, statement_sig=statement_sig,
                  link_sig=link_sig, provenance_sig=provenance_sig, network=self.ports.network.digest,
                  builders=self.verdicts.result_votes.chosen.get(request.key, ())),
            self.ports.auth.sign,
        )
        return reply, statement_sig, link_sig, provenance_sig

    def answer(self, seq: int, request: Request, result: Result, artifact_files: Mapping[str, str] = NO_FILES) -> None:
        """Sign and send this node's reply and RESULT vote for the executed request at `seq`."""
        ports = self.ports
        executed = ports.clients.executed
        assert executed.get(request.key, False) is None, "a reply for a request not owed one"
        if self.id not in ports.members_at(seq):
            # Not a member where it was ordered (removed before, or joined after): no word of ours counts.
            executed[request.key] = True
            return
        reply, statement_sig, link_sig, provenance_sig = self._reply(seq, request, result, artifact_files)
        executed[request.key] = True  # the reply itself is kept by the store (SendReply)
        ports.emit(SendReply(reply))
        vote = signed(
            ResultVote(seq, request.client, request.timestamp, result, self.id, statement_sig=statement_sig,
                       link_sig=link_sig, provenance_sig=provenance_sig),
            ports.auth.sign,
        )
        self.verdicts.count(vote)
        if not ports.primary_relays():  # a relaying primary queues it with the votes it kept
            ports.queue_for_relay(vote)
        self.verdicts.result_votes.expect(request.key, ports.now())

    def _sign_attestation(self, request: Request, result: Result) -> tuple[str, str]:
        """This node's DSSE signature of the build's in-toto statement and its signature of
        its in-toto link (`pbft.attestation`); none for a result that names no commit.
        They travel in the reply and the vote, so the client's f+1 replies and every
        ledger's votes hold an attestation that anyone with the public keys can check."""
        attestation = Signed(request.operation, result)
        if not attestation.exists:
            return "", ""
        return self.ports.auth.sign_bytes(attestation.pae()), self.ports.auth.sign_bytes(attestation.link_bytes())

    def _sign_provenance(self, seq: int, request: Request, result: Result, artifact_files: Mapping[str, str]) -> str:
        """This node's DSSE signature of the SLSA provenance of the build's artifacts
        (`pbft.provenance`); none for a build without artifacts, for files whose manifest
        is not the result's, or in a replica that was not told the network's builder id. A
        build the document in force at `seq` varies lists every member's variation there."""
        builder_id = self.ports.settings.builder_id
        if not builder_id or result.artifacts is None:
            return ""
        found = self.ports.network.document_at(seq)
        varied = found is not None and vary_of(found[1], request.operation.repository)
        provenance = Provenance(
            request, result, artifact_files, builder_id=builder_id,
            variations=variations_of(self.ports.members_at(seq).ids, f"{request.client}-{request.timestamp}")
            if varied else None,
        )
        if not provenance.exists:
            logger.warning(
                "node=%d build=%s-%d no provenance signed: its %d artifact files are not the manifest %s",
                self.id, request.client, request.timestamp, len(artifact_files), result.artifacts[:19],
            )
            return ""
        return self.ports.auth.sign_bytes(provenance.pae())

    def standing_answer(self, request: Request) -> Result | None:
        """What the order answers a request that is no network change, as often as it is asked:
        a cancel's or an approval's result, or `cancelled` for a build its cancel overtook."""
        # A change is answered where it executes, in the same step: it is never a build left
        # unfinished or unbuilt.
        assert request.operation.change is None, "a network change is answered where it executes"
        if request.operation.cancels is not None:
            if target_of(request) is None:
                return Result("error", None, None, "a cancel must name an earlier build of its own client")
            return cancel_result(request.operation.cancels)
        if request.operation.approves is not None:
            return approval_answer(request)
        return cancelled_result() if request.key in self.cancels else None

    def execute(self, seq: int, batch: tuple[Request, ...], build: bool,
                apply_change: Callable[[int, Request], Result], proofs: tuple[VerdictProof, ...] = ()) -> Executed:
        """The CI's share of executing `batch` at `seq`, before its Execute effect: the requests
        new in it are executed in the client table, its cancels and deliveries taken, each one
        answered by the order where it can be (a network change by `apply_change`, which applies
        it), builders picked for the others, and what this member builds, stands by for or
        learns is said.

        Cancels in it take effect here, built or learnt alike (`pbft.cancels`): each one's
        target is cancelled before anything of the batch starts (`answer_executed`), so a
        target in the same batch, before or after its cancel, is never built. The verdicts the
        batch's `proofs` certify join the verdict log (`pbft.ci.verdictlog`)."""
        ports, result_votes, standby = self.ports, self.verdicts.result_votes, self.verdicts.standby
        # A node outside the membership that orders `seq` (removed, or not joined yet) follows
        # the order and builds nothing: none of its results would count.
        member = self.id in ports.members_at(seq)
        build = build and member
        fresh = tuple(request for request in batch if ports.clients.execute(request))
        targets = tuple(target for target in map(self.cancels.add, fresh) if target is not None)
        duplicates = [request for request in fresh if self.deliveries.add(request)]
        answers = {request.key: apply_change(seq, request) if request.operation.change is not None
                   else self.standing_answer(request) for request in fresh}
        answers.update((request.key, duplicate_result(request.operation.delivery)) for request in duplicates)
        answered = tuple(request for request in fresh if answers[request.key] is not None)
        owed = tuple(request for request in fresh if answers[request.key] is None)
        members = ports.members_at(seq)
        chosen = {r.key: picked(ports.network.document, r.operation.repository, seq, members.ids, members.f) for r in owed}
        for request in fresh:
            result_votes.ordered(request.key, seq, chosen.get(request.key, ()))
        # What the order gave other members to build, this member stands by for, built here or
        # learnt by state transfer alike (`pbft.builders`).
        standing_by = tuple(r for r in owed if chosen[r.key] and self.id not in chosen[r.key]) if member else ()
        for request in standing_by:
            standby.wait(seq, request, chosen[request.key])
            result_votes.expect(request.key, ports.now(), at_once=not build)
        if not build and member:
            for request in owed:
                if request not in standing_by:
                    result_votes.expect(request.key, ports.now(), at_once=True)
                    ports.transfer.learnt(seq, request)
        built = tuple(r for r in owed if r not in standing_by) if build else ()
        learnt = tuple(r for r in owed if r not in built)
        builders = tuple((key, picks) for key, picks in chosen.items() if picks)
        return Executed(built, learnt, answered, builders, answers, targets, self.verdicts.log_verdicts(seq, proofs))

    def answer_executed(self, seq: int, batch: tuple[Request, ...], executed: Executed) -> None:
        """After the batch's Execute: the votes may decide a verdict, or make this node build
        what it stood by for, and the store records either for a build it executed."""
        self.verdicts.release_early_votes(batch)
        for request in executed.answered:
            self.answer(seq, request, executed.answers[request.key])
            if request.key in self.cancels:
                self.settle_cancelled(request.key)  # overtaken by its cancel: never built anywhere
        for target in executed.targets:
            self.cancel(seq, target)

    def cancel(self, seq: int, target: Key) -> None:
        """The cancel executed at `seq` cancels `target`: stop its build if it runs here (its
        result is then `cancelled`), answer it `cancelled` at once if this node learnt it by
        state transfer or stood by for it and never built it (the client may need this node's
        reply: a node that builds nothing still answers what the order decides), and make its
        verdict `cancelled`."""
        ports, standby = self.ports, self.verdicts.standby
        if target not in self.verdicts.result_votes:
            # Not executed yet (it is answered `cancelled` when it is), or forgotten: its client
            # had max_requests_per_client newer ones executed at a checkpoint, perhaps while it
            # waited here for a slot. Stopped, it ends `cancelled` (`finished`).
            if ports.clients.expired(target):
                ports.emit(StopBuild(seq, *target))
            return
        if ports.clients.executed.get(target, False) is None:
            if target in ports.transfer.learnt_unbuilt:
                target_seq, request = ports.transfer.take(target)
                self.answer(target_seq, request, cancelled_result())
            elif target in standby:
                waiting = standby.take(target)  # chosen builders build it, or built it: not us
                self.answer(waiting.seq, waiting.request, cancelled_result())
            else:
                ports.emit(StopBuild(seq, *target))
        self.settle_cancelled(target)

    def settle_cancelled(self, key: Key) -> None:
        result = cancelled_result()
        result_votes = self.verdicts.result_votes
        if result_votes.settle(key, "cancelled", result):
            self.verdicts.log.withdraw(key)
            target_seq = result_votes.seq[key]
            logger.info("node=%d view=%d seq=%d build=%s-%d verdict=cancelled", self.id, self.ports.view(),
                        target_seq, *key)
            self.ports.emit(RecordVerdict(target_seq, key[0], key[1], "cancelled", result.agreed()))

    def forget_expired(self) -> None:
        """Done at checkpoint boundaries, as a function of the ledger alone, so every
        honest replica forgets the same requests (and their votes) at the same point."""
        forgotten = self.ports.clients.forget_expired()
        self.ports.transfer.forget(forgotten)
        self.cancels.forget(forgotten)
        self.deliveries.forget(forgotten)
        self.verdicts.forget(forgotten)

    def restore(self, loaded: Loaded) -> None:
        """After a restart, the CI's share of `loaded` (`Replica.restore`): the executed builds
        and their votes (`Verdicts.restore`), then the executed cancels, replayed in ledger order
        so that they cancel again what they cancelled before the stop, and the deliveries."""
        clients = self.ports.clients
        self.verdicts.restore(loaded.executed, loaded.chosen, [m for m in loaded.messages if isinstance(m, ResultVote)],
                              loaded.log)
        for _, cancel in sorted(loaded.cancels, key=lambda entry: entry[0]):
            if cancel.key in clients.executed:
                target = self.cancels.add(cancel)
                if target is not None and target in self.verdicts.result_votes:
                    # Its votes alone would make it certified or disputed again; the ledger's
                    # row is written again too, the same (a store from before cancels were
                    # replicated lacks it).
                    self.settle_cancelled(target)
        for _, named in loaded.deliveries:
            if named.key in clients.executed:
                self.deliveries.add(named)

    def restore_learnt(self, learnt: list[tuple[int, Request]], now: float) -> None:
        """After a restart: requests learnt by state transfer and not built yet are built if
        their verdict is still open after two asks, or when their client sends them again, as
        before the stop; and the votes of every build whose verdict is not known are asked for."""
        ports, result_votes = self.ports, self.verdicts.result_votes
        for seq, request in learnt:
            if ports.clients.executed.get(request.key, False) is not None or request.operation.change is not None:
                continue  # answered, or a network change: applied where it executed, never built
            answer = self.standing_answer(request)
            if self.id not in ports.members_at(seq):
                continue  # ordered where this node was no member: it builds none of those
            builders = result_votes.chosen.get(request.key, ())
            if answer is None and builders and self.id not in builders:
                waiting = self.verdicts.standby.wait(seq, request, builders)
                if request.key in result_votes.decided:
                    waiting.decided = True
                elif any(result_votes.has_vote(request.key, node) for node in builders):
                    waiting.first_vote_at = now  # the wait for the others starts again
            elif answer is None:
                ports.transfer.learnt(seq, request)
            else:  # a store from before such requests were answered as they executed
                self.answer(seq, request, answer)
        self.verdicts.ask_again(now)

    def to_rerun(self, unfinished: list[tuple[int, Request]]) -> list[OrderedBuild]:
        """Of the builds (no network changes) a killed process left unfinished, those this node
        still owes a reply and must build again. One whose cancel executed before the stop is
        answered `cancelled` now, never run again (nor is a cancel a store from before
        replicated cancels kept)."""
        ports, rerun = self.ports, []
        for seq, request in unfinished:
            if ports.clients.executed.get(request.key, False) is not None:
                continue
            if self.id not in ports.members_at(seq):
                # Ordered where this node was no member: it owes no reply, and builds nothing (what
                # the order answered there, a duplicate of a delivery say, has no reply stored).
                ports.clients.executed[request.key] = True
                continue
            answer = self.standing_answer(request)
            if answer is None:
                rerun.append(self.verdicts.ordered(seq, request))
            else:
                self.answer(seq, request, answer)
        return rerun

    def check_invariants(self) -> None:
        self.cancels.check_invariants()
        self.deliveries.check_invariants()
