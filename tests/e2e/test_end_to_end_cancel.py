"""End to end: cancelling a build on the README's network, with node 3 started as a node that
reports every build cancelled on its own (`--byzantine 3:cancel`).

- Node 3 alone cannot cancel a build: a quick build's verdict is `success`, certified by
  the three others, with node 3's `cancelled` vote refused as a dissent.
- With the repository bound to one build at a time, a second long build shows `queued` on
  every node (and in the client's record, from the nodes' signed BUILD-STATEs) while the
  first shows `running`, and its cancel drops it where it waits.
- `POST /builds/{id}/cancel` of a long build, a request ordered like any other, stops it on
  every node: the webhook that asked for it answers `cancelled` within seconds, every
  node's ledger shows the verdict `cancelled`, decided by the order, and no build container is left.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import docker

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, webhook, with_quick_branch

pytestmark = OWN_NETWORK_MARKS

LONG_SPEC = "commands:\n  - echo build started\n  - sleep 120\n  - echo build finished\n"


def answer_when(url: str, done, timeout_s: float = 60) -> dict:
    """The JSON answer at `url` once it is a 200 and `done` holds; failing, the last answer says why."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, answer = http_json("GET", url)
        if code == 200 and done(answer):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)


def node_view_when(base_url: str, build_id: str, done, timeout_s: float = 60) -> dict:
    return answer_when(f"{base_url}/builds/{build_id}/nodes", done, timeout_s)


def wait_for_progress(base_url: str, build_id: str, progress: str, timeout_s: float = 30) -> None:
    """Until the client's record of `build_id` shows `progress`."""
    answer_when(f"{base_url}/builds/{build_id}", lambda record: record.get("progress") == progress, timeout_s)


def test_a_cancel_stops_a_build_on_every_node_and_one_node_alone_cancels_nothing(network, tmp_path):
    repository = tmp_path / "long"
    slow_repository(repository, LONG_SPEC)
    with_quick_branch(repository)
    repositories = [{"name": "long", "url": str(repository), "max_concurrent": 1}]
    config_path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    network(str(config_path), "--byzantine", "3:cancel")
    config = load_config(config_path)
    engine = docker.from_env()

    def leftovers() -> list[str]:
        """This network's containers (each node labels its own with its data directory) that a
        build left: one still running as a build, or one stopped and not removed. A prepared
        container, running idle for the next build, is none."""
        listed = engine.containers.list(all=True, ignore_removed=True)
        return [f"{c.name} {c.status} {c.labels.get('pbft-ci.role')}" for c in listed
                if c.labels.get("pbft-ci.data", "").startswith(f"{config.data_dir}/")
                and (c.status != "running" or c.labels.get("pbft-ci.role") == "build")]

    def started_everywhere(build_id: str) -> bool:
        for node in config.nodes:
            try:
                with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node={node.id}", timeout=10) as answer:
                    if "build started" not in answer.read().decode():
                        return False
            except urllib.error.HTTPError:  # no log on that node yet
                return False
        return True

    try:
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            quick = webhook(base_url, config, "quick")
            assert quick["status"] == "success" and 3 not in quick["agreed_by"], quick
            # A node's ledger certifies the verdict from its peers' votes, possibly before its own
            # build ends (node 3's, slower on a busy host): both are waited for.
            view = node_view_when(base_url, quick["build_id"], lambda view: all(
                node["verdict"] and node["verdict"]["state"] == "certified" and node["own_result"]
                for node in view["nodes"]))
            assert {node["verdict"]["result"]["status"] for node in view["nodes"]} == {"success"}, view["nodes"]
            assert [node["own_result"]["status"] for node in view["nodes"]] == ["success"] * 3 + ["cancelled"]

            verdicts = []
            sender = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "master")))
            sender.start()
            deadline = time.monotonic() + 60
            while (build_id := http_json("GET", f"{base_url}/builds?limit=1")[1]["builds"][0]["build_id"]) == (
                quick["build_id"]
            ) or not started_everywhere(build_id):
                assert time.monotonic() < deadline and sender.is_alive(), "the long build never ran on every node"
                time.sleep(0.2)

            # A second long build of the repository waits for the one slot it may have on each node.
            queued = []
            waiter = threading.Thread(target=lambda: queued.append(webhook(base_url, config, "master")))
            waiter.start()
            deadline = time.monotonic() + 30
            while (second := http_json("GET", f"{base_url}/builds?limit=1")[1]["builds"][0]["build_id"]) == build_id:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            view = node_view_when(base_url, second, lambda view: all(node["build"] for node in view["nodes"]))
            assert [node["build"] for node in view["nodes"]] == ["queued"] * config.n, view["nodes"]
            view = node_view_when(base_url, build_id, lambda view: True)
            assert [node["build"] for node in view["nodes"]] == ["running"] * config.n, view["nodes"]
            # The client has it from the nodes' signed BUILD-STATEs once f+1 of them arrive, a
            # moment after the nodes' own views show it.
            wait_for_progress(base_url, second, "queued")
            wait_for_progress(base_url, build_id, "running")
            assert http_json("POST", f"{base_url}/builds/{second}/cancel")[0] == 202
            waiter.join(timeout=30)
            assert queued and queued[0]["status"] == "cancelled", queued

            started_s = time.monotonic()
            code, answer = http_json("POST", f"{base_url}/builds/{build_id}/cancel")
            assert code == 202 and answer["build_id"] == build_id, answer
            sender.join(timeout=30)
            cancelled_after_s = time.monotonic() - started_s
            assert verdicts and verdicts[0]["status"] == "cancelled", verdicts
            print(f"verdict cancelled {cancelled_after_s:.2f} s after the cancel")
            assert cancelled_after_s < 10, cancelled_after_s

            # Decided by the order where the cancel executed, not by counting votes (pbft.cancels).
            view = node_view_when(base_url, build_id, lambda view: all(
                node["verdict"] and node["verdict"]["state"] == "cancelled" for node in view["nodes"]))
            assert [node["verdict"]["result"]["status"] for node in view["nodes"]] == ["cancelled"] * config.n
            deadline = time.monotonic() + 30
            while left := leftovers():
                assert time.monotonic() < deadline, left
                time.sleep(0.2)
            code, again = http_json("POST", f"{base_url}/builds/{build_id}/cancel")
            assert code == 409, again
    finally:
        engine.close()
