"""End to end: a build that names only a branch is built on one commit by every node, on a
network of the test's own.

The client pins such a request to the branch's head of that moment (client/heads.py, `git
ls-remote` at the configured URL) before it signs it. Here node 3 is paused (SIGSTOP) while
nodes 0-2 order and build the request; then the test pushes a new commit to the branch and
lets node 3 go, so that node 3 fetches after the push. Before pinning existed, node 3 built
the new head and its result named another commit than the others'; now all four build the
pinned one, and the verdict is `success`, certified in every node's ledger.

- a plain call (`curl -d '{"branch":"master"}'`);
- a scheduled build (repositories[].schedules), fired as the client starts because its
  records say the schedule last fired in 1970: its signed request names its slot too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


from client.records import BuildRecords, records_path
from client.schedules import key_of, latest_slot
from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import NetworkConfig, load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, node_record, poll, webhook

pytestmark = OWN_NETWORK_MARKS

LATE = 3  # the node that fetches after the push; nodes 0-2 are a quorum without it
# Node 3 stays paused while nodes 0-2 order and build, which takes longer than one ping period
# on a loaded machine. With the default period its peers would take it for gone, drop the
# frames that order the build, and node 3 would learn the certified verdict by state transfer
# without building anything: the links must outlast the pause for node 3 to fetch at all.
PAUSE_PROOF = {"peer_heartbeat_s": 600}
NIGHTLY = {"name": "nightly", "cron": "0 3 * * *", "branch": "master"}


def configured(tmp_path: Path, **repository) -> tuple[Path, NetworkConfig]:
    """The example network with one repository of the test's own, whose build says hello."""
    slow_repository(tmp_path / "repo", "commands:\n  - echo hello\n")
    repositories = [{"name": "pinned", "url": str(tmp_path / "repo"), **repository}]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories, protocol=PAUSE_PROOF)
    return config_path, load_config(config_path)


def git(repository: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def push(repository: Path) -> str:
    """A new commit on master (a push to the configured repository); its sha."""
    (repository / "pushed.txt").write_text("pushed between the nodes' fetches\n")
    git(repository, "add", "pushed.txt")
    git(repository, "commit", "-q", "-m", "a push between the nodes' fetches")
    return git(repository, "rev-parse", "HEAD")




def built(config: NetworkConfig, node_id: int, build_id: str) -> dict | None:
    """Node `node_id`'s ledger record of the build once it has its own result and the verdict
    is decided there; None before."""
    record = node_record(config, node_id, build_id)
    decided = record and record["own_result"] and (record["verdict"] or {}).get("state") != "pending"
    return record if decided else None


@contextmanager
def paused(pid: int) -> Iterator[Callable[[], None]]:
    """Node process `pid` stopped (SIGSTOP) until the yielded `resume()`, or the block's end."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield lambda: os.kill(pid, signal.SIGCONT)
    finally:
        os.kill(pid, signal.SIGCONT)


def check_one_commit(config: NetworkConfig, repository: Path, build_id: str, resume: Callable[[], None]) -> dict:
    """Nodes 0-2 have built `build_id`; push, let node 3 go, and check that all four built the
    one commit the request pinned, the branch's head before the push. The ledger records."""
    records = {node_id: poll(f"node {node_id} to build", lambda: built(config, node_id, build_id))
               for node_id in range(config.n) if node_id != LATE}
    pinned = records[0]["operation"]["commit"]
    assert pinned == git(repository, "rev-parse", "HEAD"), records[0]["operation"]
    assert push(repository) != pinned
    resume()
    records[LATE] = poll(f"node {LATE} to build after the push", lambda: built(config, LATE, build_id))
    own = {node_id: (record["own_result"]["status"], record["own_result"]["commit"])
           for node_id, record in sorted(records.items())}
    assert own == {node_id: ("success", pinned) for node_id in range(config.n)}, own
    verdicts = {node_id: (record["verdict"]["state"], record["verdict"]["result"]["commit"])
                for node_id, record in sorted(records.items())}
    assert verdicts == {node_id: ("certified", pinned) for node_id in range(config.n)}, verdicts
    return records[0]


def test_a_push_between_the_nodes_fetches_of_a_plain_call_changes_no_nodes_commit(network, tmp_path):
    config_path, config = configured(tmp_path)
    pids = network(str(config_path))
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    with client(config, tmp_path / "client.out", str(config_path)) as base_url, paused(pids[LATE]) as resume:
        verdict = webhook(base_url, config, "master")
        assert (verdict["status"], verdict["commit"]) == ("success", head), verdict
        assert LATE not in verdict["agreed_by"], verdict
        check_one_commit(config, tmp_path / "repo", verdict["build_id"], resume)
        code, record = http_json("GET", f"{base_url}/builds/{verdict['build_id']}")
        assert code == 200 and record["request"]["operation"]["commit"] == head, record


def test_a_scheduled_build_is_pinned_and_names_its_slot(network, tmp_path):
    config_path, config = configured(tmp_path, schedules=[NIGHTLY])
    pids = network(str(config_path))
    [repository] = config.repositories
    # The schedule last fired in 1970: the client fires its latest slot as it starts.
    records = BuildRecords(records_path(config.data_dir, config.clients[0].name))
    records.slots.keep({key_of(repository.name, repository.schedules[0]): 0.0}, {})
    records.close()
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    with paused(pids[LATE]) as resume, client(config, tmp_path / "client.out", str(config_path)) as base_url:
        slot = int(latest_slot(NIGHTLY["cron"], time.time()))
        [build] = poll("the scheduled build's verdict", lambda: [
            build for build in http_json("GET", f"{base_url}/builds")[1]["builds"] if build["state"] != "pending"])
        assert (build["event"], build["branch"], build["state"]) == ("cron", "master", "accepted"), build
        code, record = http_json("GET", f"{base_url}/builds/{build['build_id']}")
        assert code == 200, record
        assert record["request"]["operation"] == {
            "repository": "pinned", "branch": "master", "commit": head, "event": "cron", "slot": slot,
            "actor": {"kind": "schedule", "name": f"pinned/{NIGHTLY['name']}"},
            # The slot builds once, however many clients fire it (pbft.deliveries).
            "delivery": f"schedule:{NIGHTLY['name']}@{slot}",
        }, record["request"]
        assert (record["verdict"], record["result"]["commit"]) == ("success", head), record
        ordered = check_one_commit(config, tmp_path / "repo", build["build_id"], resume)
        assert (ordered["operation"]["slot"], ordered["operation"]["commit"]) == (slot, head), ordered["operation"]
