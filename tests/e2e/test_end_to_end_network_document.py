"""End to end: a node started with a network document that differs from the others' is named
by its peers (GET /status, /metrics), by the client (GET /network) and on the dashboard's
network page, within one checkpoint interval.

Four real node processes (`--instant-builds`: the builds are not the point), node 3 started
from a copy of the file whose operator changed one build limit; the real client; Debian's
headless Chromium on the network page.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.network import write_network
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.browser import BROWSER_MARKS, attributes, screenshot, texts, wait_for
from tests.e2e.example_network import OWN_NETWORK, webhook
from tests.support.node_processes import RealNodes, wait_until

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]
CHECKPOINT_INTERVAL = 2


def other_document(config_path: Path) -> Path:
    """A copy of the network's file in which one operator raised a build limit."""
    data = yaml.safe_load(config_path.read_text())
    data["build"] = {**data.get("build", {}), "memory_mb": 512}
    other = config_path.with_name("network-node-3.yaml")
    other.write_text(yaml.safe_dump(data))
    return other


def test_a_node_with_another_network_document_is_named_everywhere(browser, tmp_path):
    config_path = write_network(tmp_path, allow_byzantine=True, protocol={"checkpoint_interval": CHECKPOINT_INTERVAL})
    config, other = load_config(config_path), load_config(other_document(config_path))
    assert other.digest != config.digest
    nodes = RealNodes(config_path)
    try:
        for node_id in range(3):
            nodes.start(node_id)
        nodes.start(3, config_path=other.path)
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            for _ in range(CHECKPOINT_INTERVAL):  # every node signs its CHECKPOINT at the second
                webhook(base_url, config, "master")

            def named() -> bool:
                return all(len(nodes.status(i)["network"]["foreign"]) == (3 if i == 3 else 1) for i in range(4))

            wait_until(named, 30, "every node names the ones that run another network document")
            for node_id in range(3):
                assert nodes.status(node_id)["network"] == {"digest": config.digest, "foreign": {"3": other.digest}}
                assert nodes.metrics(node_id)[("pbft_peer_foreign_network", (("peer", "3"),))] == 1.0
            assert nodes.status(3)["network"] == {
                "digest": other.digest, "foreign": {str(i): config.digest for i in range(3)}}
            assert "node 3 runs another network configuration" in nodes.log(0)

            code, network = http_json("GET", f"{base_url}/network")
            assert code == 200
            assert network["client"]["network"] == {"digest": config.digest, "foreign": {"3": other.digest}}

            browser.get(f"{base_url}/dashboard/network")
            foreign = "#foreign-networks li[data-node]"
            wait_for(browser, "node 3 named", lambda d: texts(d, foreign) == [f"node 3 runs network configuration "
                                                                               f"{other.digest[:12]}"])
            cells = "#network tr[data-node] td[data-field=network]"
            assert texts(browser, cells) == [config.digest[:12]] * 3 + [other.digest[:12]]
            assert attributes(browser, cells, "class") == [None] * 3 + ["differs"]
            screenshot(browser, "network-foreign-document.png")
    finally:
        nodes.close()
