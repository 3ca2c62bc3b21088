"""End to end: a 3×3 matrix with one `exclude` and `fail_fast`, through four real nodes.

The README's commands start the network and the client; the repository's spec declares
three values on each of two axes and leaves one combination out, so the expansion f+1
nodes certify lists eight. One combination fails at once while the others sleep: the
client cancels those still building or queued (cancels through the order), so every
node's ledger ends each of them `cancelled` at one point of the order.
"""

from __future__ import annotations


from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, matrix_settled

pytestmark = OWN_NETWORK_MARKS

SPEC = """\
image: pbft-ci/busybox:latest
matrix:
  A: [a1, a2, a3]
  B: [b1, b2, b3]
  exclude:
    - {A: a3, B: b3}
  fail_fast: true
commands:
  - test "$A$B" != a1b1
  - sleep 30
"""


def test_a_3x3_matrix_less_one_runs_eight_builds_and_fail_fast_cancels_them_on_every_node(network, tmp_path):
    slow_repository(tmp_path / "matrix", SPEC)
    repositories = [{"name": "matrix", "url": str(tmp_path / "matrix")}]
    path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(path))
    config = load_config(path)
    with client(config, tmp_path / "client.out", str(path)) as base_url:
        code, expansion = http_json("POST", f"{base_url}/webHook", {"repository": "matrix", "branch": "master"})
        assert code == 200 and expansion["status"] == "matrix", expansion
        assert len(expansion["matrix"]) == 8 and "A=a3,B=b3" not in {build["combination"] for build in expansion["matrix"]}

        record = matrix_settled(base_url, expansion["build_id"])
        said = {build["combination"]: build["status"] for build in record["matrix_builds"]}
        assert said == {"A=a1,B=b1": "failure", **{
            f"A={a},B={b}": "cancelled" for a in ("a1", "a2", "a3") for b in ("b1", "b2", "b3")
            if (a, b) not in (("a1", "b1"), ("a3", "b3"))}}, said

        for build in record["matrix_builds"]:
            if build["status"] != "cancelled":
                continue
            code, view = http_json("GET", f"{base_url}/builds/{build['build_id']}/nodes")
            assert code == 200 and {node["node"]: (node["verdict"] or {}).get("state") for node in view["nodes"]} == {
                node.id: "cancelled" for node in config.nodes}, view
            assert {vote["results"][0]["status"] for vote in view["votes"]} == {"cancelled"}, view
