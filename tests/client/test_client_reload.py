"""The client re-reads its configuration on SIGHUP (shared/reload.py): repositories added,
changed and removed are served without a restart; a file that does not load, or that changes
what needs a restart, is refused and the running configuration keeps serving. Against the
fake nodes of test_client_app, over real sockets with real signatures."""

import asyncio
import logging
import os
import signal

import yaml

from client.keys import LIVE_KEY
from harness.network import free_port, parse_metrics
from tests.client.fake_nodes import honest_result, post
from tests.client.status_api import TOKEN

PINNED = "b" * 40


def edit_config(tmp_path, change) -> None:
    """Change the client's configuration file (tests/client/fake_nodes.py configure wrote it)."""
    path = tmp_path / "network.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def add_newrepo(data) -> None:
    data["repositories"].append({"name": "newrepo", "url": "new-repo"})


async def reloads(client) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    return {labels[0][1]: value for (name, labels), value in parse_metrics(text).items()
            if name == "pbft_client_reloads_total"}


async def test_a_repository_added_to_the_file_is_served_after_a_reload(cluster, client, tmp_path, caplog):
    status, answer = await post(client, {"branch": "main", "repository": "newrepo"})
    assert status == 400
    assert answer["error"].startswith("unknown repository 'newrepo': this client builds example, other. ")
    assert "kill -HUP <client pid>" in answer["error"] and "./scripts/reload.sh" in answer["error"]

    edit_config(tmp_path, add_newrepo)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await client.app[LIVE_KEY].reload() == "applied"
    assert "client ci reload: repositories added: newrepo" in caplog.messages

    status, verdict = await post(client, {"branch": "main", "repository": "newrepo"})
    assert (status, verdict["status"], verdict["commit"]) == (200, "success", honest_result("main").commit)
    assert cluster.committed[int(verdict["build_id"])][1].operation.repository == "newrepo"
    assert (await post(client, {"branch": "main"}))[0] == 200, "the first repository is still the default"
    assert await reloads(client) == {"applied": 1, "refused": 0}


async def test_a_real_sighup_reloads_the_running_client(cluster, client, tmp_path):
    reloaded = asyncio.Event()
    client.app[LIVE_KEY].on_reload(lambda config: reloaded.set())
    edit_config(tmp_path, add_newrepo)
    os.kill(os.getpid(), signal.SIGHUP)
    async with asyncio.timeout(10):
        await reloaded.wait()
    assert (await post(client, {"branch": "main", "repository": "newrepo"}))[0] == 200


async def test_a_removed_repository_is_refused_from_then_on(cluster, client, tmp_path):
    edit_config(tmp_path, lambda data: data.update(repositories=data["repositories"][:1]))
    assert await client.app[LIVE_KEY].reload() == "applied"
    status, answer = await post(client, {"branch": "main", "repository": "other"})
    assert status == 400 and answer["error"].startswith("unknown repository 'other': this client builds example. ")


async def test_a_broken_file_is_refused_and_the_old_repositories_keep_being_served(cluster, client, tmp_path, caplog):
    path = tmp_path / "network.yaml"
    good = path.read_text()
    for broken in (good + "repositories: [\n", good.replace("name: other", "name: -other")):
        path.write_text(broken)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="shared.reload"):
            assert await client.app[LIVE_KEY].reload() == "refused"
        [line] = caplog.messages
        assert line.startswith(f"client ci reload refused, the running configuration stays: {path.resolve()}: ")
        status, verdict = await post(client, {"branch": "main", "repository": "other"})
        assert (status, verdict["status"]) == (200, "success")
    assert await reloads(client) == {"applied": 0, "refused": 2}


async def test_a_change_that_needs_a_restart_is_refused_naming_the_key(cluster, client, tmp_path, caplog):
    def change(data):
        add_newrepo(data)
        data["nodes"][2]["port"] = free_port()
        data["protocol"]["client_deadline_s"] = 20.0

    edit_config(tmp_path, change)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await client.app[LIVE_KEY].reload() == "refused"
    assert caplog.messages == ["client ci reload refused: nodes[2].port, protocol.client_deadline_s cannot change "
                               "without a restart; the running configuration stays"]
    assert (await post(client, {"branch": "main", "repository": "newrepo"}))[0] == 400
    assert (await post(client, {"branch": "main"}))[0] == 200


async def test_a_token_set_by_a_reload_guards_the_webhook_and_the_records(cluster, client, tmp_path, caplog):
    token = "t" * 40
    edit_config(tmp_path, lambda data: data["clients"][0].update(token=token, plain_without_token=False))
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await client.app[LIVE_KEY].reload() == "applied"
    assert token not in caplog.text
    assert (await post(client, {"branch": "main"}))[0] == 401
    assert (await client.get("/builds")).status == 401
    response = await client.post("/webHook", json={"branch": "main"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200


async def test_an_unknown_repositorys_name_is_quoted_and_cut(cluster, client):
    status, answer = await post(client, {"branch": "main", "repository": "x\n" + "y" * 500})
    assert status == 400
    assert answer["error"].startswith("unknown repository 'x\\n" + "y" * 78 + "': ")


async def test_commit_statuses_configured_by_a_reload_are_posted(cluster, client, tmp_path, status_server, caplog):
    def with_statuses(data):
        data["repositories"][0].update(full_name="octo/example", status_api=status_server.base_url + "/",
                                       status_token=TOKEN)

    edit_config(tmp_path, with_statuses)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await client.app[LIVE_KEY].reload() == "applied"
    assert "client ci reload: repositories changed: example (full_name, status_api, status_token)" in caplog.messages
    assert TOKEN not in caplog.text
    status, verdict = await post(client, {"branch": "main", "commit": PINNED})
    assert status == 200
    await status_server.wait_for_calls(2)  # pending, then the verdict
    assert [call.body["state"] for call in status_server.calls_for(PINNED)] == ["pending", "success"]
    assert status_server.calls[0].headers["Authorization"].endswith(TOKEN)
