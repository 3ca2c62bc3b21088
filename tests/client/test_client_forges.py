"""Forge webhooks: GitHub, GitLab and Gitea/Forgejo pushes on `POST /webHook`.

The payloads are trimmed copies of what each forge sends (the fields this
client reads, plus enough of the rest to keep their shape). The pure parser
is tested directly, the aiohttp handler against the fake nodes of
tests/test_client_app.py, and both with hypothesis on random and mutated input.
"""

import asyncio
import copy
import dataclasses
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.deliveries import WebhookSettings
from client.forges import (
    Build,
    Ignored,
    Pong,
    forge_of,
    github_signature,
    hmac_sha256_hex,
    parse_delivery,
)
from client.intake import WebhookError
from client.records import BuildRecords, records_path
from pbft.build import Actor, Operation
from shared.refs import SHELL_METACHARACTERS, check_branch_name, check_commit_sha
from tests.client.fake_nodes import CLIENT, N, honest_result, start_client
from tests.client.forge_deliveries import BEFORE, DELIVERY, GITEA_PUSH, GITHUB_COMMIT, GITHUB_DELETION, GITHUB_PING, GITHUB_PUSH, GITHUB_PUSH_WITHOUT_HEAD_COMMIT, GITHUB_REPOSITORY, GITHUB_SECRET, GITHUB_TAG_PUSH, GITLAB_PUSH, OPEN_PUSH, OPEN_REPOSITORY, REPOSITORIES, SECRETS, SHA, TAG_OBJECT, ZERO, delivered, encoded, gitea_headers, github_headers, gitlab_headers, parse, settled


def refused(body: bytes, headers: dict) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        parse(body, headers)
    return caught.value


# --- Signatures and recognition -------------------------------------------------------------


