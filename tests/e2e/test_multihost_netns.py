"""One node per host: the "One node per host" commands of docs/operations.md, each node on a host of its own.

Every node, and the client, runs in a network namespace of its own with its
own address on one switch (tests/netns.py), holding only its own private key
and a copy of the operator's network YAML in a folder of its own (its
/etc/pbft-ci). The test runs the key ceremony, starts each node with the
documented command inside its namespace, sends webhooks to the client, and then:
a node's link goes down (a partition) and webhooks still get correct
verdicts; every host's packets are delayed by 50 ms and they still do; the
link comes back and the partitioned node catches up with the others. Builds
are real: each node reaches the Docker engine through its unix socket, which
namespaces do not separate, and fetches the example repository from a local
path.
"""

from __future__ import annotations

import pytest

from node.peers import HEARTBEAT_S
from shared.config import load_config
from tests.e2e.netns_hosts import (
    NETNS_MARKS, NODES, ReadmeCommands, connect_time_s, key_ceremony, lan_of_hosts, set_up_hosts, start_network,
    status, verdicts_at, verify_certificate_on_another_host, wait_until, webhook,
)

pytestmark = NETNS_MARKS

PARTITIONED = 2  # a backup: node 0 leads view 0, so the partition needs no view change
LATENCY_MS = 50
CATCH_UP_TIMEOUT_S = 60
HEARTBEAT_TIMEOUT_S = 3 * HEARTBEAT_S  # a link is closed once a ping goes unanswered


@pytest.fixture
def hosts(tmp_path):
    with lan_of_hosts(tmp_path) as made:
        yield made


def test_one_node_per_host_survives_a_partition_and_50_ms_of_latency_and_the_node_catches_up(hosts):
    set_up_hosts()
    readme = ReadmeCommands()
    key_ceremony(hosts, readme)
    config = load_config(hosts.folder("client") / "network.yaml")  # the client's copy: its token too
    base_url, token = start_network(hosts, readme, config)
    others = [i for i in range(NODES) if i != PARTITIONED]

    first = webhook(hosts, base_url, token, "master")
    webhook(hosts, base_url, token, "feature")
    verify_certificate_on_another_host(hosts, readme, base_url, token, first)

    # A partition: node 2's cable is pulled at the switch.
    hosts.lan.link(f"node-{PARTITIONED}", up=False)
    for branch in ("master", "feature"):
        verdict = webhook(hosts, base_url, token, branch)
        assert PARTITIONED not in verdict["agreed_by"], verdict

    # 50 ms on every packet every host sends, the partitioned one included.
    hosts.lan.add_latency(LATENCY_MS, list(hosts.lan.hosts))
    node_0 = config.node(0)
    round_trip_s = hosts.call_in("client", connect_time_s, node_0.host, node_0.port)
    assert round_trip_s >= 2 * LATENCY_MS / 1000 * 0.9, f"TCP handshake took {round_trip_s * 1000:.1f} ms"
    for branch in ("master", "feature"):
        verdict = webhook(hosts, base_url, token, branch)
        assert PARTITIONED not in verdict["agreed_by"], verdict

    # Long enough for the WebSocket heartbeats to give up on the links (and for what was
    # queued for node 2 to expire): it has to reconnect and fetch, not just receive late.
    def cut_off() -> dict[int, dict] | None:
        statuses = {i: status(hosts, config, i) for i in range(NODES)}
        executed = {statuses[i]["last_executed"] for i in others}
        links = statuses[PARTITIONED]["links"]
        return statuses if len(executed) == 1 and not any(link["connected"] for link in links.values()) else None

    statuses = wait_until(cut_off, HEARTBEAT_TIMEOUT_S, hosts.tails)
    ahead = statuses[0]["last_executed"]
    assert statuses[PARTITIONED]["last_executed"] < ahead, statuses  # it missed what came in the partition

    # Healed: the next webhook's messages show node 2 that the others are ahead, and it catches up.
    hosts.lan.link(f"node-{PARTITIONED}", up=True)
    webhook(hosts, base_url, token, "master")

    def caught_up() -> dict[int, dict] | None:
        statuses = {i: status(hosts, config, i) for i in range(NODES)}
        executed = {s["last_executed"] for s in statuses.values()}
        views = {s["view"] for s in statuses.values()}
        return statuses if len(executed) == 1 and len(views) == 1 else None

    statuses = wait_until(caught_up, CATCH_UP_TIMEOUT_S,
                          lambda: f"{[status(hosts, config, i) for i in range(NODES)]}\n{hosts.tails()}")
    last = statuses[PARTITIONED]["last_executed"]
    assert last > ahead, statuses

    # Its ledger ends as the others' do: every build ordered, each with the same certified verdict.
    def same_ledgers() -> bool:
        ledgers = {i: [verdicts_at(hosts, config, i, seq) for seq in range(1, last + 1)] for i in (0, PARTITIONED)}
        certified = all(state == "certified" for entries in ledgers[0] for _, state, _ in entries)
        return certified and ledgers[0] == ledgers[PARTITIONED]

    wait_until(same_ledgers, CATCH_UP_TIMEOUT_S, lambda: str(
        {i: [verdicts_at(hosts, config, i, seq) for seq in range(1, last + 1)] for i in (0, PARTITIONED)}))
