"""Pull and merge requests: parsed from recorded forge payloads, held for approval when they
come from a fork, built by their forge ref, and reported through each forge's status API.

The payloads in tests/data/forges/ are trimmed copies of what GitHub (`pull_request`),
GitLab (`Merge Request Hook`) and Gitea (`pull_request`) send. The client runs against
the fake nodes of tests/test_client_app.py; the mirror's check of a pull request's head
runs on a real git repository.
"""

import dataclasses
import json
import sqlite3
from pathlib import Path

import git
import pytest

from client.forges import Build, Ignored
from client.intake import WebhookError
from client.records import BuildRecords
from client.tables import approvals as approvals_module
from client.tables.schema import SCHEMA_VERSION
from shared.statuses import StatusReport, status_for
from builder.workspace.gitmirror import GitError, GitMirrors
from pbft.build import Actor, Operation
from pbft.wire import MessageError, decode_struct, encode
from shared.config import RepositoryConfig
from tests.client.fake_nodes import start_client
from tests.client.forge_deliveries import DELIVERY, delivered, GITEA_SECRET, GITHUB_SECRET, GITLAB_TOKEN, encoded, gitea_headers, github_headers, gitlab_headers, parse, settled
from tests.client.status_api import TOKEN

PAYLOADS = Path(__file__).parent / "data" / "forges"
HEAD = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
BASE = "9049f1265b7d61be4a8904a9a27120d2064dab3b"  # the target's head (GitHub) or merge base (Gitea)
PUBLIC_URL = "https://ci.example.org"

REPOSITORIES = (
    RepositoryConfig("hello", "/srv/git/hello", full_name="Codertocat/Hello-World", secret=GITHUB_SECRET),
    RepositoryConfig("gitlab-test", "http://example.com/gitlabhq/gitlab-test.git", secret=GITLAB_TOKEN),
    RepositoryConfig("webhooks", "/srv/git/webhooks", full_name="gitea/webhooks", secret=GITEA_SECRET),
)


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def parsed(name: str, event: str | None = None, **changes):
    """Parse a recorded payload after `changes` (dotted paths, e.g. pull_request.number=5)."""
    data = payload(name)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = data
        for key in parents:
            target = target[key]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    body = encoded(data)
    if name.startswith("github"):
        headers = github_headers(body, event=event or "pull_request")
    elif name.startswith("gitlab"):
        headers = gitlab_headers(event=event or "Merge Request Hook")
    else:
        headers = gitea_headers(body, event=event or "pull_request")
    return parse(body, headers, REPOSITORIES)


# --- The parser, on recorded payloads ---------------------------------------------------------


def pull(repository: str, number: int, actor: Actor, *, kind: str = "pull", before: str | None = None) -> Operation:
    return Operation(repository, "master", HEAD, pull_ref=f"refs/{kind}/{number}/head", event="pull_request",
                     before=before, actor=actor)


@pytest.mark.parametrize(
    "name, event, operation, fork",
    [
        # Each asked for by the payload's sender (GitHub, Gitea) or user (GitLab).
        ("github-pull-request", None, pull("hello", 2, Actor("forge", "github:Codertocat"), before=BASE), False),
        ("github-pull-request-fork", None, pull("hello", 3, Actor("forge", "github:Octocat"), before=BASE), True),
        # A merge request hook names no base commit: its changed paths are not counted.
        ("gitlab-merge-request", None,
         pull("gitlab-test", 1, Actor("forge", "gitlab:root"), kind="merge-requests"), False),
        ("gitlab-merge-request-fork", None,
         pull("gitlab-test", 2, Actor("forge", "gitlab:root"), kind="merge-requests"), True),
        ("gitea-pull-request", None, pull("webhooks", 1, Actor("forge", "gitea:gitea"), before=BASE), False),
    ],
)
def test_a_pull_request_builds_its_head_by_the_forges_ref(name, event, operation, fork):
    assert parsed(name, event) == Build(delivered(operation, name.split("-")[0]), DELIVERY, fork=fork)


