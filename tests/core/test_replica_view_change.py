"""View changes of the pure replica (OSDI'99 §4.4, §4.5.2)."""

from dataclasses import replace

from pbft.messages import NewView, PrePrepare, Prepare, ViewChange, batch_digest, signed
from tests.support.cluster import Cluster

T = 4.0  # ReplicaSettings.view_change_timeout_s


def retransmit_to_all(cluster, request, nodes=range(4)):
    for node in nodes:
        if node not in cluster.crashed:
            cluster.deliver_to(node, request)


def test_a_crashed_primary_is_replaced_and_the_request_executes():
    cluster = Cluster()
    cluster.crashed.add(0)
    request = cluster.request("feature")
    retransmit_to_all(cluster, request)  # the client got no answer from the primary
    cluster.run()
    assert all(cluster.executed_seqs(node) == [] for node in (1, 2, 3))
    cluster.tick(T - 0.01)
    assert all(not cluster.replicas[node].changing_view for node in (1, 2, 3))
    cluster.tick(T)
    cluster.run()
    for node in (1, 2, 3):
        replica = cluster.replicas[node]
        assert (replica.view, replica.changing_view) == (1, False)
        assert cluster.builds(node) == [request]
        assert replica.views.timer_deadline is None  # nothing is waiting any more
    assert {reply.view for reply in cluster.replies} == {1}


def test_a_primary_that_orders_everything_but_one_request_loses_its_view():
    """§4.4: a backup's timer runs until it no longer waits for *that* request. A primary
    that leaves one request out while it orders a new one every second is suspected
    after one timeout, however much else executes meanwhile."""
    cluster = Cluster()

    def censor(node, message):
        return not (node == 0 and message.TYPE == "request" and message.operation.branch == "censored")

    censored = cluster.request("censored")
    retransmit_to_all(cluster, censored, nodes=(1, 2, 3))  # and the primary, which drops it
    cluster.run(censor)
    for second in range(1, 2 * int(T)):
        cluster.deliver_to(0, cluster.request("master"))
        cluster.run(censor)
        cluster.tick(float(second))
        cluster.run(censor)
        if second < T:
            assert all(cluster.replicas[node].view == 0 for node in range(4))
            assert len(cluster.executed_seqs(1)) == second  # the others' requests execute meanwhile
    for node in (1, 2, 3):
        assert cluster.replicas[node].view == 1 and not cluster.replicas[node].changing_view
        assert censored in cluster.builds(node)


def test_a_batch_committed_in_the_old_view_keeps_its_sequence_number():
    cluster = Cluster()
    first = cluster.request("master")
    cluster.deliver_to(0, first)

    # Node 3 misses every commit for seq 1: nodes 0-2 execute it, node 3 only prepares.
    def keep(node, message):
        return not (node == 3 and message.TYPE == "commit")

    cluster.run(keep)
    assert cluster.executed_seqs(3) == [] and cluster.executed_seqs(1) == [1]
    cluster.crashed.add(0)
    second = cluster.request("feature")
    retransmit_to_all(cluster, second)
    cluster.run()
    cluster.tick(T)
    cluster.run()
    for node in (1, 2, 3):
        assert cluster.replicas[node].view == 1
        assert cluster.builds(node) == [first, second]  # once each, in the same order
        assert cluster.executed_seqs(node)[:1] == [1]


def test_gaps_below_a_prepared_batch_are_filled_with_null_batches():
    cluster = Cluster()
    first, second = cluster.request("master"), cluster.request("feature")
    cluster.deliver_to(0, first)
    cluster.deliver_to(0, second)

    # Seq 1 never gets past the pre-prepare anywhere; seq 2 prepares everywhere.
    def keep(node, message):
        return not (message.seq == 1 and message.TYPE in ("prepare", "commit")) and message.TYPE != "commit"

    cluster.run(keep)
    assert all(cluster.replicas[node].slots[2].prepared for node in (1, 2, 3))
    assert not any(cluster.replicas[node].slots[1].prepared for node in (1, 2, 3))
    cluster.crashed.add(0)
    retransmit_to_all(cluster, first)
    cluster.run()
    cluster.tick(T)
    cluster.run()
    for node in (1, 2, 3):
        effects = cluster.executed[node]
        assert [(e.view, e.seq, len(e.requests)) for e in effects[:2]] == [(1, 1, 0), (1, 2, 1)]
        assert cluster.builds(node) == [second, first]  # seq 1 became null; first was ordered anew


