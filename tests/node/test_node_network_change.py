"""Four real nodes on loopback (aiohttp, WebSockets, Ed25519, builds faked) run an owner-signed
change of a network whose file names every kind of host file: a notification webhook's
secret, a forge's secret and status token, each node's status token, a build secret, the
client's token, mail server and sign-in, public key files, registry credentials, a build
engine's TLS files, the in-toto layout and folders (tests/support/file_settings.py; the nodes'
own TLS is checked in tests/shared/test_networkdoc_files.py, these nodes serving plain HTTP).

Each node checks the change where it executes (shared.networkdoc.document_problem) and runs
the new document with its own file's settings (`with_document`, reading no secret): a
repository added with a webhook and an e-mail target, which its file gives no secret and no
mail server for, is built; a change that removes a webhook is taken; a document with a real
problem is refused with it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import aiohttp
import pytest

from harness.network import write_network
from node.server import DRIVER
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation
from pbft.encoding import canonical
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from shared.config import load_config
from shared.crypto import generate_private_key, sign_bytes
from shared.networkdoc import agreed
from tests.shared.config_files import edit
from tests.support.file_settings import give_all, node_tls, with_owner
from tests.support.node_network import Network

OWNERS = {name: generate_private_key() for name in ("ada", "bob", "cy")}


@pytest.fixture
async def net(tmp_path):
    def every_file(data: dict) -> None:
        for name, key in OWNERS.items():
            with_owner(data, name, key)
        data["owners"]["threshold"] = 2
        give_all(data, tmp_path, leave_out=(node_tls,))
        # Each node posts its own statuses; where to is no concern of these tests.
        data["repositories"][0]["status_api"] = "http://127.0.0.1:9"

    path = edit(write_network(tmp_path, protocol={"view_change_timeout_s": 0.5}), every_file)
    network = Network(load_config(path, read_secrets=False), set())
    for node_id in range(4):
        await network.start(node_id)
    yield network
    for node_id in list(network.runners):
        await network.stop(node_id)


def signed_change(base: dict, document: dict) -> NetworkChange:
    unsigned = NetworkChange(document_digest(base), canonical(document).decode())
    payload = canonical(unsigned.signed_payload())
    return replace(unsigned, signatures=tuple(
        OwnerSignature(name, sign_bytes(OWNERS[name], payload)) for name in ("ada", "bob")))


async def change(net: Network, session, base: dict, document: dict, timestamp: int) -> tuple[str, str]:
    """The agreed status of the change from `base` to `document`, and the reason f+1 nodes gave."""
    operation = Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=signed_change(base, document))
    result, replies = await net.order(session, operation, timestamp, [0])
    reasons = {reply.result.reason for reply in replies if reply.result.status == result["status"]}
    assert len(reasons) == 1, reasons
    return result["status"], reasons.pop()


async def every_node_runs(net: Network, digest: str, timeout_s: float = 5.0) -> list:
    """Each node's configuration, once every node runs the document `digest`."""
    async with asyncio.timeout(timeout_s):
        while True:
            configs = [net.runners[node_id].app[DRIVER].config for node_id in range(4)]
            if all(config.digest == digest for config in configs):
                return configs
            await asyncio.sleep(0.02)


async def test_a_network_that_names_every_kind_of_host_file_runs_owner_signed_changes(net):
    document = agreed(net.config)
    assert document["repositories"][0]["notify"][0] == {"webhook": "https://hooks.example.org/ci"}
    added = {"name": "more", "url": "https://git.example.org/more.git",
             "notify": [{"webhook": "https://hooks.example.org/more"}, {"email": ["ops@example.org"]}]}
    grown = {**document, "repositories": [*document["repositories"], added],
             "build": {**document["build"], "memory_mb": 512}}
    example = {key: value for key, value in document["repositories"][0].items() if key != "notify"}
    without_webhooks = {**grown, "repositories": [{**example, "notify": [{"email": ["team@example.org"]}]}, added]}
    async with aiohttp.ClientSession() as session:
        refused = await change(net, session, document, {**grown, "build": {**document["build"], "memory_mb": 0}}, 1)
        assert refused == ("error", "network change refused: build.memory_mb: must be at least 1")

        applied = await change(net, session, document, grown, 2)
        # After the refused change's batch (seq 1), and after the batch that logs its verdict
        # when that one was proposed first: which comes first is the network's timing.
        said = re.fullmatch(f"network configuration {document_digest(grown)}, signed by ada, bob, runs from "
                            r"sequence number (\d+)", applied[1])
        assert applied[0] == "success" and said and int(said[1]) in (2, 3), applied
        for config in await every_node_runs(net, document_digest(grown)):
            assert config.build.memory_mb == 512
            assert config.repository("more").notify[0].secret == ""  # a node reads no webhook's secret
            own = config.repository("example")
            assert own.secrets[0].file == net.config.path.parent / "api.secret"  # its own file's settings kept
            assert own.node_status_token_file == "node-{id}.status-token"
        built, _ = await net.submit(session, "master", 3, [0], repository="more")
        assert built["status"] == "success"

        removed = await change(net, session, grown, without_webhooks, 4)
        assert removed[0] == "success", removed
        for config in await every_node_runs(net, document_digest(without_webhooks)):
            assert [target.webhook for target in config.repository("example").notify] == [""]