def test_new_commits_and_reopening_build_and_other_actions_do_not():
    assert isinstance(parsed("github-pull-request", action="synchronize"), Build)
    assert isinstance(parsed("github-pull-request", action="reopened"), Build)
    assert parsed("github-pull-request", action="closed") == Ignored("pull request action 'closed' is not built")
    assert parsed("github-pull-request", action="labeled") == Ignored("pull request action 'labeled' is not built")
    # Gitea sends new commits as an event of their own, with the action "synchronized".
    assert isinstance(parsed("gitea-pull-request", "pull_request_sync", action="synchronized"), Build)
    assert isinstance(parsed("gitea-pull-request", action="reopened"), Build)
    assert isinstance(parsed("gitea-pull-request", action="edited"), Ignored)


def test_a_gitlab_update_builds_only_when_it_brings_commits():
    edited = parsed("gitlab-merge-request", object_attributes__action="update")
    assert edited == Ignored("merge request updated without new commits: nothing to build")
    pushed = parsed("gitlab-merge-request", object_attributes__action="update",
                    object_attributes__oldrev="9049f1265b7d61be4a8904a9a27120d2064dab3b")
    assert isinstance(pushed, Build) and pushed.operation.pull_ref == "refs/merge-requests/1/head"
    assert isinstance(parsed("gitlab-merge-request", object_attributes__action="reopen"), Build)
    assert isinstance(parsed("gitlab-merge-request", object_attributes__action="merge"), Ignored)


def test_a_deleted_fork_counts_as_a_fork():
    gone = parsed("github-pull-request", pull_request__head__repo=None)
    assert isinstance(gone, Build) and gone.fork


@pytest.mark.parametrize(
    "name, changes, reason",
    [
        ("github-pull-request", {"number": 0, "pull_request__number": 0}, "number must be a positive integer"),
        ("github-pull-request", {"number": "2"}, "number must be a positive integer"),
        ("github-pull-request", {"number": True}, "number must be a positive integer"),
        ("github-pull-request", {"number": 10**10}, "number must be a positive integer"),
        ("gitlab-merge-request", {"object_attributes__iid": -1}, "number must be a positive integer"),
        ("github-pull-request", {"pull_request__head__sha": "HEAD"}, "commit"),
        ("github-pull-request", {"pull_request__head__sha": ...}, "commit"),
        ("github-pull-request", {"pull_request__base__ref": "--upload-pack=sh"}, "branch"),
        ("gitlab-merge-request", {"object_attributes__last_commit__id": "0d1a26e6"}, "commit"),
    ],
)
def test_a_malformed_pull_request_is_refused_with_a_reason(name, changes, reason):
    with pytest.raises(WebhookError) as caught:
        parsed(name, **changes)
    assert caught.value.status == 400 and reason in caught.value.reason


def test_a_pull_requests_operation_keeps_the_wire_form_of_a_push_without_one():
    push = Operation("hello", "main", HEAD)
    assert "pull_ref" not in encode(push)  # signatures made before pull requests still verify
    pull = Operation("hello", "main", HEAD, pull_ref="refs/merge-requests/12/head")
    assert decode_struct(Operation, encode(pull)) == pull and pull.pull_request == 12
    for bad in ("refs/heads/main", "refs/pull/0/head", "refs/pull/1/merge", "refs/pull/1/head\n"):
        with pytest.raises(MessageError):
            decode_struct(Operation, {**encode(push), "pull_ref": bad})


# --- Approvals in the records -----------------------------------------------------------------


def fork_operation(number: int, commit: str = HEAD) -> Operation:
    return Operation("hello", "master", commit, pull_ref=f"refs/pull/{number}/head")