def test_github_published_signature_vector():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    assert github_signature(GITHUB_SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize(
    "headers, forge",
    [
        ({"X-GitHub-Event": "push"}, "github"),
        ({"x-github-event": "push"}, "github"),
        ({"X-Gitlab-Event": "Push Hook"}, "gitlab"),
        ({"X-Gitea-Event": "push", "X-GitHub-Event": "push"}, "gitea"),
        ({"X-Forgejo-Event": "push", "X-Gitea-Event": "push", "X-GitHub-Event": "push"}, "gitea"),
        ({"Content-Type": "application/json"}, None),
    ],
)
def test_forge_recognised_by_headers(headers, forge):
    recognised = forge_of(headers)
    assert (recognised and recognised.name) == forge


# --- The parser on real payload shapes ------------------------------------------------------


@pytest.mark.parametrize(
    "payload, operation",
    [
        (GITHUB_PUSH, Operation("hello", "main", SHA, before=BEFORE, actor=Actor("forge", "github:Codertocat"))),
        (GITHUB_PUSH_WITHOUT_HEAD_COMMIT,
         Operation("hello", "release/1.0", SHA, actor=Actor("forge", "github:Codertocat"))),
    ],
)
def test_github_push_builds_the_pushed_commit(payload, operation):
    body = encoded(payload)
    assert parse(body, github_headers(body)) == Build(delivered(operation, "github"), DELIVERY)


def test_github_form_encoded_push():
    body = ("payload=" + urllib.parse.quote(json.dumps(GITHUB_PUSH))).encode()
    headers = {**github_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    operation = Operation("hello", "main", SHA, before=BEFORE, actor=Actor("forge", "github:Codertocat"))
    assert parse(body, headers) == Build(delivered(operation, "github"), DELIVERY)


def test_github_ping_after_signature_check():
    body = encoded(GITHUB_PING)
    assert parse(body, github_headers(body, event="ping")) == Pong("hello")
    assert refused(body, github_headers(body, event="ping", secret="wrong")).status == 401


def test_github_branch_deletion_is_acknowledged_not_built():
    body = encoded(GITHUB_DELETION)
    assert parse(body, github_headers(body)) == Ignored("branch deleted: nothing to build")
    # `after` all zeros alone means the same (Gitea and GitLab send no `deleted`).
    body = encoded({**GITHUB_DELETION, "deleted": False})
    assert parse(body, github_headers(body)) == Ignored("branch deleted: nothing to build")


def test_tag_push_is_built_only_when_the_repository_builds_tags():
    body = encoded(GITHUB_TAG_PUSH)
    ignored = parse(body, github_headers(body))
    assert isinstance(ignored, Ignored) and "build_tags" in ignored.reason
    body = encoded({**GITHUB_TAG_PUSH, "repository": OPEN_REPOSITORY})
    operation = Operation("open", "v1.0.0", TAG_OBJECT, event="tag", actor=Actor("forge", "github:Codertocat"))
    assert parse(body, github_headers(body, secret=None)) == Build(delivered(operation, "github"), DELIVERY)


def test_other_github_events_are_ignored_with_a_reason():
    body = encoded({"action": "opened", "repository": GITHUB_REPOSITORY})
    ignored = parse(body, github_headers(body, event="issues"))
    assert ignored == Ignored("github event 'issues' is not built")


def test_gitlab_push_uses_checkout_sha_and_the_token():
    body = encoded(GITLAB_PUSH)
    operation = Operation("diaspora", "master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                          before=GITLAB_PUSH["before"], actor=Actor("forge", "gitlab:jsmith"))
    assert parse(body, gitlab_headers()) == Build(delivered(operation, "gitlab"), DELIVERY)
    assert refused(body, gitlab_headers(token="glpat-guess")).status == 401
    assert refused(body, gitlab_headers(token=None)).status == 401


def test_gitlab_branch_deletion_and_tag_push():
    body = encoded({**GITLAB_PUSH, "after": ZERO, "checkout_sha": None})
    assert parse(body, gitlab_headers()) == Ignored("branch deleted: nothing to build")
    body = encoded({**GITLAB_PUSH, "object_kind": "tag_push", "ref": "refs/tags/v1.0.0"})
    ignored = parse(body, gitlab_headers(event="Tag Push Hook"))
    assert isinstance(ignored, Ignored) and "build_tags" in ignored.reason


@pytest.mark.parametrize("prefix", ["Gitea", "Forgejo"])
def test_gitea_push_with_bare_hex_signature(prefix):
    body = encoded(GITEA_PUSH)
    operation = Operation("webhooks", "develop", "bffeb74224043ba2feb48d137756c8a9331c449a",
                          before=GITEA_PUSH["before"], actor=Actor("forge", "gitea:gitea"))
    assert parse(body, gitea_headers(body, prefix=prefix)) == Build(delivered(operation, "gitea"), DELIVERY)
    assert refused(body, gitea_headers(body, secret="wrong", prefix=prefix)).status == 401


def test_repository_without_secret_accepts_unsigned_deliveries():
    body = encoded(OPEN_PUSH)
    operation = Operation("open", "main", SHA, before=BEFORE, actor=Actor("forge", "github:Codertocat"))
    assert parse(body, github_headers(body, secret=None)) == Build(delivered(operation, "github"), DELIVERY)


def test_repository_matched_by_clone_url_when_full_name_differs():
    repository = {**OPEN_REPOSITORY, "full_name": "renamed/open", "clone_url": "https://GitHub.com/someone/open/"}
    body = encoded({**GITHUB_PUSH, "repository": repository})
    assert parse(body, github_headers(body, secret=None)).operation.repository == "open"


@pytest.mark.parametrize(
    "payload, headers, status, reason",
    [
        (GITHUB_PUSH, {"X-Hub-Signature-256": None}, 401, "missing"),
        (GITHUB_PUSH, {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "does not match"),
        (GITHUB_PUSH, {"X-Hub-Signature-256": "sha1=0123"}, 401, "does not match"),
        (GITHUB_PUSH, {"X-Hub-Signature-256": "sha256=caf\u00e9\udcff"}, 401, "does not match"),
        (GITHUB_PUSH, {"Content-Type": "text/plain"}, 415, "content type"),
        (GITHUB_PUSH, {"Content-Type": None}, 415, "content type"),
        (GITHUB_PUSH, {"X-GitHub-Delivery": "two words"}, 400, "delivery id"),
        ({**GITHUB_PUSH, "repository": {**GITHUB_REPOSITORY, "full_name": "evil/repo", "clone_url": "x",
                                        "html_url": "y", "ssh_url": "z", "git_url": "w", "url": "v"}},
         {}, 403, "not configured"),
        ({**GITHUB_PUSH, "repository": "Codertocat/Hello-World"}, {}, 400, "no repository"),
        ({**GITHUB_PUSH, "ref": None}, {}, 400, "ref"),
        ({**GITHUB_PUSH, "ref": "refs/heads/"}, {}, 400, "empty"),
        ({**GITHUB_PUSH, "ref": "refs/heads/-rf"}, {}, 400, "starts with '-'"),
        ({**GITHUB_PUSH, "ref": "refs/heads/a..b"}, {}, 400, "'..'"),
        ({**GITHUB_PUSH, "ref": "refs/heads/a\x07b"}, {}, 400, "control"),
        ({**GITHUB_PUSH, "ref": "refs/heads/x;reboot"}, {}, 400, "shell metacharacter ';'"),
        ({**GITHUB_PUSH, "ref": "refs/heads/$(id)"}, {}, 400, "shell metacharacter '$'"),
        ({**GITHUB_PUSH, "ref": "refs/heads/a|b"}, {}, 400, "shell metacharacter '|'"),
        ({**GITHUB_PUSH, "ref": "refs/heads/`id`"}, {}, 400, "shell metacharacter '`'"),
        ({**GITHUB_PUSH, "after": SHA.upper()}, {}, 400, "hex"),
        ({**GITHUB_PUSH, "after": "HEAD"}, {}, 400, "hex"),
        ({**GITHUB_PUSH, "after": None}, {}, 400, "hex"),
    ],
)
def test_bad_deliveries_are_refused_with_a_reason(payload, headers, status, reason):
    body = encoded(payload)
    merged = {**github_headers(body), **headers}
    error = refused(body, {name: value for name, value in merged.items() if value is not None})
    assert (error.status, reason in error.reason) == (status, True), error.reason


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"\xff\xfe{}", b"[1, 2]", b"[" * 100_000, b"payload=%7B%7D"]
)
def test_malformed_bodies_are_400(body):
    assert refused(body, github_headers(body)).status == 400


def test_unknown_refs_are_ignored():
    body = encoded({**GITHUB_PUSH, "ref": "refs/pull/1/head"})
    assert isinstance(parse(body, github_headers(body)), Ignored)


def test_status_url_base(cluster):
    config = cluster.config
    assert WebhookSettings.from_config(config, CLIENT).status_base_url == "http://127.0.0.1:1"
    client = dataclasses.replace(config.clients[0], host="::1", port=8080)
    assert WebhookSettings.from_config(dataclasses.replace(config, clients=(client,)), CLIENT).status_base_url == (
        "http://[::1]:8080"
    )
    client = dataclasses.replace(client, public_url="https://ci.example.org/")
    assert WebhookSettings.from_config(dataclasses.replace(config, clients=(client,)), CLIENT).status_base_url == (
        "https://ci.example.org"
    )


# --- Property tests of the parser ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Values a mutation plants where they might get past one check and trip the next.
tricky_values = st.sampled_from(
    [ZERO, SHA, SHA.upper(), "refs/heads/", "refs/heads/a;b", "refs/heads/-x", "refs/tags/v1", "refs/heads/a..b",
     "refs/heads/\u00e9", "Codertocat/Hello-World", "someone/open", "http://example.com/mike/diaspora.git",
     True, False, None, "", [], {}]
)
# Each real payload with the forge and event it comes with.
PAYLOADS = [
    ("github", "push", GITHUB_PUSH), ("github", "push", GITHUB_PUSH_WITHOUT_HEAD_COMMIT),
    ("github", "push", GITHUB_DELETION), ("github", "push", GITHUB_TAG_PUSH), ("github", "ping", GITHUB_PING),
    ("github", "push", OPEN_PUSH), ("gitlab", "Push Hook", GITLAB_PUSH), ("gitea", "push", GITEA_PUSH),
]
HEADER_NAMES = ["X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256", "X-Gitlab-Event", "X-Gitlab-Token",
                "Idempotency-Key", "X-Gitea-Event", "X-Gitea-Signature", "X-Gitea-Delivery", "X-Forgejo-Event",
                "X-Forgejo-Signature", "Content-Type"]
EVENTS = ["push", "ping", "Push Hook", "Tag Push Hook", "issues", ""]


def _mutate(draw, payload: dict) -> None:
    """Delete a key or replace a value somewhere in `payload`."""
    node = payload
    while True:
        key = draw(st.sampled_from(sorted(node)))
        if isinstance(node[key], dict) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        action = draw(st.integers(0, 3))
        if action == 0:
            del node[key]
        else:
            node[key] = draw(tricky_values if action == 1 else json_values)
        return


@st.composite
def mutated_deliveries(draw) -> tuple[bytes, dict]:
    """A real payload, mutated a few times, with headers mostly right for it so that mutations get deep."""
    forge, event, payload = draw(st.sampled_from(PAYLOADS))
    payload = copy.deepcopy(payload)
    for _ in range(draw(st.integers(0, 3))):
        if payload:
            _mutate(draw, payload)
    body = encoded(payload)
    return body, draw(forge_headers(body, forge, event))


@st.composite
def forge_headers(draw, body: bytes, forge: str | None = None, event: str | None = None) -> dict:
    """Headers of a forge, signed right, wrong or not at all, with some removed and random extras."""
    # The given forge and event, and the forge's own secret, are drawn most of the time.
    forge = draw(st.sampled_from([forge] * 6 + sorted(SECRETS) if forge else sorted(SECRETS)))
    event = draw(st.sampled_from([event] * 6 + EVENTS if event else EVENTS))
    secret = draw(st.sampled_from([SECRETS[forge]] * 4 + [*SECRETS.values(), "wrong"]))
    if forge == "github":
        headers = github_headers(body, event=event, secret=secret)
    elif forge == "gitlab":
        headers = gitlab_headers(token=secret, event=event)
    else:
        headers = gitea_headers(body, secret=secret, prefix=draw(st.sampled_from(["Gitea", "Forgejo"])))
    for name in draw(st.lists(st.sampled_from(sorted(headers)), max_size=2)):
        headers.pop(name, None)
    extras = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(max_size=40), max_size=2))
    return {**headers, **extras}


