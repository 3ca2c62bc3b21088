"""End to end: a repository with `builders: f+1` on four real nodes (docs/builds.md, "Who
builds"). Node 1 is started `--byzantine 1:lie`: whenever the order picks it, the other picked
builder's result differs from its own, the two standing by build, and the verdict is the
honest one; when it is not picked, two honest nodes alone build and agree. Then node 1, picked
again, is killed mid-build: the nodes standing by build once `standby_s` passed after the other
picked builder's result, and the verdict comes within that bound plus one more build.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import yaml

from client.certificate import check_certificate as verify_certificate
from harness.builds import slow_repository
from harness.real_project import STATUS_LINE
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, kill_9, network_pids, poll, webhook

pytestmark = OWN_NETWORK_MARKS

BUILD_S = 3
STANDBY_S = 5.0
SPEC = f"commands:\n  - sleep {BUILD_S}\n  - echo built\n"


def test_f_plus_1_builders_give_right_verdicts_with_a_liar_and_a_killed_builder(network, tmp_path):
    slow_repository(tmp_path / "three-seconds", SPEC)
    config_path = example_copy(tmp_path, allow_byzantine=True)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "slow", "url": str(tmp_path / "three-seconds"), "builders": "f+1"}]
    # The verdict of f+1 matching replies comes at once when the picked builders agree; where they
    # cannot (one killed, the other the liar), after client_settle_s. The client resends a build
    # every client_retransmit_s while it runs, which alone makes nobody build it.
    data.setdefault("protocol", {}).update(standby_s=STANDBY_S, client_settle_s=2.0, client_retransmit_s=1.0)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path), "--byzantine", "1:lie")
    config = load_config(config_path)

    def logged(build_id: str) -> set[int]:
        """The nodes that started the build: those with output for it."""
        started = set()
        for node in config.nodes:
            try:
                with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node={node.id}", timeout=10) as response:
                    if response.read():
                        started.add(node.id)
            except urllib.error.HTTPError:
                pass  # 404: this node has not started it
        return started

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        for _ in range(4):  # sequence numbers 1 to 4: node 1 is picked for 1 and 4
            started = time.monotonic()
            verdict = webhook(base_url, config, "master")
            elapsed_s = time.monotonic() - started
            assert verdict["status"] == "success" and 1 not in verdict["agreed_by"], verdict
            # A liar picked costs one more build (the others start at its result), never standby_s.
            assert elapsed_s < 3 * BUILD_S + 5, (elapsed_s, verdict)
            _, certificate = http_json("GET", f"{base_url}/builds/{verdict['build_id']}/certificate")
            picked = set(verify_certificate(certificate, config).picked)
            assert len(picked) == 2, certificate
            if 1 not in picked:  # two honest builders agreed: nobody else built it
                assert logged(verdict["build_id"]) == picked
            print(f"verdict in {elapsed_s:.1f} s, picked {sorted(picked)}, agreed by {verdict['agreed_by']}")

        # A picked builder building: one whose output has no status line yet.
        def building_nodes() -> set[int]:
            _, listing = http_json("GET", f"{base_url}/builds?limit=1")
            pending = [build for build in listing["builds"] if build["state"] == "pending"]
            if not pending:
                return set()
            building = set()
            for node in config.nodes:
                url = f"{base_url}/builds/{pending[0]['build_id']}/log?node={node.id}"
                try:
                    with urllib.request.urlopen(url, timeout=10) as response:
                        text = response.read().decode(errors="replace")
                except urllib.error.HTTPError:
                    continue  # 404: this node has not started it
                if text and not STATUS_LINE.search(text):
                    building.add(node.id)
            return building

        # The liar is the one faulty node there may be (f = 1): it is killed once the order picks
        # it, while it builds.
        for _ in range(4):
            answers: list[dict] = []
            sender = threading.Thread(target=lambda: answers.append(webhook(base_url, config, "master")))
            started = time.monotonic()
            sender.start()
            builders = poll("two picked builders building", lambda: found if len(found := building_nodes()) == 2 else None)
            if 1 in builders:
                kill_9(network_pids()[1])
            sender.join(timeout=120)
            elapsed_s = time.monotonic() - started
            (verdict,) = answers
            assert verdict["status"] == "success" and 1 not in verdict["agreed_by"], verdict
            if 1 in builders:
                break
        else:
            raise AssertionError("the order never picked node 1 in four builds")
        # The other picked builder's result starts the wait: standby_s, then one more build.
        assert elapsed_s < BUILD_S + STANDBY_S + BUILD_S + 10, elapsed_s
        # Its certificate names whom the order picked, beside who signed.
        _, certificate = http_json("GET", f"{base_url}/builds/{verdict['build_id']}/certificate")
        assert verify_certificate(certificate, config).picked == tuple(sorted(builders)), certificate
        print(f"killed node 1 of {sorted(builders)}: verdict in {elapsed_s:.1f} s, agreed by {verdict['agreed_by']}")