def test_a_newer_push_replaces_the_older_wait_and_waits_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(approvals_module, "MAX_WAITING_APPROVALS", 3)
    records = BuildRecords(tmp_path / "builds.sqlite")
    first = records.approvals.hold(fork_operation(1), "d1", 1000.0)
    newer = records.approvals.hold(fork_operation(1, "b" * 40), "d2", 1001.0)
    assert records.approvals.get(first) is None
    assert records.approvals.get(newer)["commit"] == "b" * 40
    records.approvals.approved(newer, 7)
    others = [records.approvals.hold(fork_operation(number), f"d{number}", 1002.0) for number in (2, 3, 4, 5)]

    waiting = records.approvals.waiting(10)
    assert [approval["approval_id"] for approval in waiting] == [str(i) for i in reversed(others[1:])]
    assert records.approvals.get(others[0]) is None  # the oldest wait beyond the bound is forgotten
    assert records.approvals.get(newer)["build_id"] == "7"  # an approved one is not a wait
    assert records.approvals.of_delivery("hello", "d2")["approval_id"] == str(newer)
    records.close()


def test_records_of_version_1_gain_approvals_and_keep_their_builds(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    build_id = records.store.next_timestamp(0)
    records.close()
    with sqlite3.connect(path) as old:  # as version 1 left it
        old.execute("DROP TABLE approvals")
        old.execute("PRAGMA user_version = 1")

    records = BuildRecords(path)
    assert records.store.next_timestamp(0) > build_id
    approval_id = records.approvals.hold(fork_operation(9), None, 5.0)
    assert records.approvals.get(approval_id)["pull_request"] == 9
    records.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 14


# --- The client: held, approved, built, reported ---------------------------------------------


def with_forges(cluster, status_server=None, **repository_changes):
    repositories = [dataclasses.replace(repository, **repository_changes) for repository in REPOSITORIES]
    if status_server is not None:
        repositories[0] = dataclasses.replace(
            repositories[0], status_api=status_server.base_url, status_token=TOKEN)
        repositories[1] = dataclasses.replace(
            repositories[1], full_name="gitlabhq/gitlab-test", status_api=status_server.base_url + "/api/v4",
            status_token=TOKEN, status_style="gitlab")
    client = dataclasses.replace(cluster.config.clients[0], public_url=PUBLIC_URL)
    cluster.config = dataclasses.replace(cluster.config, clients=(client,), repositories=tuple(repositories))


async def deliver(client, name: str, event: str | None = None, delivery: str = DELIVERY):
    body = encoded(payload(name))
    if name.startswith("github"):
        headers = github_headers(body, event=event or "pull_request", delivery=delivery)
    else:
        headers = {**gitlab_headers(event=event or "Merge Request Hook"), "Idempotency-Key": delivery}
    response = await client.post("/webHook", data=body, headers=headers)
    return response.status, await response.json()


def sent_operations(cluster) -> list[Operation]:
    return [request.operation for _view, request in cluster.committed.values()]


async def test_a_same_repository_pull_request_is_built_at_once(cluster, aiohttp_client):
    with_forges(cluster)
    client = await start_client(aiohttp_client, cluster)

    status, answer = await deliver(client, "github-pull-request")
    assert status == 202 and "build_id" in answer
    record = await settled(client, answer["build_id"])
    assert record["state"] == "accepted" and record["commit_requested"] == HEAD
    assert sent_operations(cluster) == [delivered(pull("hello", 2, Actor("forge", "github:Codertocat"), before=BASE),
                                                  "github")]
    listed = await (await client.get("/builds")).json()
    assert listed["builds"][0]["pull_request"] == 2


async def test_a_fork_waits_for_an_approval_then_builds_once(cluster, aiohttp_client):
    with_forges(cluster)
    client = await start_client(aiohttp_client, cluster)

    status, held = await deliver(client, "github-pull-request-fork")
    assert status == 202 and held["awaiting_approval"] is True
    approval_id = held["approval_id"]
    assert held["approval_url"] == f"{PUBLIC_URL}/approvals/{approval_id}"
    assert sent_operations(cluster) == []  # nothing of a fork's reaches a node unapproved
    assert (await deliver(client, "github-pull-request-fork")) == (202, {**held, "redelivery": True})

    waiting = await (await client.get("/approvals")).json()
    assert [(a["approval_id"], a["pull_request"], a["commit"], a["build_id"]) for a in waiting["approvals"]] == [
        (approval_id, 3, HEAD, None)]

    response = await client.post(f"/approvals/{approval_id}/approve")
    assert response.status == 202
    started = await response.json()
    assert started["already_approved"] is False
    record = await settled(client, started["build_id"])
    assert record["state"] == "accepted" and record["pull_request"] == 3
    # Asked for by whoever approved it (the client's machine), not by the fork's sender.
    # The approved build still answers the delivery: it builds once, whichever client holds it.
    assert sent_operations(cluster) == [delivered(pull("hello", 3, Actor("machine", "ci"), before=BASE), "github")]

    again = await (await client.post(f"/approvals/{approval_id}/approve")).json()
    assert again == {**started, "already_approved": True}
    assert (await (await client.get("/approvals")).json())["approvals"] == []
    assert (await (await client.get(f"/approvals/{approval_id}")).json())["build_id"] == started["build_id"]
    # The forge's redelivery of the held delivery now finds the approval that was given.
    assert (await deliver(client, "github-pull-request-fork"))[1]["approval_id"] == approval_id
    assert len(sent_operations(cluster)) == 1

    metrics = await (await client.get("/metrics")).text()
    assert "pbft_client_held_for_approval_total 1.0" in metrics


async def test_a_repository_that_builds_forks_builds_them_at_once(cluster, aiohttp_client):
    with_forges(cluster, build_forks=True)
    client = await start_client(aiohttp_client, cluster)

    status, answer = await deliver(client, "gitlab-merge-request-fork")
    assert status == 202 and "build_id" in answer
    await settled(client, answer["build_id"])
    assert [operation.pull_ref for operation in sent_operations(cluster)] == ["refs/merge-requests/2/head"]


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/approvals/99", 404), ("POST", "/approvals/99/approve", 404), ("GET", "/approvals/x", 400),
     ("POST", "/approvals/0/approve", 400), ("GET", "/approvals?limit=0", 400)],
)
async def test_approval_calls_with_bad_ids_are_refused(cluster, aiohttp_client, method, path, status):
    with_forges(cluster)
    client = await start_client(aiohttp_client, cluster)
    response = await client.request(method, path)
    assert response.status == status and (await response.json())["error"]


