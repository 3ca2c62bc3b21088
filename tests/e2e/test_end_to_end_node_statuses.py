"""End to end: each node's own commit status, on four real nodes (node 3 started with
`--byzantine 3:lie`), the client and Docker, with a forge that records each status and the
token it came with. A push of the example's master and of its feature branch: every node posts
`pbft-ci/node-<i>` with its own token and its own result (node 3 the flipped one), and the
client's `pbft-ci` says the honest verdict and links its certificate."""

from __future__ import annotations

import urllib.request


from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import GITHUB_SECRET
from tests.e2e.example_network import (
    OWN_NETWORK_MARKS, EXAMPLE_REPO, FEATURE_EXIT_CODE, branch_commit, example_copy, github_push,
)
from tests.support.status_server import StatusServer

pytestmark = OWN_NETWORK_MARKS

FULL_NAME = "Codertocat/Hello-World"
CLIENT_TOKEN = "client-forge-token"
NODE_TOKENS = {node_id: f"node-{node_id}-forge-token" for node_id in range(4)}
LIAR = 3


def test_each_node_posts_its_own_status_and_the_verdict_links_its_certificate(scratch, network):
    statuses = StatusServer(CLIENT_TOKEN, *NODE_TOKENS.values()).start()
    tokens = scratch / "tokens"
    tokens.mkdir()
    for node_id, token in NODE_TOKENS.items():
        (tokens / f"node-{node_id}.status-token").write_text(token + "\n")
    repositories = [{
        "name": "hello", "full_name": FULL_NAME, "secret": GITHUB_SECRET, "url": str(EXAMPLE_REPO),
        "status_api": statuses.url, "status_token": CLIENT_TOKEN,
        "node_statuses": True, "node_status_token_file": str(tokens / "node-{id}.status-token"),
    }]
    config_path = example_copy(scratch, allow_byzantine=True, repositories=repositories)
    network(str(config_path), "--byzantine", f"{LIAR}:lie")
    config = load_config(config_path)
    # What each honest node and the verdict say of each branch, and what the liar says instead.
    expected = {
        "master": (("success", "build passed (exit 0)"), ("failure", "build failed (exit 1)")),
        "feature": (("failure", f"build failed (exit {FEATURE_EXIT_CODE})"), ("success", "build passed (exit 0)")),
    }

    try:
        with client(config, scratch / "client.out", str(config_path)) as base_url:
            for branch, (honest, lie) in expected.items():
                head = branch_commit(branch)
                build_id = github_push(base_url, branch, head, f"node-statuses-{branch}")
                path = f"/repos/{FULL_NAME}/statuses/{head}"

                verdict = statuses.final(path, "pbft-ci")
                assert (verdict.state, verdict.token) == (honest[0], CLIENT_TOKEN), verdict
                assert verdict.description.startswith(honest[1] + "; agreed by nodes "), verdict
                assert LIAR not in http_json("GET", f"{base_url}/builds/{build_id}")[1]["agreed_by"]
                assert verdict.target_url == f"{base_url}/builds/{build_id}/certificate"
                code, certificate = http_json("GET", verdict.target_url)
                assert code == 200 and certificate["result"]["status"] == honest[0], certificate

                for node_id in range(4):
                    own = statuses.final(path, f"pbft-ci/node-{node_id}")
                    state, text = lie if node_id == LIAR else honest
                    assert (own.state, own.description, own.token) == (
                        state, f"node {node_id}: {text}", NODE_TOKENS[node_id]), own
                    assert own.target_url == f"{base_url}/builds/{build_id}/log?node={node_id}"
                with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node=0", timeout=30) as log:
                    assert b"== status " in log.read()  # the link leads to node 0's own output

            # One status per node per commit, each with the token of the node it names, and the
            # client's own: nobody posted with another's token.
            by_context = {(call.context, call.token) for call in statuses.calls}
            assert by_context == {("pbft-ci", CLIENT_TOKEN)} | {
                (f"pbft-ci/node-{node_id}", token) for node_id, token in NODE_TOKENS.items()}, statuses.calls
            assert all(call.authorized for call in statuses.calls)
    finally:
        statuses.stop()