def _parses_or_refuses(body: bytes, headers: dict) -> None:
    forge = forge_of(headers)
    if forge is None:
        return
    try:
        delivery = parse_delivery(forge, body, headers, REPOSITORIES)
    except WebhookError as error:
        assert 400 <= error.status < 500 and error.reason
        event(f"refused {error.status}")  # --hypothesis-show-statistics shows how deep inputs got
        return
    event(type(delivery).__name__)
    if isinstance(delivery, Build):
        operation = delivery.operation
        check_branch_name(operation.branch)
        check_commit_sha(operation.commit)
        assert not SHELL_METACHARACTERS.intersection(operation.branch)
        repository = next(repo for repo in REPOSITORIES if repo.name == operation.repository)
        # Nothing is built for a repository with a secret without its signature.
        if repository.secret:
            assert _signed_with(repository.secret, forge.name, body, headers)


def _signed_with(secret: str, forge: str, body: bytes, headers: dict) -> bool:
    lower = {name.lower(): value for name, value in headers.items()}
    return {
        "github": lower.get("x-hub-signature-256") == github_signature(secret, body),
        "gitlab": lower.get("x-gitlab-token") == secret,
        "gitea": hmac_sha256_hex(secret, body) in (lower.get("x-forgejo-signature"), lower.get("x-gitea-signature")),
    }[forge]


