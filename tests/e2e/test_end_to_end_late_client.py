"""End to end: a client started after another has run a backlog of builds imports all of them
from the nodes' ledgers, page by page, each with the verdict f+1 nodes signed.

Four real node processes (`--instant-builds`: the builds are not the point, the ledger is)
and two real clients. Client a runs BACKLOG builds before client b starts; b then lists
every one of them with a's verdict. A page of the ledger that many builds fill is far
larger than one read of a socket returns, so a reading that takes one chunk for the
whole answer imports nothing.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from harness.network import write_network
from harness.real_project import branches_repository
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, named_client
from tests.support.node_processes import RealNodes

pytestmark = OWN_NETWORK_MARKS
BACKLOG = 40
IMPORT_TIMEOUT_S = 60
SPEC = "commands:\n  - echo instant builds run nothing\n"


def imported_builds(base_url: str) -> dict[str, dict]:
    """The builds of client a that client b lists, by build id, with their full records."""
    listed = http_json("GET", f"{base_url}/builds?limit={BACKLOG + 10}")[1]["builds"]
    return {str(build["build_id"]): build for build in listed if build["client"] == "a"}


def test_a_client_started_after_a_backlog_imports_every_build_with_its_verdict(tmp_path):
    config_path = write_network(tmp_path, clients=("a", "b"), allow_byzantine=True)
    heads = branches_repository(tmp_path / "repo", SPEC, {"master": False})
    config = load_config(config_path)
    nodes = RealNodes(config_path)
    try:
        for node_id in range(4):
            nodes.start(node_id)
        with named_client(config_path, "a", tmp_path / "client-a.log") as (a_url, _):
            def build(_: int) -> dict:
                code, verdict = http_json("POST", f"{a_url}/webHook", {"branch": "master"})
                assert code == 200 and verdict["status"] == "success", (code, verdict)
                return verdict

            with ThreadPoolExecutor(max_workers=8) as pool:
                verdicts = {str(verdict["build_id"]): verdict for verdict in pool.map(build, range(BACKLOG))}
        assert len(verdicts) == BACKLOG
        # The ledger's first page holds more than one read of an answer gives (64 KiB at most).
        page = nodes.get(0, "/ledger?after=0")[1]
        assert len(page["builds"]) == BACKLOG and len(json.dumps(page)) > 64 * 1024, len(json.dumps(page))

        with named_client(config_path, "b", tmp_path / "client-b.log") as (b_url, _):
            started = time.monotonic()
            while True:
                found = imported_builds(b_url)
                if len(found) == BACKLOG and all(build["state"] == "accepted" for build in found.values()):
                    break
                assert time.monotonic() - started < IMPORT_TIMEOUT_S, (
                    f"client b imported {len(found)} of {BACKLOG} builds in {IMPORT_TIMEOUT_S} s: "
                    f"{sorted(build['state'] for build in found.values())}")
                time.sleep(0.5)
            assert found.keys() == verdicts.keys()
            for build_id, verdict in verdicts.items():
                code, record = http_json("GET", f"{b_url}/builds/{build_id}")
                assert code == 200, record
                assert record["result"]["status"] == verdict["status"] == "success", (record, verdict)
                assert record["result"]["commit"] == verdict["commit"] == heads["master"], (record, verdict)
                assert len(record["agreed_by"]) >= config.f + 1, record
                # Its certificate checks with the network's keys, as one client a signed.
                code, certificate = http_json("GET", f"{b_url}/builds/{build_id}/certificate")
                assert code == 200 and certificate["request"]["client"] == "a", certificate
    finally:
        nodes.close()
