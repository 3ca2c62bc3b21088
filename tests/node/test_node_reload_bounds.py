"""A node keeps answering while SIGHUP makes it re-read a hostile configuration (shared/reload.py,
shared/boundedread.py): a 10 MB file, a FIFO in place of the file, a FIFO in place of a build
secret's file. The reload is refused in one line of its log, the running configuration stays,
and GET /status answers throughout, never more than 100 ms apart. One node in this process
(aiohttp's test server), its builds faked; SIGHUP sent to the process, as ./scripts/reload.sh does."""

from __future__ import annotations


import pytest

from harness.network import write_network
from node.server import LIVE, make_app
from shared.config import load_config
from tests.shared.config_files import edit
from tests.support.hostile_files import hostile_in_place, largest_gap_through_sighup
from tests.support.node_network import fake_build

NODE_ID = 0
SECRET_FILE = "deploy.secret"
LARGEST_GAP_S = 0.1


@pytest.fixture
async def node(tmp_path, aiohttp_client):
    (tmp_path / SECRET_FILE).write_text("a deploy key of the example\n")
    path = edit(write_network(tmp_path), lambda data: data["repositories"][0].update(
        secrets=[{"name": "DEPLOY_KEY", "file": SECRET_FILE}]))
    config = load_config(path, node_id=NODE_ID, read_secrets=False)
    return await aiohttp_client(make_app(config, NODE_ID, build=fake_build))


@pytest.mark.parametrize("hostile, refusal", [
    ("oversized", "cannot read: is larger than 256 KiB, the most this file may hold"),
    ("fifo", "cannot read: is a FIFO, not a regular file"),
    ("secret fifo", f"repositories[0].secrets[0].file: cannot read {{root}}/{SECRET_FILE}: "
                    "is a FIFO, not a regular file"),
])
async def test_a_node_answers_throughout_a_hostile_reload_and_keeps_its_configuration(
    node, tmp_path, caplog, hostile, refusal
):
    live = node.app[LIVE]
    running = live.current
    path = running.path
    with hostile_in_place(hostile, path, SECRET_FILE):
        gap_s, reloads = await largest_gap_through_sighup(node, "/status", caplog, LARGEST_GAP_S)
    print(f"node, {hostile}: largest gap between answers {gap_s * 1000:.1f} ms ({reloads} reloads)")
    assert gap_s < LARGEST_GAP_S, f"GET /status went unanswered for {gap_s * 1000:.0f} ms during the reload"
    assert live.current is running
    line, *again = caplog.messages
    assert len(again) == reloads - 1 and set(again) <= {line}
    assert line == (f"node={NODE_ID} reload refused, the running configuration stays: "
                    f"{path}: {refusal.format(root=path.parent)}")
    metrics = await (await node.get("/metrics")).text()
    assert f'pbft_node_reloads_total{{outcome="refused"}} {reloads}.0' in metrics