@settings(max_examples=500)
@given(mutated_deliveries())
def test_mutated_real_payloads_parse_or_are_refused(delivery):
    _parses_or_refuses(*delivery)


@settings(max_examples=300)
@given(st.data(), st.one_of(st.binary(max_size=300), json_values.map(encoded)))
def test_random_bodies_parse_or_are_refused(data, body):
    _parses_or_refuses(body, data.draw(forge_headers(body)))


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=20), st.text(max_size=80), max_size=6),
       st.binary(max_size=200))
def test_random_headers_parse_or_are_refused(headers, body):
    _parses_or_refuses(body, headers)


# --- The handler, against fake nodes --------------------------------------------------------

PUBLIC_URL = "https://ci.example.org"


@pytest.fixture
def forge_cluster(cluster):
    """The fake network of test_client_app, with the forge repositories, a public URL and a 64 KiB body cap."""
    client = dataclasses.replace(cluster.config.clients[0], public_url=PUBLIC_URL, max_body_bytes=65536)
    cluster.config = dataclasses.replace(cluster.config, clients=(client,), repositories=REPOSITORIES)
    return cluster


@pytest.fixture
async def forge_client(forge_cluster, aiohttp_client):
    return await start_client(aiohttp_client, forge_cluster)


async def deliver(client, payload, headers=None, **header_changes):
    body = encoded(payload)
    headers = headers or github_headers(body, **header_changes)
    response = await client.post("/webHook", data=body, headers=headers)
    return response.status, await response.json()


async def test_signed_push_gets_202_then_the_verdict_at_its_status_url(forge_cluster, forge_client):
    status, answer = await deliver(forge_client, GITHUB_PUSH)

    assert status == 202
    assert answer["status_url"] == f"{PUBLIC_URL}/builds/{answer['build_id']}"
    path = urllib.parse.urlsplit(answer["status_url"]).path
    record = await settled(forge_client, path.removeprefix("/builds/"))
    assert record["state"] == "accepted"
    assert (record["repository"], record["branch"], record["commit_requested"]) == ("hello", "main", SHA)
    assert record["result"]["commit"] == honest_result("main").commit
    assert len(record["agreed_by"]) >= 2


