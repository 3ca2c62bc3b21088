"""End to end: two clients serve one network of four nodes. A forge delivers some pushes to
one client, some to the other and some to both; one client is killed with `kill -9` while
the builds run. Every delivery gets exactly one build, decided by the order, and one
verdict, and the surviving client shows all of them, the dead one's included, under the
build ids the dead one handed out."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import yaml

from harness.real_project import branches_repository
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import GITHUB_SECRET
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, finished_log, github_push, named_client
from tests.support.node_processes import add_client

pytestmark = OWN_NETWORK_MARKS

FULL_NAME = "Codertocat/Hello-World"
A = "client"  # the example's client; b is added beside it
# Long enough that a client is killed while every build still runs or waits.
SPEC = "commands:\n  - echo build started\n  - sleep 6\n  - test ! -f fail\n"
# Where each delivery goes: to client a, to client b, or to both (a forge retrying on the
# other address, or two load balancer paths).
ROUTES = {"to-a-1": "a", "to-a-2": "a", "to-b-1": "b", "to-b-2": "b", "to-both-1": "ab", "to-both-2": "ab"}


def all_settled(base_url: str, count: int, timeout_s: float = 240) -> list[dict]:
    """Every build the client lists, each as its full record, once it lists `count` and none is
    pending. The other client's builds come in from the nodes' ledgers at the import's next
    reading (client/ledgerimport.py), which may be after this client's own have settled."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = http_json("GET", f"{base_url}/builds?limit=100")[1]["builds"]
        if len(listed) >= count and all(build["state"] != "pending" for build in listed):
            return [http_json("GET", f"{base_url}/builds/{build['build_id']}")[1] for build in listed]
        assert time.monotonic() < deadline, [(build["build_id"], build["state"]) for build in listed]
        time.sleep(0.5)


def test_two_clients_give_every_delivery_one_build_and_one_verdict_when_one_is_killed_mid_build(scratch, network):
    # Each commit fails or passes by its branch name's parity.
    heads = branches_repository(scratch / "forge", SPEC, {branch: branch.endswith("2") for branch in ROUTES})
    config_path = example_copy(scratch, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "hello", "full_name": FULL_NAME, "secret": GITHUB_SECRET,
                             "url": str(scratch / "forge")}]
    # A keys folder of the test's own, which b's key joins.
    shutil.copytree(data["keys_dir"], scratch / "keys")
    data["keys_dir"] = str(scratch / "keys")
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    add_client(config_path, "b")  # beside the example's client, which plays a
    network(str(config_path))
    config = load_config(config_path)

    with named_client(config_path, "b", scratch / "client-b.log") as (b_url, _):
        with named_client(config_path, A, scratch / "client-a.log") as (a_url, a_process):
            handed_out: dict[str, dict[str, str]] = {delivery: {} for delivery in ROUTES}
            for delivery, route in ROUTES.items():
                for name, url in (("a", a_url), ("b", b_url)):
                    if name in route:
                        handed_out[delivery][name] = github_push(url, delivery, heads[delivery], delivery)
            time.sleep(1.5)  # every build ordered, none finished (each sleeps 6 s)
            os.killpg(a_process.pid, signal.SIGKILL)
            a_process.wait(timeout=15)

        found = all_settled(b_url, sum(len(route) for route in ROUTES.values()))
        # The killed client's build's output, as a node kept it under that client's name.
        built_by_a = next(record for record in found
                          if record["client"] == A and record["result"]["status"] != "skipped")
        assert "build started" in finished_log(b_url, built_by_a["build_id"], 0), built_by_a
        # And each node's record of it, its votes checked.
        code, nodes = http_json("GET", f"{b_url}/builds/{built_by_a['build_id']}/nodes")
        assert code == 200 and sum(node["executed"] for node in nodes["nodes"]) >= config.f + 1, nodes

    by_delivery: dict[str, list[dict]] = {}
    for record in found:
        delivery = record["request"]["operation"].get("delivery", "")
        by_delivery.setdefault(delivery.removeprefix("github:"), []).append(record)
    assert sorted(by_delivery) == sorted(ROUTES), sorted(by_delivery)
    for delivery, records in by_delivery.items():
        built = [record for record in records if record["result"]["status"] != "skipped"]
        skipped = [record for record in records if record["result"]["status"] == "skipped"]
        assert len(built) == 1, (delivery, records)
        [record] = built
        expected = "failure" if delivery.endswith("2") else "success"
        assert (record["state"], record["result"]["status"], record["result"]["commit"]) == (
            "accepted", expected, heads[delivery]), (delivery, record)
        assert len(record["agreed_by"]) >= config.f + 1, record
        # Its id is the one the client the forge reached handed out, on either client.
        assert str(record["build_id"]) in handed_out[delivery].values(), (delivery, handed_out[delivery], record)
        # A delivery both clients took was built once: the order answered the other `skipped`.
        assert len(skipped) == len(ROUTES[delivery]) - 1, (delivery, records)
        for duplicate in skipped:
            assert duplicate["state"] == "accepted" and "ordered before" in duplicate["result"]["reason"], duplicate
    # The killed client's builds are there, imported from the nodes' ledgers with f+1 signed votes.
    taken_by_a = {str(record["build_id"]) for record in found if record["request"]["client"] == A}
    handed_out_by_a = {ids["a"] for ids in handed_out.values() if "a" in ids}
    assert len(handed_out_by_a) == 4 and handed_out_by_a <= taken_by_a, (handed_out_by_a, taken_by_a)