def test_the_timer_doubles_when_the_next_primary_is_silent_too():
    cluster = Cluster(n=7, f=2)
    cluster.crashed.update({0, 1})  # the primaries of views 0 and 1
    retransmit_to_all(cluster, cluster.request(), nodes=range(7))
    cluster.run()
    cluster.tick(T)
    cluster.run()
    live = range(2, 7)
    assert all(cluster.replicas[n].view == 1 and cluster.replicas[n].changing_view for n in live)
    # Five view changes for view 1 (2f+1) are in: the wait for NEW-VIEW is 2T, not T.
    cluster.tick(T + 2 * T - 0.01)
    assert all(cluster.replicas[n].view == 1 for n in live)
    cluster.tick(T + 2 * T)
    cluster.run()
    assert all(cluster.replicas[n].view == 2 and not cluster.replicas[n].changing_view for n in live)


def test_a_node_alone_in_a_view_change_waits_and_repeats_itself_instead_of_racing_ahead():
    cluster = Cluster()
    lonely = cluster.replicas[3]
    lonely.receive(cluster.request(), now=0.0)
    lonely.take_effects()
    lonely.tick(T)
    sent = [effect.message for effect in lonely.take_effects()]
    assert [m.TYPE for m in sent] == ["view-change"] and lonely.views.timer_deadline is None
    lonely.tick(100 * T)  # nobody joins: it stays at view 1 and says so again every T
    again = [effect.message for effect in lonely.take_effects()]
    assert lonely.view == 1 and [(m.TYPE, m.view) for m in again] == [("view-change", 1)]


def test_f_plus_one_view_changes_make_a_node_join_before_its_timer():
    cluster = Cluster()
    cluster.crashed.add(0)
    request = cluster.request()
    # Only nodes 1 and 2 heard from the client; node 3 has no timer running.
    retransmit_to_all(cluster, request, nodes=(1, 2))
    cluster.run(lambda node, message: node != 3)
    assert cluster.replicas[3].views.timer_deadline is None
    cluster.tick(T, nodes=(1, 2))
    cluster.run()
    assert cluster.replicas[3].view == 1 and not cluster.replicas[3].changing_view
    assert cluster.builds(3) == [request]


def view_change_messages(cluster):
    """Crash the primary, let nodes 1-3 time out, and capture their VIEW-CHANGEs and the NEW-VIEW.

    Only node 1, the new primary, hears anything; nodes 2 and 3 stay in the view change.
    """
    cluster.deliver_to(0, cluster.request())
    cluster.run()
    cluster.crashed.add(0)
    retransmit_to_all(cluster, cluster.request("feature"))
    cluster.run()
    captured = []

    def keep(node, message):
        captured.append(message)
        return node == 1

    cluster.tick(T)
    cluster.run(keep)
    view_changes = {m.sender: m for m in captured if isinstance(m, ViewChange)}
    new_view = next(m for m in captured if isinstance(m, NewView))
    return view_changes, new_view


def test_a_new_view_whose_preprepares_do_not_follow_from_its_proofs_is_refused():
    cluster = Cluster()
    view_changes, new_view = view_change_messages(cluster)
    node1 = cluster.replicas[1]
    extra = signed(PrePrepare(1, 9, new_view.preprepares[0].digest, 1), node1.auth.sign)
    forged = signed(replace(new_view, preprepares=new_view.preprepares + (extra,)), node1.auth.sign)
    assert cluster.deliver_to(2, forged) == "ignore_new-view_wrong_preprepares"
    too_few = signed(replace(new_view, view_changes=new_view.view_changes[:2]), node1.auth.sign)
    assert cluster.deliver_to(2, too_few) == "ignore_new-view_too_few_view_changes"
    assert cluster.deliver_to(2, new_view) is None
    assert cluster.replicas[2].view == 1 and not cluster.replicas[2].changing_view