async def test_approving_needs_the_clients_token(cluster, aiohttp_client):
    with_forges(cluster)
    token = "c0ffee" * 8
    client_config = dataclasses.replace(cluster.config.clients[0], token=token, plain_without_token=False)
    cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
    client = await start_client(aiohttp_client, cluster)
    _, held = await deliver(client, "github-pull-request-fork")  # a forge delivery needs no token

    refused = await client.post(f"/approvals/{held['approval_id']}/approve")
    assert refused.status == 401
    assert (await client.get("/approvals")).status == 401
    assert sent_operations(cluster) == []
    approved = await client.post(f"/approvals/{held['approval_id']}/approve",
                                 headers={"Authorization": f"Bearer {token}"})
    assert approved.status == 202


async def test_statuses_reach_github_and_gitlab_in_their_own_shapes(
    cluster, status_server, aiohttp_client
):
    with_forges(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)

    _, held = await deliver(client, "github-pull-request-fork")
    await status_server.wait_for_calls(1)
    [waiting] = status_server.calls
    assert waiting.path == f"/repos/Codertocat/Hello-World/statuses/{HEAD}"
    assert waiting.body["state"] == "pending" and waiting.body["context"] == "pbft-ci"
    assert waiting.body["target_url"] == f"{PUBLIC_URL}/approvals/{held['approval_id']}"
    assert waiting.body["description"].startswith("waiting for approval")

    _, started = await deliver(client, "gitlab-merge-request", delivery="f00dfeed-0000-4000-8000-000000000002")
    await settled(client, started["build_id"])
    await status_server.wait_for_calls(3)
    gitlab = status_server.calls[1:]
    assert [call.path for call in gitlab] == [f"/api/v4/projects/gitlabhq%2Fgitlab-test/statuses/{HEAD}"] * 2
    assert [call.body["state"] for call in gitlab] == ["pending", "success"]
    for call in gitlab:
        assert call.headers["PRIVATE-TOKEN"] == TOKEN and "Authorization" not in call.headers
        assert set(call.body) == {"state", "name", "description", "target_url"} and call.body["name"] == "pbft-ci"
    assert [call.body["target_url"] for call in gitlab] == [
        f"{PUBLIC_URL}/builds/{started['build_id']}", f"{PUBLIC_URL}/builds/{started['build_id']}/certificate"]


