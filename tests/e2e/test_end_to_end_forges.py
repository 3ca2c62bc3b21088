"""End to end: what a team wires up on day one, on the README's network with four real nodes,
the client and Docker, fed recorded GitHub, GitLab and Gitea deliveries (tests/client/data/forges,
their commits replaced by a local repository's), and a fake forge that records the commit
statuses it gets:

- a same-repository pull request builds its head, and its status goes to the head commit;
- a fork's pull request waits for an approval, then builds;
- a pull request's new head cancels the build of its old one, still running;
- pushes: `[skip ci]`, a branch `when: branch` leaves out and a change `when: path`
  leaves out end `skipped`, `pending` to GitHub (nothing was built), a change it names
  builds; a repository with `skipped_passes` gets `success` for a skipped push;
- pull requests: `[skip ci]` in the head's message and `when: {event: push}` in the head's
  spec do not skip a failing pull request (its status is `failure`, never `success`); the
  base branch's `when: path` skips a docs-only one, naming that spec;
- a GitLab merge request's statuses go through GitLab's own API, a Gitea pull request's
  through the GitHub-shaped one Gitea speaks.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import (
    GITEA_SECRET, GITHUB_PUSH, GITHUB_SECRET, GITLAB_TOKEN, encoded, gitea_headers, github_headers, gitlab_headers,
)
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy
from tests.support.status_server import StatusServer

pytestmark = OWN_NETWORK_MARKS

PAYLOADS = Path(__file__).parents[1] / "client" / "data" / "forges"
STATUS_TOKEN = "forge-status-token"
SPEC = """commands:
  - sh build.sh
when:
  event: [push, pull_request]
  branch: [master, "release/*"]
  path: {exclude: ["docs/**"]}
"""
BUILD = "echo built\nif [ -f slow ]; then sleep 120; fi\n"


class Forge:
    """A local repository as a forge keeps one: branches, and pull requests' heads under their refs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "master")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str], message: str, branch: str = "master", parent: str | None = None) -> str:
        if parent is not None or self.git("rev-list", "--all", "-n", "1"):  # else: the first commit
            self.git("checkout", "-q", "-B", branch, parent or branch)
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def pull(self, ref: str, files: dict[str, str], message: str, base: str) -> str:
        """A pull request's head, on top of `base`, kept only under `ref` (as forges keep it)."""
        head = self.commit(files, message, branch="pr-scratch", parent=base)
        self.git("update-ref", ref, head)
        self.git("checkout", "-q", "master")
        self.git("branch", "-q", "-D", "pr-scratch")
        return head


def recorded(name: str, **changes) -> dict:
    """A recorded delivery with `changes` at dotted paths (pull_request.head.sha=...)."""
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value
    return data


