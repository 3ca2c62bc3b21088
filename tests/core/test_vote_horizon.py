"""The vote horizon (`pbft.horizon`): PRE-PREPAREs and PREPAREs leave written but not fsynced,
under a horizon fsynced before them, and a node whose machine rebooted keeps silent inside it.

A prepared certificate rests on each honest node sending one PREPARE per slot (OSDI'99 §4.2);
a power cut that took a PREPARE must not let the node send another there.
"""

from pbft.effects import KeepVoteHorizon, must_sync, must_write
from pbft.horizon import Horizon
from pbft.messages import PrePrepare, Prepare
from tests.support.cluster import Cluster

SMALL = {"checkpoint_interval": 2, "log_window": 4, "pipeline_depth": 2, "batch_max": 1}
T_VIEW_CHANGE = 4.0  # ReplicaSettings.view_change_timeout_s


class Recording(Cluster):
    """A cluster that keeps each node's turns as they are saved."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.turns: list[list[list]] = [[] for _ in range(self.n)]

    def saw(self, node, effects) -> None:
        self.turns[node].append(list(effects))


def submit(cluster, count, to=None):
    for _ in range(count):
        request = cluster.request()
        for node in to if to is not None else [cluster.replicas[1].primary()]:
            cluster.deliver_to(node, request)
        cluster.run()


def own_votes(cluster, node, kind):
    return sorted((m.view, m.seq) for m in cluster.stored[node] if isinstance(m, kind) and m.sender == node)


def test_a_vote_past_the_horizon_moves_it_to_the_high_watermark_in_a_synced_step():
    cluster = Recording(settings=SMALL)
    submit(cluster, 6)
    assert cluster.executed_seqs(1) == [1, 2, 3, 4, 5, 6]
    for node, kind in ((0, PrePrepare), (1, Prepare)):
        voting = [turn for turn in cluster.turns[node] if any(getattr(e, "message", None).__class__ is kind
                                                               and e.message.sender == node for e in turn)]
        moves = [e for turn in voting for e in turn if isinstance(e, KeepVoteHorizon)]
        # Six votes, two fsynced horizons: seq 1 moved it to H = 4, seq 5 (after the checkpoint
        # at 4 moved the window) to H = 8.
        assert len(voting) == 6 and moves == [KeepVoteHorizon(0, 0, 4), KeepVoteHorizon(0, 0, 8)], (node, moves)
        assert [must_sync(turn, node) for turn in voting] == [True, False, False, False, True, False]
        assert all(must_write(turn, node) for turn in voting if not must_sync(turn, node))
    assert cluster.replicas[1].durable_state().vote_horizon == 8


def test_a_rebooted_backup_sends_no_prepare_inside_its_horizon_and_the_slot_still_commits():
    cluster = Cluster(settings=SMALL)
    submit(cluster, 1)
    assert cluster.replicas[2].horizon.durable == Horizon(0, 0, 4)
    cluster.crashed.add(2)
    cluster.restart(2, rebooted=True)
    assert cluster.replicas[2].horizon.silent == Horizon(0, 0, 4)
    submit(cluster, 1)
    # No PREPARE of node 2 at seq 2, where one the power cut took may be out there; the
    # others' PREPAREs prepared it, and its COMMIT counts.
    assert own_votes(cluster, 2, Prepare) == [(0, 1)]
    assert cluster.executed_seqs(2) == [1, 2] and cluster.executed_seqs(0) == [1, 2]
    # A restart with no reboot keeps the silence it saved.
    cluster.crashed.add(2)
    cluster.restart(2)
    assert cluster.replicas[2].horizon.silent == Horizon(0, 0, 4)
    submit(cluster, 3)
    assert own_votes(cluster, 2, Prepare) == [(0, 1), (0, 5)]
    assert cluster.executed_seqs(2) == [1, 2, 3, 4, 5]


def test_a_restart_without_a_reboot_keeps_voting():
    cluster = Cluster(settings=SMALL)
    submit(cluster, 1)
    cluster.crashed.add(2)
    cluster.restart(2)
    assert cluster.replicas[2].horizon.silent == Horizon()
    submit(cluster, 1)
    assert own_votes(cluster, 2, Prepare) == [(0, 1), (0, 2)]


def test_a_rebooted_primary_issues_nothing_inside_its_horizon_and_the_view_moves_past_it():
    cluster = Cluster(settings=SMALL)
    submit(cluster, 1)
    cluster.crashed.add(0)
    cluster.restart(0, rebooted=True)
    assert cluster.replicas[0].next_seq == 4
    submit(cluster, 1, to=range(4))  # the client's retransmission reaches every node
    assert own_votes(cluster, 0, PrePrepare) == [(0, 1)] and cluster.executed_seqs(1) == [1]
    cluster.tick(T_VIEW_CHANGE + 0.1)
    cluster.run()
    cluster.tick(T_VIEW_CHANGE + 0.2)
    cluster.run()
    assert [replica.view for replica in cluster.replicas] == [1] * 4
    assert all(cluster.executed_seqs(node) == [1, 2] for node in range(4))
    # In view 1 node 0 is a backup outside its silence: it prepared there.
    assert (1, 2) in own_votes(cluster, 0, Prepare)
