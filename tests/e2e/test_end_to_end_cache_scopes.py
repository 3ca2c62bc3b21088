"""Build caches keep to their trust scopes on four real nodes: a fork's pull request,
approved, saves more caches than `cache_keep` under the very key the branch's next commit
asks for, and that build still restores the branch's own cache, never the pull request's."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, finished_log, settled
from tests.e2e.github_deliveries import forge_config, pull_request, push

pytestmark = OWN_NETWORK_MARKS

SPEC = "commands:\n  - sh build.sh\ncache:\n  paths: [.deps]\n  key_files: [deps.lock]\n"
# Runs what the restored cache holds, then caches this commit's hook for the next build.
BUILD_SH = 'if [ -f .deps/hook.sh ]; then sh .deps/hook.sh; else echo "no cache"; fi\nmkdir -p .deps\ncp hook.sh .deps/hook.sh\n'


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def commit(work: Path, lock: str, says: str) -> str:
    (work / ".pbft-ci.yml").write_text(SPEC)
    (work / "build.sh").write_text(BUILD_SH)
    (work / "deps.lock").write_text(lock + "\n")
    (work / "hook.sh").write_text(f'echo "cached hook says: {says}"\n')
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", f"{says} with lock {lock}")
    return git(work, "rev-parse", "HEAD")


def node_logs(base_url: str, build_id: str, config) -> dict[int, str]:
    """Every node's finished log: f+1 agreeing leaves the others still building."""
    return {node.id: finished_log(base_url, build_id, node.id) for node in config.nodes}


def built(base_url: str, answer: dict, config) -> dict[int, str]:
    """Every node's log of a build the network passed."""
    if answer.get("awaiting_approval"):
        code, answer = http_json("POST", f"{base_url}/approvals/{answer['approval_id']}/approve")
        assert code == 202, answer
    record = settled(answer["status_url"])
    assert (record["state"], record["result"]["status"]) == ("accepted", "success"), record
    return node_logs(base_url, str(record["build_id"]), config)


def test_a_fork_pull_request_never_plants_a_cache_the_branch_restores(network, tmp_path):
    forge, work = tmp_path / "forge.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(forge)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "master", str(work)], check=True)
    base = commit(work, "branch-1", "the branch")
    git(work, "push", "-q", str(forge), "master")
    config_path = forge_config(tmp_path)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"][0]["url"] = str(forge)
    data.setdefault("build", {})["cache_keep"] = 2
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    config = load_config(config_path)
    repository = config.repositories[0].name

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        code, answer = push(base_url, base, delivery=str(uuid.uuid4()))
        assert code == 202, answer
        for log in built(base_url, answer, config).values():
            assert "no cache" in log and "== cache saved key " in log and " for branch 'master' " in log, log

        # A fork's pull request, approved, pushed three times with three lock files: more than cache_keep.
        git(work, "checkout", "-q", "-b", "topic")
        for push_number in (1, 2, 3):
            head = commit(work, f"planted-{push_number}", "PLANTED BY THE PULL REQUEST")
            git(work, "push", "-q", "-f", str(forge), "HEAD:refs/pull/7/head")
            code, answer = pull_request(base_url, 7, head, source="someone/example-fork")
            assert code == 202, answer
            logs = built(base_url, answer, config)
            for log in logs.values():
                assert "== cache saved key " in log and " for pull request #7 " in log, log
                if push_number == 1:
                    # The pull request reads its base branch's cache.
                    assert "cached hook says: the branch" in log, log
                    assert "the newest of branch 'master'" in log, log

        # The branch's next commit asks for the key the pull request saved last.
        git(work, "checkout", "-q", "master")
        after = commit(work, "planted-3", "the branch again")
        git(work, "push", "-q", str(forge), "master")
        code, answer = push(base_url, after, delivery=str(uuid.uuid4()))
        assert code == 202, answer
        for log in built(base_url, answer, config).values():
            assert "cached hook says: the branch" in log and "PLANTED" not in log, log
            assert "fallback to key" in log and "the newest of branch 'master'" in log, log

    for node in config.nodes:
        caches = tmp_path / "data" / f"node-{node.id}" / "caches" / repository
        # The pull request kept cache_keep caches of its own, and the branch's were not pushed out.
        assert len(list((caches / "pull-7").glob("*.tar"))) == 2
        branch_scopes = [scope for scope in caches.iterdir() if scope.name.startswith("branch-")]
        assert len(branch_scopes) == 1 and len(list(branch_scopes[0].glob("*.tar"))) == 2