def verdict_of(base_url: str, build_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        code, record = http_json("GET", f"{base_url}/builds/{build_id}")
        if code == 200 and record["state"] != "pending":
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def test_pull_requests_triggers_and_statuses_of_three_forges(network, tmp_path):
    forge = Forge(tmp_path / "forge")
    base = forge.commit({".pbft-ci.yml": SPEC, "build.sh": BUILD, "src/app.txt": "1\n"}, "start")
    statuses = StatusServer(STATUS_TOKEN).start()
    config_path = example_copy(tmp_path, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    common = {"url": str(forge.path), "status_api": statuses.url, "status_token": STATUS_TOKEN}
    data["repositories"] = [
        {"name": "hello", "full_name": "Codertocat/Hello-World", "secret": GITHUB_SECRET, **common},
        {"name": "gitlab-test", "full_name": "gitlabhq/gitlab-test", "secret": GITLAB_TOKEN, **common,
         "status_api": statuses.url + "/api/v4", "status_style": "gitlab"},
        {"name": "webhooks", "full_name": "gitea/webhooks", "secret": GITEA_SECRET, **common},
        {"name": "opted-in", "full_name": "Codertocat/Opted-In", "secret": GITHUB_SECRET, **common,
         "skipped_passes": True},
    ]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    config = load_config(config_path)
    deliveries = iter(range(1, 1000))

    def deliver(forge_name: str, payload: dict, event: str) -> dict:
        body = encoded(payload)
        delivery = f"e2e-{next(deliveries)}"
        headers = {"github": lambda: github_headers(body, event=event, delivery=delivery),
                   "gitlab": lambda: gitlab_headers(event=event, delivery=delivery),
                   "gitea": lambda: gitea_headers(body, event=event, delivery=delivery)}[forge_name]()
        code, answer = http_json("POST", f"{base_url}/webHook", body, headers)
        assert code == 202, answer
        return answer

    def github_pull(number: int, head: str, action: str = "opened", fork: bool = False) -> dict:
        name = "github-pull-request-fork" if fork else "github-pull-request"
        return recorded(name, action=action, number=number, **{
            "pull_request.number": number, "pull_request.head.sha": head, "pull_request.base.sha": base,
            "pull_request.base.ref": "master"})

    def push(branch: str, before: str, after: str, full_name: str = "Codertocat/Hello-World") -> dict:
        payload = copy.deepcopy(GITHUB_PUSH)
        payload.update({"ref": f"refs/heads/{branch}", "before": before, "after": after,
                        "head_commit": {**GITHUB_PUSH["head_commit"], "id": after}, "commits": []})
        payload["repository"]["full_name"] = full_name
        return payload

    def never_passed(path: str) -> None:
        assert not [call for call in statuses.calls if call.path == path and call.state == "success"], path

    try:
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            # A same-repository pull request, whose first head runs long; its new head cancels it.
            slow_head = forge.pull("refs/pull/2/head", {"slow": "1\n", "src/app.txt": "2\n"}, "slow", base)
            first = deliver("github", github_pull(2, slow_head), "pull_request")["build_id"]
            deadline = time.monotonic() + 60
            while http_json("GET", f"{base_url}/builds/{first}")[1]["progress"] != "running":
                assert time.monotonic() < deadline, "the pull request's first head never ran"
                time.sleep(0.2)
            new_head = forge.pull("refs/pull/2/head", {"src/app.txt": "3\n"}, "fixed", base)
            second = deliver("github", github_pull(2, new_head, "synchronize"), "pull_request")["build_id"]
            assert verdict_of(base_url, first)["result"]["status"] == "cancelled"
            assert verdict_of(base_url, second)["result"]["status"] == "success"
            assert statuses.final(f"/repos/Codertocat/Hello-World/statuses/{new_head}").state == "success"
            cancelled = statuses.final(f"/repos/Codertocat/Hello-World/statuses/{slow_head}")
            assert cancelled.state == "error" and cancelled.description.startswith("build cancelled"), cancelled

            # A fork's pull request: held, then approved, then built.
            fork_head = forge.pull("refs/pull/3/head", {"src/app.txt": "fork\n"}, "from a fork", base)
            held = deliver("github", github_pull(3, fork_head, fork=True), "pull_request")
            assert held["awaiting_approval"] is True, held
            code, started = http_json("POST", f"{base_url}/approvals/{held['approval_id']}/approve")
            assert code == 202, started
            assert verdict_of(base_url, started["build_id"])["result"]["status"] == "success"
            fork_statuses = [call.state for call in statuses.calls
                             if call.path == f"/repos/Codertocat/Hello-World/statuses/{fork_head}"]
            assert fork_statuses[0] == "pending" and statuses.final(  # "waiting for approval", then the verdict
                f"/repos/Codertocat/Hello-World/statuses/{fork_head}").state == "success", fork_statuses

            # Pushes the spec's `when:` and a commit's `[skip ci]` decide on.
            docs = forge.commit({"docs/guide.md": "words\n"}, "docs only")
            code_change = forge.commit({"src/app.txt": "4\n"}, "code")
            marked = forge.commit({"src/app.txt": "5\n"}, "tidy [skip ci]")
            other = forge.commit({"src/app.txt": "6\n"}, "elsewhere", branch="feature/x", parent=marked)
            expected = {
                docs: ("skipped", "when: none of the 1 changed path matches anything but docs/**"),
                code_change: ("success", ""),
                marked: ("skipped", "[skip ci] in the commit message"),
                other: ("skipped", "when: branch feature/x does not match master, release/*"),
            }
            befores = {docs: base, code_change: docs, marked: code_change, other: marked}
            for commit, (status, reason) in expected.items():
                branch = "feature/x" if commit == other else "master"
                build_id = deliver("github", push(branch, befores[commit], commit), "push")["build_id"]
                result = verdict_of(base_url, build_id)["result"]
                assert (result["status"], result["reason"] if status == "skipped" else "") == (status, reason), result
                path = f"/repos/Codertocat/Hello-World/statuses/{commit}"
                if status == "skipped":
                    # Nothing was built: the required check stays expected.
                    posted = statuses.said(path, f"build skipped, nothing built: {reason}")
                    assert posted.state == "pending", posted
                    never_passed(path)
                else:
                    assert statuses.final(path).state == "success"

            # A repository that opted in passes a required check with a skipped push.
            again = forge.commit({"src/app.txt": "7\n"}, "again [skip ci]")
            build_id = deliver("github", push("master", marked, again, "Codertocat/Opted-In"), "push")["build_id"]
            assert verdict_of(base_url, build_id)["result"]["status"] == "skipped"
            posted = statuses.final(f"/repos/Codertocat/Opted-In/statuses/{again}")
            assert posted.state == "success" and posted.description.startswith("build skipped, nothing built: "), posted

            # Pull requests: what their author writes does not skip them; the base branch's spec may.
            marked_head = forge.pull("refs/pull/4/head", {"build.sh": "exit 3\n"}, "break it [skip ci]", base)
            own_when = forge.pull("refs/pull/5/head", {"build.sh": "exit 3\n", ".pbft-ci.yml": (
                "commands: [sh build.sh]\nwhen: {event: push}\n")}, "break it", base)
            docs_only = forge.pull("refs/pull/6/head", {"docs/more.md": "words\n"}, "docs", base)
            for number, head in ((4, marked_head), (5, own_when)):
                result = verdict_of(base_url, deliver("github", github_pull(number, head), "pull_request")["build_id"])
                assert (result["result"]["status"], result["result"]["exit_code"]) == ("failure", 3), result
                path = f"/repos/Codertocat/Hello-World/statuses/{head}"
                assert statuses.final(path).state == "failure"
                never_passed(path)
            result = verdict_of(base_url, deliver("github", github_pull(6, docs_only), "pull_request")["build_id"])
            reason = ("when: none of the 1 changed path matches anything but docs/** "
                      f"(the base branch's spec at {base[:12]})")
            assert (result["result"]["status"], result["result"]["reason"]) == ("skipped", reason), result
            path = f"/repos/Codertocat/Hello-World/statuses/{docs_only}"
            assert statuses.said(path, "build skipped, nothing built: when: none").state == "pending"
            never_passed(path)

            # GitLab's merge request, with its statuses through GitLab's API; Gitea's pull request.
            gitlab_head = forge.pull("refs/merge-requests/1/head", {"src/app.txt": "gl\n"}, "gitlab", base)
            merge = recorded("gitlab-merge-request", **{"object_attributes.last_commit.id": gitlab_head,
                                                        "object_attributes.target_branch": "master"})
            build_id = deliver("gitlab", merge, "Merge Request Hook")["build_id"]
            assert verdict_of(base_url, build_id)["result"]["status"] == "success"
            assert statuses.final(f"/api/v4/projects/gitlabhq/gitlab-test/statuses/{gitlab_head}").state == "success"

            gitea_head = forge.pull("refs/pull/1/head", {"src/app.txt": "gitea\n"}, "gitea", base)
            pull = recorded("gitea-pull-request", **{"pull_request.head.sha": gitea_head, "pull_request.merge_base": base,
                                                     "pull_request.base.ref": "master"})
            build_id = deliver("gitea", pull, "pull_request")["build_id"]
            assert verdict_of(base_url, build_id)["result"]["status"] == "success"
            assert statuses.final(f"/repos/gitea/webhooks/statuses/{gitea_head}").state == "success"
            assert all(call.authorized for call in statuses.calls), statuses.calls
    finally:
        statuses.stop()
