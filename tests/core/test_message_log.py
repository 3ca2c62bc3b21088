"""The message log alone (pbft.message_log): what it keeps across a view change, a stable
checkpoint, a change of the membership and a restart."""

import random

from pbft.build import Operation
from pbft.message_log import MessageLog
from pbft.messages import Commit, CommittedCertificate, PrePrepare, Prepare, Request, batch_digest, signed
from pbft.sim.auth import SimKeys

KEYS = SimKeys.generate(random.Random(0), 4, [])
BATCH = (Request("client", 1, Operation("repo", "master")),)


def sign(node, message):
    return signed(message, KEYS.for_node(node).sign)


def committed_in_view_0(log: MessageLog, seq: int) -> list:
    """Slot `seq` of view 0 committed-local, as the replica leaves it; the messages it stored."""
    preprepare = sign(0, PrePrepare(0, seq, batch_digest(BATCH), 0, BATCH))
    prepares = [sign(node, Prepare(0, seq, preprepare.digest, node)) for node in (1, 2)]
    commits = [sign(node, Commit(0, seq, preprepare.digest, node)) for node in (0, 1, 2)]
    slot = log.slot(seq)
    slot.preprepare = preprepare
    slot.prepares = {vote.sender: vote for vote in prepares}
    slot.commits = {vote.sender: vote for vote in commits}
    slot.prepared = slot.committed = True
    return [preprepare, *prepares, *commits]


def test_a_certificate_committed_in_an_earlier_view_outlives_the_view_change():
    log = MessageLog()
    committed_in_view_0(log, 5)
    before = log.committed_certificate(5)
    assert isinstance(before, CommittedCertificate) and len(before.commits) == 3
    log.new_view()
    assert log.slots == {}
    assert log.committed_certificate(5) == before  # a peer that lagged through it can still be shown
    assert log.committed_certificate(6) is None


def test_a_slot_committed_in_this_view_is_its_certificate():
    log = MessageLog()
    committed_in_view_0(log, 5)
    log.new_view()
    view_1 = sign(1, PrePrepare(1, 5, batch_digest(BATCH), 1, BATCH))
    slot = log.slot(5)
    slot.preprepare = view_1
    slot.commits = {node: sign(node, Commit(1, 5, view_1.digest, node)) for node in (1, 2, 3)}
    slot.prepared = slot.committed = True
    assert log.committed_certificate(5).preprepare == view_1


def test_kept_certificates_go_with_the_checkpoint_and_with_what_a_membership_change_voids():
    log = MessageLog()
    for seq in (3, 5, 7):
        committed_in_view_0(log, seq)
    log.new_view()
    log.collect_garbage(4)
    assert sorted(log.committed_before) == [5, 7]
    log.drop_above(5)
    assert sorted(log.committed_before) == [5]


def test_a_restart_rebuilds_an_earlier_views_certificate_from_the_store():
    stored = committed_in_view_0(MessageLog(), 5)
    restored = MessageLog()
    restored.restore(stored, lambda seq: 0 < seq <= 8, me=3, n=4, f=1, working_view=1)
    assert restored.slots == {}  # view 1 is the one that takes part in agreement
    certificate = restored.committed_certificate(5)
    assert certificate is not None and certificate.preprepare == stored[0]
    assert {vote.sender for vote in certificate.commits} == {0, 1, 2}
    # One commit short of the quorum is no certificate.
    short = MessageLog()
    short.restore(stored[:-1], lambda seq: 0 < seq <= 8, me=3, n=4, f=1, working_view=1)
    assert short.committed_certificate(5) is None
