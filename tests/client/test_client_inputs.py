"""A manual run's inputs at the client (client/inputcheck.py), against fake nodes and a real
git repository: the client reads the spec at the commit it pinned, as the nodes read it, and
refuses a value the spec does not take with a 400 before anything is ordered; where it
cannot tell, the nodes decide."""

import json
import subprocess

from tests.client.fake_nodes import post, start_client

SPEC = """\
inputs:
  target: {type: choice, options: [staging, production]}
include: [ci/more.yml]
commands: [echo]
"""
MORE = "inputs:\n  dry_run: {type: boolean}\n"


def repository(path, files: dict[str, str]) -> None:
    path.mkdir(exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for command in (["init", "-q", "-b", "main"], ["add", "."],
                    ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "spec"]):
        subprocess.run(["git", "-C", str(path), *command], check=True)


async def test_a_value_the_spec_at_the_pinned_commit_does_not_take_is_refused_before_ordering(
        cluster, aiohttp_client, tmp_path):
    repository(tmp_path / "repo", {".pbft-ci.yml": SPEC, "ci/more.yml": MORE})
    client = await start_client(aiohttp_client, cluster)

    refused = [await post(client, {"branch": "main", "inputs": inputs}) for inputs in (
        {"target": "prod"}, {"dry_run": "maybe"}, {"colour": "red"})]
    ordered_before = len(cluster.committed)
    status, verdict = await post(client, {"branch": "main", "inputs": {"target": "production", "dry_run": True}})

    assert [(status, answer["error"]) for status, answer in refused] == [
        (400, ".pbft-ci.yml: input target: 'prod' is not one of staging, production"),
        (400, ".pbft-ci.yml: input dry_run: 'maybe' is not true or false"),
        (400, ".pbft-ci.yml: input colour is not declared in the spec (its inputs are dry_run, target)")]
    assert ordered_before == 0, "nothing refused was ordered"
    assert status == 200 and len(cluster.committed) == 1, verdict
    assert list(cluster.committed.values())[0][1].operation.inputs == (("target", "production"), ("dry_run", "true"))


async def test_a_commit_without_a_spec_refuses_inputs_and_an_unreachable_repository_leaves_them_to_the_nodes(
        cluster, aiohttp_client, tmp_path):
    repository(tmp_path / "repo", {"Dockerfile": "FROM scratch\n"})
    client = await start_client(aiohttp_client, cluster)

    status, answer = await post(client, {"branch": "main", "inputs": {"target": "x"}})
    assert (status, answer["error"]) == (400, "the run gives inputs; the commit has no .pbft-ci.yml to declare them")

    # "other" is configured at a folder that is no repository: nothing is pinned or read.
    status, verdict = await post(client, {"repository": "other", "branch": "main", "inputs": {"target": "x"}})
    assert status == 200 and len(cluster.committed) == 1, verdict
    scratch = cluster.config.data_dir / "client-ci" / "scratch"
    assert scratch.is_dir() and not list(scratch.iterdir()), "each check's clone is removed"


async def test_a_run_whose_signed_request_no_node_would_take_is_refused_with_its_size(cluster, aiohttp_client, tmp_path):
    # Sixteen values of 1,000 characters outside the BMP: 64,000 bytes of UTF-8 in the webhook's
    # body, each written \ud834\udd1e (12 bytes) where the request is signed: over
    # pbft.messages.MAX_REQUEST_BYTES, which nodes refuse unread.
    client = await start_client(aiohttp_client, cluster)
    inputs = {f"input_{i}": "\U0001d11e" * 1000 for i in range(16)}
    body = json.dumps({"repository": "other", "branch": "main", "inputs": inputs}, ensure_ascii=False).encode()
    response = await client.post("/webHook", data=body, headers={"Content-Type": "application/json"})
    answer = await response.json()
    assert response.status == 413 and "over the 98304 a node takes" in answer["error"], answer
    assert not cluster.committed
    status, verdict = await post(client, {"repository": "other", "branch": "main", "inputs": {"input_0": "€" * 1024}})
    assert status == 200 and len(cluster.committed) == 1, verdict
