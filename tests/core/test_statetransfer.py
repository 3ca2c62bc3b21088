"""The StateSync part alone (pbft.statetransfer): the STATUS, FETCH and STATE a replica
says, asks and answers, and the checks before it adopts a peer's state, on the parts it is
given and with no replica around it."""

import random

from pbft.build import Operation
from pbft.checkpoints import Checkpoints
from pbft.effects import Broadcast, SendTo, Store
from pbft.epochs import Epochs
from pbft.membership import Membership
from pbft.message_log import MessageLog
from pbft.messages import (
    Checkpoint, Commit, CommittedCertificate, Fetch, PrePrepare, Request, StateTransfer, Status, ViewChange, batch_digest,
    signed,
)
from pbft.networks import NetworkState
from pbft.sim.auth import SimKeys
from pbft.slot import ReplicaSettings
from pbft.statetransfer import StateSync
from pbft.views import Views

SETTINGS = ReplicaSettings(node_id=0, n=4, f=1)
KEYS = SimKeys.generate(random.Random(0), 4, [])
AUTH = KEYS.for_node(0)  # verifies every node's signature
BATCH = (Request("client", 1, Operation("repo", "master")),)


def sign(node, message):
    return signed(message, KEYS.for_node(node).sign)


def state_sync() -> StateSync:
    members = Membership.of(((node, "") for node in range(4)), f=1, log_window=SETTINGS.log_window)
    checkpoints = Checkpoints(SETTINGS.checkpoint_interval, SETTINGS.log_window)
    checkpoints.quorum = members.quorum
    views = Views(SETTINGS.node_id, members, SETTINGS.view_change_timeout_s)
    return StateSync(SETTINGS, checkpoints, Epochs(members), views, MessageLog(), NetworkState(None, SETTINGS.network))


def certificate(seq):
    preprepare = sign(0, PrePrepare(0, seq, batch_digest(BATCH), 0, BATCH))  # the primary of view 0
    return CommittedCertificate(preprepare, tuple(sign(node, Commit(0, seq, preprepare.digest, node)) for node in (1, 2, 3)))


def test_a_node_asks_once_f_plus_1_peers_showed_it_behind_for_a_fetch_interval():
    sync = state_sync()
    for sender in (1, 2):
        sync.status_claims(sign(sender, Status(0, 5, sender, network=SETTINGS.network)), last_executed=0)
    assert sync.asks(AUTH, 0.0, 0) == []  # behind from now on
    assert sync.asks(AUTH, SETTINGS.fetch_interval_s / 2, 0) == []
    [ask] = sync.asks(AUTH, SETTINGS.fetch_interval_s, 0)
    assert isinstance(ask, Broadcast) and isinstance(ask.message, Fetch)
    assert (ask.message.from_seq, ask.message.sender) == (1, 0)
    assert sync.ask_next(2, AUTH, 3) == [SendTo(2, sync.fetch(AUTH, 3))]  # a chunk short of the vouched 5
    assert sync.ask_next(2, AUTH, 5) == []


def test_one_peer_alone_moves_no_ask():
    sync = state_sync()
    sync.status_claims(sign(1, Status(0, 1_000_000, 1, network=SETTINGS.network)), last_executed=0)
    assert sync.asks(AUTH, 100.0, 0) == []


def test_a_quiet_node_says_status_but_not_while_it_changes_views():
    sync = state_sync()
    assert sync.announcements(AUTH, SETTINGS.status_interval_s / 2, 0) == []
    [status] = sync.announcements(AUTH, SETTINGS.status_interval_s, 3)
    assert isinstance(status.message, Status) and status.message.last_executed == 3
    sync.views.move_to(1)
    assert sync.announcements(AUTH, SETTINGS.status_interval_s * 10, 3) == []


def test_a_fetch_problem_names_the_fetch():
    sync = state_sync()
    assert sync.fetch_problem(sign(1, Fetch(10, 0, 1)), 0.0, 5) == "ignore_fetch_nothing_newer"
    assert sync.fetch_problem(sign(1, Fetch(1, 0, 1)), 0.0, 5) is None


def test_a_state_without_a_2f_plus_1_proof_is_not_adopted():
    sync = state_sync()
    proof = tuple(sign(node, Checkpoint(4, "digest", node, network=SETTINGS.network)) for node in (1, 2))
    message = sign(1, StateTransfer(4, proof, (), (), None, 1))
    assert sync.vouched_entries(message, AUTH, 0, "genesis") == ("ignore_state_checkpoint_proof_too_small", [])
    assert sync.catch_up.proven_seq == 0


def test_committed_certificates_are_adopted_within_the_window_above_what_we_executed():
    sync = state_sync()
    problem, effects = sync.adopt_certificates([certificate(1), certificate(2), certificate(300)], AUTH, 1)
    assert problem is None
    assert sync.log.slot(2).committed and 1 not in sync.log.slots and 300 not in sync.log.slots
    assert effects == [Store(certificate(2).preprepare), *(Store(commit) for commit in certificate(2).commits)]


def test_a_view_change_begins_no_epoch_when_none_is_pending():
    sync = state_sync()
    assert sync.epoch_proof(sign(1, ViewChange(0, 4, (), (), 1, epoch=4)), AUTH) is None