def test_a_batch_travels_once_beside_the_preprepare_a_view_change_signs_without_it():
    cluster = Cluster()
    view_changes, new_view = view_change_messages(cluster)
    honest = view_changes[3]
    cert = honest.prepared[0]
    # Signed without its batch, which travels beside it, bound by the pre-prepare's digest.
    assert cert.preprepare.batch == () and [entry.seq for entry in honest.batches] == [cert.preprepare.seq]
    assert batch_digest(honest.batches[0].batch, honest.batches[0].verdicts) == cert.preprepare.digest
    # The NEW-VIEW holds the view changes without their batches and issues each batch again, once.
    assert all(vc.batches == () for vc in new_view.view_changes)
    reissued = next(pp for pp in new_view.preprepares if pp.seq == cert.preprepare.seq)
    assert reissued.batch == honest.batches[0].batch and reissued.digest == cert.preprepare.digest
    # The batches travel outside the signature: a wrong one, two, or none where one is due are refused.
    node2 = cluster.replicas[2]
    wrong = replace(honest.batches[0], batch=())
    assert node2.receive(replace(honest, batches=(wrong,))) == "ignore_view-change_batch_not_of_its_preprepare"
    assert node2.receive(replace(honest, batches=honest.batches * 2)) == "ignore_view-change_two_batches_for_one_seq"
    assert node2.receive(replace(honest, batches=())) == "ignore_view-change_batch_missing"
    assert node2.receive(honest) is None
    # A NEW-VIEW whose re-issued pre-prepare carries another batch than its digest names is refused.
    swapped = signed(replace(reissued, batch=()), cluster.replicas[1].auth.sign)
    forged = signed(replace(new_view, preprepares=tuple(swapped if pp.seq == reissued.seq else pp
                                                        for pp in new_view.preprepares)), cluster.replicas[1].auth.sign)
    assert node2.receive(forged) == "ignore_new-view_malformed_preprepare"
    # Inside a NEW-VIEW the view changes may come without batches, never with another one.
    carried = next(index for index, vc in enumerate(new_view.view_changes) if vc.prepared)
    tampered = replace(new_view.view_changes[carried], batches=(wrong,))
    view_changes = new_view.view_changes[:carried] + (tampered,) + new_view.view_changes[carried + 1:]
    forged = signed(replace(new_view, view_changes=view_changes), cluster.replicas[1].auth.sign)
    assert node2.receive(forged) == "ignore_new-view_batch_not_of_its_preprepare"
    assert node2.receive(new_view) is None and node2.view == 1 and not node2.changing_view


def test_a_view_change_with_a_forged_certificate_is_refused():
    cluster = Cluster()
    view_changes, _ = view_change_messages(cluster)
    honest = view_changes[3]
    assert honest.prepared, "node 3 prepared the first request in view 0"
    cert = honest.prepared[0]
    # Replace one prepare by one that node 3 signed in node 1's name.
    forged_vote = signed(replace(cert.prepares[0], sender=1), cluster.replicas[3].auth.sign)
    bad_cert = replace(cert, prepares=(forged_vote,) + cert.prepares[1:])
    forged = signed(replace(honest, prepared=(bad_cert,)), cluster.replicas[3].auth.sign)
    assert cluster.replicas[2].receive(forged) in (
        "ignore_view-change_certificate_bad_prepare_signature",
        "ignore_view-change_certificate_prepare_bad_sender",
    )
    thin = signed(replace(honest, prepared=(replace(cert, prepares=cert.prepares[:1]),)), cluster.replicas[3].auth.sign)
    assert cluster.replicas[2].receive(thin) == "ignore_view-change_certificate_too_few_prepares"
    unsigned = replace(honest, sig="0" * 128)
    assert cluster.replicas[2].receive(unsigned) == "ignore_view-change_bad_signature"


def test_messages_of_the_old_view_are_refused_after_a_view_change():
    cluster = Cluster()
    cluster.crashed.add(0)
    retransmit_to_all(cluster, cluster.request())
    cluster.run()
    cluster.tick(T)
    cluster.run()
    stale = signed(Prepare(0, 2, "a" * 64, 2), cluster.replicas[2].auth.sign)
    assert cluster.deliver_to(1, stale) == "ignore_prepare_old_view"


