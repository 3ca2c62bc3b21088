"""Nodes that serve HTTPS and WSS (`tls:` in the network YAML), as real processes on loopback.

The test makes a throwaway CA, a certificate for 127.0.0.1 per node and one of
another CA. The nodes order and answer over TLS among themselves and to a
client; the client's app reaches them for its /network view; a plain-HTTP
caller and a client that trusts another CA get nothing from them; and a
configuration whose files do not load is refused with the file named.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import urllib.error
import urllib.request

import aiohttp
import pytest
import yaml

from client.app import make_app as make_client_app
from harness.network import write_network
from shared.config import ConfigError, load_config
from tests.support.node_processes import Client, RealNodes, wait_until
from tests.support.second_engine import make_certificates

pytestmark = pytest.mark.slow


def with_tls(config_path, certificates, *, node_ids=range(4)):
    folder = config_path.parent / "tls"
    folder.mkdir()
    shutil.copy(certificates["ca"], folder / "ca.pem")
    for node_id in node_ids:
        shutil.copy(certificates["server"], folder / f"node-{node_id}.pem")
        shutil.copy(certificates["server-key"], folder / f"node-{node_id}-key.pem")
    data = yaml.safe_load(config_path.read_text())
    data["tls"] = {"ca_file": "tls/ca.pem", "cert_file": "tls/node-{id}.pem", "key_file": "tls/node-{id}-key.pem"}
    config_path.write_text(yaml.safe_dump(data))
    return config_path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def nodes(tmp_path, certificates):
    started = RealNodes(with_tls(write_network(tmp_path, allow_byzantine=True), certificates))
    try:
        for node_id in range(4):
            started.start(node_id)
        yield started
    finally:
        started.close()


async def test_nodes_order_and_answer_over_tls_and_refuse_plain_http_and_strangers(nodes, certificates):
    config = nodes.config
    assert [node.url("/status")[:8] for node in config.nodes] == ["https://"] * 4
    client = Client(config, "client")
    async with aiohttp.ClientSession() as session:
        await client.connect(session, range(4))
        await client.send(1, range(4))
        verdict, _ = await client.wait_verdict(1, timeout_s=30)
        await client.close()
    assert verdict["status"] == "success"
    # The peers' links are TLS too: every node reaches every other (those started
    # before a peer was up retry with a backoff).
    wait_until(lambda: all(link["connected"] for node_id in range(4) for link in nodes.status(node_id)["links"].values()),
               timeout_s=30, what="every peer link up")

    node = config.node(1)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to a TLS port: no answer
        urllib.request.urlopen(f"http://{node.host}:{node.port}/status", timeout=5).read()
    stranger = ssl.create_default_context(cafile=str(certificates["other-ca"]))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(node.url("/status"), timeout=5, context=stranger)


async def test_the_client_reaches_tls_nodes_for_its_network_view(nodes, aiohttp_client):
    client = await aiohttp_client(make_client_app(nodes.config, "client"))
    async with asyncio.timeout(30):
        while True:
            answer = await client.get("/network")
            assert answer.status == 200
            view = await answer.json()
            if all(node["reachable"] and node["status"] for node in view["nodes"]):
                break
            await asyncio.sleep(0.2)
    assert sorted(node["node"] for node in view["nodes"]) == [0, 1, 2, 3]


def test_a_configuration_whose_tls_files_do_not_load_is_refused_naming_them(tmp_path, certificates):
    config_path = with_tls(write_network(tmp_path), certificates, node_ids=[0, 1, 2])
    load_config(config_path, node_id=2)
    with pytest.raises(ConfigError, match=r"tls: node 3 cannot serve with .*node-3\.pem"):
        load_config(config_path, node_id=3)
    (tmp_path / "tls" / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"tls\.ca_file: cannot load .*ca\.pem"):
        load_config(config_path)
