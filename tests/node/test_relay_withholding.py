"""A relaying primary that cuts one backup out of its relays cannot stop that backup from building.

Seven real node processes on loopback (f = 2) with `protocol.relay_votes: true`
and the test-only instant builds. Node 0, the primary, runs `--byzantine
withhold-relay`: it never passes a COMMIT on to node 1 (the next node), and
puts node 1's own votes first in the relays everyone else gets, so that they
hold node 1's votes before node 1 gives up waiting for the relay and votes to
all. Each peer must still answer node 1's straight vote by voting to all in
that slot (`VoteRelay.joined_all_to_all`), or node 1 would only catch up by
state transfer (before that rule, on these nodes, it fell a second behind and
fetched the slots' commit certificates). Node 1 must build every request
itself, in the slots as they come, and hold the same certified verdicts as the
others.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from harness.network import write_network
from node.byzantine import WithholdRelay, make_behaviour, parse_mode
from pbft.encoding import canonical
from pbft.messages import Commit, Prepare, Relay, decode, encode, signed
from shared.crypto import generate_private_key, sign_bytes
from tests.support.node_processes import Client, RealNodes, wait_until

N, F = 7, 2
PRIMARY, VICTIM = 0, 1
REQUESTS = 15
SEND_INTERVAL_S = 0.2


class Recorder:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def send(self, frame: str) -> None:
        self.frames.append(frame)


def test_withhold_relay_takes_no_argument_and_cuts_out_the_next_node():
    assert parse_mode(["withhold-relay"]) == ("withhold-relay", None)
    with pytest.raises(ValueError, match="withhold-relay takes no argument"):
        parse_mode(["withhold-relay", "1"])
    for node_id, victim in ((0, 1), (3, 4), (6, 0)):
        behaviour = make_behaviour("withhold-relay", None, private_key=generate_private_key(), node_id=node_id, n=7)
        assert (str(behaviour), behaviour.victim) == ("withhold-relay", victim)


def test_withhold_relay_drops_commit_relays_to_the_victim_and_puts_its_votes_first_for_the_others():
    keys = {node_id: generate_private_key() for node_id in range(3)}

    def vote(kind, sender: int, seq: int = 1):
        return signed(kind(0, seq, "d" * 64, sender), lambda payload: sign_bytes(keys[sender], canonical(payload)))

    behaviour = WithholdRelay(victim=1)
    victim, other = Recorder(), Recorder()
    to_victim, to_other = behaviour.peer(1, victim), behaviour.peer(2, other)
    prepares = json.dumps(encode(Relay((vote(Prepare, 2), vote(Prepare, 1)))))
    commits = json.dumps(encode(Relay((vote(Prepare, 2), vote(Prepare, 1), vote(Commit, 2), vote(Commit, 1)))))
    plain = json.dumps(encode(vote(Commit, 0)))
    for frame in (prepares, commits, plain):
        to_victim.send(frame)
        to_other.send(frame)

    assert victim.frames == [prepares, plain]
    reordered = [decode(json.loads(frame)) for frame in other.frames[:2]]
    assert [(type(v).__name__, v.sender) for v in reordered[0].votes] == [("Prepare", 1), ("Prepare", 2)]
    assert [(type(v).__name__, v.sender) for v in reordered[1].votes] == [
        ("Prepare", 1), ("Commit", 1), ("Prepare", 2), ("Commit", 2)]
    assert other.frames[2] == plain
    assert {v for relay in reordered for v in relay.votes} <= {
        v for frame in (prepares, commits) for v in decode(json.loads(frame)).votes}


@pytest.fixture
def nodes(tmp_path):
    config_path = write_network(tmp_path, n=N, f=F, allow_byzantine=True, protocol={"relay_votes": True})
    started = RealNodes(config_path)
    try:
        yield started
    finally:
        started.close()


def ledger(nodes: RealNodes, node_id: int, last: int) -> dict[int, tuple[int, list]]:
    """seq -> (HTTP status, [(client, timestamp, own result, verdict)]) for 1..last, as GET /builds/{seq} says."""
    view = {}
    for seq in range(1, last + 1):
        status, body = nodes.build_at(node_id, seq)
        view[seq] = (status, [(b["client"], b["timestamp"], b["own_result"], b["verdict"])
                              for b in body.get("builds", ())])
    return view


@pytest.mark.slow
def test_a_backup_cut_out_of_the_commit_relays_builds_every_request_at_n_7(nodes):
    nodes.start(PRIMARY, "--byzantine", "withhold-relay", wait=False)
    for node_id in range(1, N):
        nodes.start(node_id, wait=False)
    for node_id in range(N):
        nodes.wait_until_up(node_id)
    config = nodes.config

    async def submit() -> dict[int, dict]:
        async with aiohttp.ClientSession() as session:
            client = Client(config, "client")
            try:
                await client.connect(session, range(N))
                for timestamp in range(1, REQUESTS + 1):
                    await client.send(timestamp, [PRIMARY])
                    await asyncio.sleep(SEND_INTERVAL_S)
                return {timestamp: (await client.wait_verdict(timestamp, timeout_s=30))[0]
                        for timestamp in range(1, REQUESTS + 1)}
            finally:
                await client.close()

    verdicts = asyncio.run(submit())
    assert all(verdict["status"] == "success" for verdict in verdicts.values()), verdicts
    last = nodes.status(PRIMARY)["last_executed"]
    assert last >= 1

    # Every seq holds the same batch and the same certified verdict on all seven ledgers.
    views = wait_until(
        lambda: (views := {i: ledger(nodes, i, last) for i in range(N)})
        and all(v[seq][1] and v[seq][1][0][3]["state"] == "certified" for v in views.values() for seq in v)
        and views,
        timeout_s=30, what="every node's verdicts to be certified",
    )

    def agreed(view):
        return {seq: (status, [(c, t, verdict) for c, t, _own, verdict in builds])
                for seq, (status, builds) in view.items()}
    for node_id in range(1, N):
        assert agreed(views[node_id]) == agreed(views[PRIMARY]), node_id
    # The victim built every request itself: its own result is in its ledger, and is the verdict.
    builds = [build for _status, seq_builds in views[VICTIM].values() for build in seq_builds]
    assert sorted(timestamp for _client, timestamp, _own, _verdict in builds) == list(range(1, REQUESTS + 1))
    for client, timestamp, own, verdict in builds:
        assert own is not None, (client, timestamp)
        assert {key: own[key] for key in verdict["result"]} == verdict["result"], (own, verdict)
    # ... in the slots as they came, with the commits its peers sent it once it voted to all:
    # not from a FETCH of commit certificates once it had fallen a second behind.
    victim_log = nodes.log(VICTIM)
    assert f"node={VICTIM} view=0 phase=fetch" not in victim_log, victim_log[-3000:]
    metrics = nodes.metrics(VICTIM)
    assert metrics[("pbft_builds_finished_total", (("status", "success"),))] == REQUESTS, metrics
    assert metrics[("pbft_state_transfer_batches_total", ())] == 0, "the victim caught up by state transfer"

    # The primary did withhold: every COMMIT relay to node 1, and the others got node 1's votes first.
    log = nodes.log(PRIMARY)
    assert f"node={PRIMARY} started as byzantine: withhold-relay" in log
    assert "byzantine withhold-relay: withheld a relay of" in log and f"from node {VICTIM}" in log
    assert f"byzantine withhold-relay: put node {VICTIM}'s" in log
    assert all(nodes.status(i)["view"] == 0 for i in range(N)), "the primary was suspected"