def _ask_alone_for_view_one(cluster):
    """Node 3 hears a request whose forward to the primary is lost, and asks alone for view 1."""
    lonely = cluster.replicas[3]
    request = cluster.request()
    lonely.receive(request, now=0.0)
    lonely.take_effects()
    cluster.tick(T, nodes=(3,))
    cluster.run()
    assert [(replica.view, replica.changing_view) for replica in cluster.replicas] == [(0, False)] * 3 + [(1, True)]
    return request


def test_idle_nodes_join_a_node_that_asks_alone_for_the_next_view():
    """Having said VIEW-CHANGE, node 3 may never work in view 0 again, and f+1 nodes never
    ask with it while the primary works: the others join it once idle for two timeouts."""
    cluster = Cluster()
    request = _ask_alone_for_view_one(cluster)
    cluster.tick(T + 0.1, nodes=(0, 1, 2))  # they hold its VIEW-CHANGE from now
    cluster.tick(T + 0.1 + 2 * T - 0.2, nodes=(0, 1, 2))
    cluster.run()
    assert [replica.view for replica in cluster.replicas] == [0, 0, 0, 1]
    cluster.tick(T + 0.1 + 2 * T)
    cluster.run()
    assert all((replica.view, replica.changing_view) == (1, False) for replica in cluster.replicas)
    assert all(cluster.builds(node) == [request] for node in range(4))  # node 3 handed its request on


def test_a_node_with_work_in_flight_does_not_join_a_lone_view_change():
    cluster = Cluster()
    _ask_alone_for_view_one(cluster)
    cluster.tick(T + 0.1, nodes=(0, 1, 2))  # they hold node 3's VIEW-CHANGE from now
    waited = cluster.request()
    cluster.replicas[1].receive(waited, now=2.5 * T)  # its forward to the primary is lost too
    cluster.replicas[1].take_effects()
    cluster.tick(T + 0.1 + 2 * T)  # node 1's own timer for `waited` runs until 3.5 T
    cluster.run(lambda node, message: node != 1)
    # Idle nodes 0 and 2 joined; node 1, waiting for a request, did not.
    assert [replica.view for replica in cluster.replicas] == [1, 0, 1, 1]


def test_a_backup_that_hears_a_new_view_last_keeps_every_vote_of_the_window_sent_before_it():
    """A NEW-VIEW re-proposes every prepared slot above h: each peer sends a PREPARE and a
    COMMIT per slot of the window, and a backup the NEW-VIEW reaches last holds them all
    until it enters the view. With room for less than a window per sender, the vote for the
    one new slot was pushed out by those for executed slots, and nothing moved until the
    next view change (seen in the simulator at n = 7 with 92 slots re-proposed)."""
    cluster = Cluster(settings={"checkpoint_interval": 64, "log_window": 64, "batch_max": 1, "max_buffered": 64})
    for _ in range(30):
        cluster.deliver_to(0, cluster.request("master"))
        cluster.run()
    assert cluster.executed_seqs(3) == list(range(1, 31))
    cluster.crashed.add(0)
    waiting = cluster.request("feature")
    retransmit_to_all(cluster, waiting)
    cluster.run()
    held = []

    def hold_for_node_3(node, message):
        if node == 3 and message.TYPE != "view-change":
            held.append(message)
            return False
        return True

    cluster.tick(T)
    cluster.run(hold_for_node_3)
    assert cluster.replicas[3].changing_view and not cluster.replicas[2].changing_view
    from_2 = [message for message in held if message.TYPE == "prepare" and message.sender == 2]
    newest = max(from_2, key=lambda message: message.seq)
    # Slot 31 holds the waiting request; the new primary logs the 30 verdicts beside it and in
    # the slots after (`pbft.ci.verdictlog`).
    assert newest.seq > 31 and len(from_2) == newest.seq
    # The newest vote first, then a window's worth behind it, the NEW-VIEW last.
    for message in [newest] + [m for m in from_2 if m is not newest] + [m for m in held if m not in from_2]:
        cluster.deliver_to(3, message)
    cluster.run()
    for node in (1, 2, 3):
        assert cluster.executed_seqs(node)[-1] == newest.seq and cluster.builds(node)[-1] == waiting