async def test_wrong_or_missing_signature_is_401_and_nothing_is_sent(forge_cluster, forge_client):
    assert (await deliver(forge_client, GITHUB_PUSH, secret="guess"))[0] == 401
    assert (await deliver(forge_client, GITHUB_PUSH, secret=None))[0] == 401
    assert all(not received for received in forge_cluster.received.values())


async def test_redelivery_builds_nothing_new_even_after_a_restart(forge_cluster, forge_client, aiohttp_client):
    _, first = await deliver(forge_client, GITHUB_PUSH)
    await settled(forge_client, first["build_id"])

    status, again = await deliver(forge_client, GITHUB_PUSH)
    assert status == 202 and again == {**first, "redelivery": True}

    await forge_client.close()
    restarted = await start_client(aiohttp_client, forge_cluster)
    status, after_restart = await deliver(restarted, GITHUB_PUSH)
    assert status == 202 and after_restart["build_id"] == first["build_id"]

    # A new delivery of the same push is a new build.
    status, fresh = await deliver(restarted, GITHUB_PUSH, delivery="f00dfeed-0000-4000-8000-000000000001")
    assert status == 202 and fresh["build_id"] != first["build_id"]
    await settled(restarted, fresh["build_id"])
    assert sorted(forge_cluster.received[0]) == [int(first["build_id"]), int(fresh["build_id"])]


async def test_ping_deletion_and_unknown_repository(forge_cluster, forge_client):
    assert await deliver(forge_client, GITHUB_PING, event="ping") == (200, {"pong": True, "repository": "hello"})
    assert await deliver(forge_client, GITHUB_DELETION) == (
        202, {"ignored": True, "reason": "branch deleted: nothing to build"},
    )
    unknown = {**GITHUB_PUSH, "repository": {"full_name": "evil/repo", "clone_url": "https://evil.example/r.git"}}
    status, answer = await deliver(forge_client, unknown)
    assert status == 403 and "not configured" in answer["error"]
    assert all(not received for received in forge_cluster.received.values())


async def test_gitlab_and_gitea_pushes_are_built(forge_cluster, forge_client):
    status, gitlab = await deliver(forge_client, GITLAB_PUSH, headers=gitlab_headers())
    assert status == 202
    body = encoded(GITEA_PUSH)
    status, gitea = await deliver(forge_client, GITEA_PUSH, headers=gitea_headers(body))
    assert status == 202
    assert (await settled(forge_client, gitlab["build_id"]))["branch"] == "master"
    assert (await settled(forge_client, gitea["build_id"]))["branch"] == "develop"


async def test_plain_call_still_answers_with_the_verdict(forge_client):
    response = await forge_client.post("/webHook", json={"branch": "main", "repository": "open"})
    assert response.status == 200
    assert (await response.json())["status"] == "success"


async def test_oversized_forge_body_is_413_by_length_and_by_bytes_read(forge_cluster, forge_client):
    padded = {**GITHUB_PUSH, "commits": [GITHUB_COMMIT] * 200}
    assert len(encoded(padded)) > 65536
    assert (await deliver(forge_client, padded))[0] == 413

    body = encoded(padded)

    async def chunks():
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    response = await forge_client.post("/webHook", data=chunks(), headers=github_headers(body))
    assert response.status == 413
    assert all(not received for received in forge_cluster.received.values())


async def test_shutdown_is_prompt_and_leaves_background_builds_pending_for_the_restart(forge_cluster, forge_client):
    for node_id in range(N):
        forge_cluster.behaviour[node_id] = "silent"
    status, answer = await deliver(forge_client, GITHUB_PUSH)
    assert status == 202

    async with asyncio.timeout(3):
        await forge_client.close()

    records = BuildRecords(records_path(forge_cluster.config.data_dir, CLIENT))
    assert records.builds.get(int(answer["build_id"]))["state"] == "pending"  # tests/client/test_client_resume.py
    records.close()


request_headers = st.dictionaries(
    st.sampled_from(HEADER_NAMES), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40), max_size=4
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_handler_never_answers_500(forge_client, data):
    if data.draw(st.booleans()):
        body, headers = data.draw(mutated_deliveries())
    else:
        body = data.draw(st.binary(max_size=200))
        headers = data.draw(forge_headers(body))
    headers = {**headers, **data.draw(request_headers)}
    # aiohttp's test client refuses header values that HTTP cannot carry.
    headers = {name: value for name, value in headers.items() if value.isascii() and value.isprintable()}

    response = await forge_client.post("/webHook", data=body, headers=headers)

    assert response.status < 500
    answer = await response.json()
    assert answer.get("error") or response.status < 400
