"""The client keeps answering while SIGHUP makes it re-read a hostile configuration
(shared/reload.py, shared/boundedread.py): a 10 MB file, a FIFO in place of the file, a FIFO in
place of a repository's webhook secret file. The reload is refused in one line of its log, the
running configuration stays, and the client answers throughout, never more than 100 ms apart.
Against the fake nodes of test_client_app; SIGHUP sent to the process, as ./scripts/reload.sh does."""

from __future__ import annotations


import pytest

from client.keys import LIVE_KEY
from shared.config import load_config
from tests.client.fake_nodes import start_client
from tests.shared.config_files import edit
from tests.support.hostile_files import hostile_in_place, largest_gap_through_sighup

SECRET_FILE = "hook.secret"
SECRET = "a webhook secret of the example forge"
LARGEST_GAP_S = 0.1


@pytest.fixture
async def client(cluster, aiohttp_client, tmp_path):
    (tmp_path / SECRET_FILE).write_text(SECRET + "\n")
    path = edit(tmp_path / "network.yaml", lambda data: data["repositories"][0].update(secret_file=SECRET_FILE))
    cluster.config = load_config(path)
    return await start_client(aiohttp_client, cluster)


@pytest.mark.parametrize("hostile, refusal", [
    ("oversized", "cannot read: is larger than 256 KiB, the most this file may hold"),
    ("fifo", "cannot read: is a FIFO, not a regular file"),
    ("secret fifo", f"repositories[0].secret_file: cannot read {{root}}/{SECRET_FILE}: is a FIFO, not a regular file"),
])
async def test_the_client_answers_throughout_a_hostile_reload_and_keeps_its_configuration(
    client, caplog, hostile, refusal
):
    live = client.app[LIVE_KEY]
    running = live.current
    path = running.path
    with hostile_in_place(hostile, path, SECRET_FILE):
        gap_s, reloads = await largest_gap_through_sighup(client, "/client", caplog, LARGEST_GAP_S)
    print(f"client, {hostile}: largest gap between answers {gap_s * 1000:.1f} ms ({reloads} reloads)")
    assert gap_s < LARGEST_GAP_S, f"GET /client went unanswered for {gap_s * 1000:.0f} ms during the reload"
    assert live.current is running and live.current.repository("example").secret == SECRET
    line, *again = caplog.messages
    assert len(again) == reloads - 1 and set(again) <= {line}
    assert line == f"client ci reload refused, the running configuration stays: {path}: {refusal.format(root=path.parent)}"
    metrics = await (await client.get("/metrics")).text()
    assert f'pbft_client_reloads_total{{outcome="refused"}} {reloads}.0' in metrics