@pytest.mark.parametrize("style, skipped_passes, states", [
    # GitLab has one failed state for failures and errors, and a skipped state of its own, which
    # its "Pipelines must succeed" does not count as passed unless a project says so.
    ("gitlab", False, ["pending", "success", "failed", "failed", "skipped", "canceled"]),
    ("gitlab", True, ["pending", "success", "failed", "failed", "skipped", "canceled"]),
    # GitHub and Gitea have none: a skipped build stays pending, so that a required check stays
    # expected, unless the repository says that a skip passes.
    ("github", False, ["pending", "success", "failure", "error", "pending", "error"]),
    ("github", True, ["pending", "success", "failure", "error", "success", "error"]),
])
def test_each_forge_gets_the_states_it_knows(style, skipped_passes, states):
    repository = RepositoryConfig("example", "https://forge.example/octo/example.git", full_name="octo/example",
                                  status_api="https://forge.example/api", status_style=style,
                                  skipped_passes=skipped_passes)

    def state(value: str) -> str:
        status = status_for(repository, "a" * 40, StatusReport(value, context="c", description="d", target_url="x",
                                                                build_id="1"), token="t")
        return status.body()["state"]

    assert [state(value) for value in ("pending", "success", "failure", "error", "skipped", "cancelled")] == states


# --- The mirror: a pinned commit must be the pull request's head -----------------------------


@pytest.fixture
def forge_repository(tmp_path) -> tuple[Path, str, str]:
    """A repository as a forge keeps one: `main`, and a pull request's head only under refs/pull/7/head."""
    path = tmp_path / "forge"
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Forge").set_value("user", "email", "forge@example.org")
    (path / "README").write_text("main\n")
    repo.index.add(["README"])
    base = repo.index.commit("base").hexsha
    repo.git.checkout("-b", "contributor")
    (path / "README").write_text("changed by a pull request\n")
    repo.index.add(["README"])
    head = repo.index.commit("change").hexsha
    repo.git.update_ref("refs/pull/7/head", head)
    repo.git.checkout("main")
    repo.git.branch("-D", "contributor")  # a fork's branch is not in the target repository
    return path, base, head


def test_the_mirror_builds_a_pull_requests_head_only_while_it_is_the_head(forge_repository, tmp_path):
    path, base, head = forge_repository
    mirrors = GitMirrors(tmp_path / "mirrors")
    resolve = dict(name="forge", url=str(path), branch="main")

    assert mirrors.resolve(**resolve, commit=head, pull_ref="refs/pull/7/head")[1] == head
    assert mirrors.resolve(**resolve, commit=None, pull_ref="refs/pull/7/head")[1] == head
    with pytest.raises(GitError, match=f"commit {base} is not the head of refs/pull/7/head"):
        mirrors.resolve(**resolve, commit=base, pull_ref="refs/pull/7/head")
    with pytest.raises(GitError, match="pull request ref not found: refs/pull/8/head"):
        mirrors.resolve(**resolve, commit=head, pull_ref="refs/pull/8/head")
    # Without the pull request's ref, its head is on no branch and is refused as before.
    with pytest.raises(GitError):
        mirrors.resolve(**resolve, commit=head)

    # A new push to the pull request moves the ref: the old pin is refused at the next fetch.
    git.Repo(path).git.update_ref("refs/pull/7/head", base)
    with pytest.raises(GitError, match=f"commit {head} is not the head of refs/pull/7/head"):
        mirrors.resolve(**resolve, commit=head, pull_ref="refs/pull/7/head")
