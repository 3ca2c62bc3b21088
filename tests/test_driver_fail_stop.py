"""A node whose replica trips an invariant stops whole: nothing of that step is saved or sent."""

import json

from node.driver import Driver
from node.storage import NodeStore
from pbft.messages import encode
from tests.cluster import Cluster


class Recorder:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def send(self, frame: str) -> None:
        self.frames.append(frame)


async def test_a_broken_invariant_stops_the_node_before_anything_leaves(tmp_path):
    cluster = Cluster()
    replica = cluster.replicas[0]
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    peers = {i: Recorder() for i in (1, 2, 3)}
    stops = []
    driver = Driver(replica, None, None, peers, store=store, fail_stop=lambda: stops.append(True))

    request = cluster.request()
    real_check = replica._check_invariants

    def broken() -> None:
        real_check()
        raise AssertionError("invariant")

    replica._check_invariants = broken
    driver.on_frame(json.dumps(encode(request)), connection=None)
    assert stops == [True] and driver.stopped
    assert all(peer.frames == [] for peer in peers.values())  # the pre-prepare never left
    assert store.load() is None  # and nothing of the step was saved
    replica._check_invariants = real_check
    driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    assert all(peer.frames == [] for peer in peers.values())  # a stopped node stays stopped


async def test_a_healthy_step_is_saved_and_sent(tmp_path):
    cluster = Cluster()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    peers = {i: Recorder() for i in (1, 2, 3)}
    driver = Driver(cluster.replicas[0], None, None, peers, store=store, fail_stop=lambda: None)
    driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    assert all(len(peer.frames) == 1 for peer in peers.values()) and store.load() is not None
