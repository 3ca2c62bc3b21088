"""Testing layer 1: the effect interpreter the node's driver and the simulator share
(`pbft.interpreter`): what a kill at each of its crash points leaves in the store."""

from node.storage import NodeStore
from pbft.interpreter import Interpreter
from pbft.effects import Broadcast
from pbft.messages import Commit, Prepare, PrePrepare
from tests.support.cluster import Cluster


class Edges:
    """Records what leaves the node; a turn's save runs only when the test says so."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.scheduled = []
        self.sent = []
        self.builds = []

    def send(self, node, message):
        self.sent.append(message)

    def broadcast(self, message):
        self.sent.append(message)

    def send_reply(self, reply):
        self.sent.append(reply)

    def execute(self, effect):
        self.builds += [effect.seq] * len(effect.requests)

    def build_learnt(self, effect):
        self.builds.append(effect.seq)

    def schedule(self, callback):
        self.scheduled.append(callback)

    def save(self, state, effects, *, sync):
        self.store.save(state, effects, sync=sync)

    def saving(self, effects):
        pass

    def stop(self):
        raise AssertionError("stopped")

    def end_turn(self):
        while self.scheduled:
            self.scheduled.pop(0)()


def messages_for_node_1(cluster: Cluster) -> list:
    """The normal case of one request, with node 1's share of the traffic held back."""
    held = []

    def keep(node, message):
        if node == 1:
            held.append(message)
            return False
        return True

    cluster.deliver_to(0, cluster.request())
    cluster.run(keep)
    return held


def test_a_kill_after_a_ledger_read_and_before_the_turns_save_leaves_no_hole(tmp_path):
    cluster = Cluster()
    held = messages_for_node_1(cluster)
    store = NodeStore(tmp_path / "node-1.sqlite", n=4, f=1)
    edges = Edges(store)
    interpreter = Interpreter(cluster.replicas[1], store, edges)
    replica = cluster.replicas[1]
    early_prepare = next(m for m in held if isinstance(m, Prepare) and m.sender == 2)
    # Turn 1 only takes a vote in (the pre-prepare is not here yet): its save waits, unsynced.
    interpreter.step(replica.receive, early_prepare, 0.0)
    edges.end_turn()
    assert edges.sent == [] and store.load() is None
    # Turn 2 executes seq 1; its save is scheduled and has not run ...
    for message in held:
        if isinstance(message, (PrePrepare, Prepare, Commit)) and message is not early_prepare:
            interpreter.step(replica.receive, message, 0.0)
    assert replica.last_executed == 1 and edges.builds == [] and edges.scheduled
    # ... when a read of the ledger writes what waited (GET /builds/{seq}), and the node is killed.
    interpreter.write_deferred()
    loaded = store.load()
    assert loaded.state.last_executed == 0, "the state written is the one after the turn that waited"
    assert store.ledger_entries(1, 1) == [] and edges.sent == []

    # Restarted, the node executes seq 1 again when its peers' votes come again, and builds it once.
    cluster.replicas[1] = restored = type(replica)(replica.settings, replica.auth).restore(loaded)
    edges = Edges(store)
    interpreter = Interpreter(restored, store, edges)
    for message in held:
        interpreter.step(restored.receive, message, 0.0)
    edges.end_turn()
    assert restored.last_executed == 1 and edges.builds == [1]
    assert [entry.seq for entry in store.ledger_entries(1, 1)] == [1]


def node_1_executes(tmp_path, edges_of=Edges):
    """Node 1 of a fresh cluster, with a store and edges made by `edges_of(store)`, stepped
    through its share of one request in one turn whose save has not run yet."""
    cluster = Cluster()
    held = messages_for_node_1(cluster)
    store = NodeStore(tmp_path / "node-1.sqlite", n=4, f=1)
    edges = edges_of(store)
    interpreter = Interpreter(cluster.replicas[1], store, edges)
    for message in held:
        interpreter.step(cluster.replicas[1].receive, message, 0.0)
    return cluster, held, store, edges, interpreter


def test_a_turn_whose_save_never_ran_leaves_nothing_sent_and_nothing_saved(tmp_path):
    cluster, _, store, edges, _ = node_1_executes(tmp_path)
    assert cluster.replicas[1].last_executed == 1
    # Killed here: the whole turn is gone, and none of it left the node.
    assert edges.sent == [] and edges.builds == [] and store.load() is None


class FailingCommit(Edges):
    """Edges whose send of a COMMIT raises, as a link in a state no one foresaw would."""

    def __init__(self, store: NodeStore) -> None:
        super().__init__(store)
        self.stops = 0

    def broadcast(self, message):
        if isinstance(message, Commit):
            raise RuntimeError("this link cannot send")
        super().broadcast(message)

    def stop(self):
        self.stops += 1


def test_an_effect_that_raises_stops_the_node_before_any_effect_after_it(tmp_path):
    cluster, held, store, edges, interpreter = node_1_executes(tmp_path, FailingCommit)
    kinds = [type(effect).__name__ for effect in interpreter.unsaved]
    failing = next(index for index, effect in enumerate(interpreter.unsaved)
                   if isinstance(effect, Broadcast) and isinstance(effect.message, Commit))
    assert "Execute" in kinds[failing + 1:], kinds  # the batch executes after the COMMIT that fails

    edges.end_turn()

    assert interpreter.stopped and edges.stops == 1
    # Nothing after the failing effect was carried out: no build started, no COMMIT sent; and
    # no step is taken any more. What was saved before it is what a restart goes on from.
    assert edges.builds == [] and not any(isinstance(message, Commit) for message in edges.sent)
    assert store.load().state.last_executed == 1
    assert interpreter.step(cluster.replicas[1].receive, held[0], 0.0) is None and edges.scheduled == []
