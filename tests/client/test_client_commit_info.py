"""A build's commit message, author and forge link, from the forge's delivery: parsed from each
forge's payload, cleaned of what a hostile payload may put in them, kept with the build's record."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from client.commitinfo import MAX_AUTHOR_CHARS, MAX_MESSAGE_BYTES, CommitInfo, clean_message, forge_link
from shared.config import RepositoryConfig
from tests.client.fake_nodes import post, start_client
from tests.client.forge_deliveries import (
    GITEA_PUSH, GITEA_SECRET, GITHUB_PUSH, GITHUB_SECRET, GITLAB_PUSH, GITLAB_TOKEN, OPEN_PUSH, REPOSITORIES, SHA,
    encoded, gitea_headers, github_headers, gitlab_headers, parse, settled,
)

PAYLOADS = Path(__file__).parent / "data" / "forges"
PR_HEAD = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
GITLAB_SHA = GITLAB_PUSH["checkout_sha"]
GITEA_SHA = GITEA_PUSH["after"]
PULL_REPOSITORIES = (
    RepositoryConfig("hello", "/srv/git/hello", full_name="Codertocat/Hello-World", secret=GITHUB_SECRET),
    RepositoryConfig("gitlab-test", "http://example.com/gitlabhq/gitlab-test.git", secret=GITLAB_TOKEN),
    RepositoryConfig("webhooks", "/srv/git/webhooks", full_name="gitea/webhooks", secret=GITEA_SECRET),
)
# Another site: no link for a commit of a repository configured elsewhere.
OTHER_SITE = "https://evil.example/Codertocat/Hello-World/commit/" + SHA
# Never a link, whoever signed the payload.
HOSTILE_URLS = [
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "https://github.com@evil.example/commit/" + SHA,
    "https://user:pass@github.com/commit/" + SHA,
    "https://github.com/commit/\n" + SHA,
    "https://github.com:99999/commit/" + SHA,
    "https://[github.com/commit/" + SHA,
    "//github.com/commit/" + SHA,
    "ftp://github.com/commit/" + SHA,
    "https://github.com/" + "a" * 3000,
]


def info_of(payload: dict, headers=None, repositories=REPOSITORIES) -> CommitInfo:
    body = encoded(payload)
    return parse(body, headers or github_headers(body), repositories).commit_info


def with_head_commit(**changes) -> dict:
    payload = copy.deepcopy(GITHUB_PUSH)
    payload["head_commit"] = {**payload["head_commit"], **changes}
    return payload


def recorded(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


# --- Each forge's payload -----------------------------------------------------------------------


def test_github_push_gives_the_head_commit_s_message_author_and_link():
    assert info_of(GITHUB_PUSH) == CommitInfo(
        "Update README.md", "Codertocat", f"https://github.com/Codertocat/Hello-World/commit/{SHA}")


def test_gitlab_push_gives_the_last_listed_commit_that_is_the_checkout_sha():
    payload = copy.deepcopy(GITLAB_PUSH)
    payload["commits"] = [
        {"id": GITLAB_SHA, "message": "an older listing of it", "url": "http://example.com/old",
         "author": {"name": "Old"}},
        {"id": "b" * 40, "message": "another commit", "author": {"name": "Someone Else"}},
        {"id": GITLAB_SHA, "message": "fixed readme\n\nlong text", "author": {"name": "GitLab dev user"},
         "url": f"http://example.com/mike/diaspora/commit/{GITLAB_SHA}"},
    ]
    assert info_of(payload, gitlab_headers()) == CommitInfo(
        "fixed readme\n\nlong text", "GitLab dev user", f"http://example.com/mike/diaspora/commit/{GITLAB_SHA}")


def test_gitlab_push_without_a_commit_url_links_the_project_s_commit_page():
    # The trimmed payload's commit has a message and nothing else.
    assert info_of(GITLAB_PUSH, gitlab_headers()) == CommitInfo(
        "fixed readme", None, f"http://example.com/mike/diaspora/-/commit/{GITLAB_SHA}")


def test_gitea_push_without_a_commit_url_links_the_repository_s_commit_page():
    body = encoded(GITEA_PUSH)
    assert info_of(GITEA_PUSH, gitea_headers(body)) == CommitInfo(
        "Webhooks Yay!", None, f"http://localhost:3000/gitea/webhooks/commit/{GITEA_SHA}")


@pytest.mark.parametrize("name, headers, expected", [
    ("github-pull-request", "github", CommitInfo(
        "Update the README with new information.", "Codertocat",
        f"https://github.com/Codertocat/Hello-World/commit/{PR_HEAD}")),
    ("gitea-pull-request", "gitea", CommitInfo(
        "Update 'README.md'", "gitea", f"http://localhost:3000/gitea/webhooks/commit/{PR_HEAD}")),
    ("gitlab-merge-request", "gitlab", CommitInfo(
        "MS-Viewport", "root", f"http://example.com/gitlabhq/gitlab-test/commits/{PR_HEAD}")),
])
def test_a_pull_request_gives_its_title_its_author_and_its_head_commit(name, headers, expected):
    payload = recorded(name)
    body = encoded(payload)
    headers = {"github": lambda: github_headers(body, event="pull_request"),
               "gitea": lambda: gitea_headers(body, event="pull_request"),
               "gitlab": lambda: gitlab_headers(event="Merge Request Hook")}[headers]()
    assert info_of(payload, headers, PULL_REPOSITORIES) == expected


def test_a_push_without_a_head_commit_still_links_its_commit():
    payload = {**GITHUB_PUSH, "head_commit": None}
    assert info_of(payload) == CommitInfo(None, None, f"https://github.com/Codertocat/Hello-World/commit/{SHA}")


# --- Hostile payloads --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*HOSTILE_URLS, OTHER_SITE])
def test_a_link_that_is_not_http_s_on_the_forge_is_no_link(url):
    assert forge_link(url, {"github.com"}) is None
    # In a payload, the commit's own link is refused, and the repository's commit page is used.
    assert info_of(with_head_commit(url=url)).url == f"https://github.com/Codertocat/Hello-World/commit/{SHA}"


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_repository_page_gives_no_link_at_all(url):
    payload = with_head_commit(url=url)
    payload["repository"] = {**payload["repository"], "html_url": url}
    assert info_of(payload).url is None


def test_an_unsigned_repository_s_own_page_vouches_for_no_host():
    # "open" has no secret: anyone may deliver, so only the configured URL's host counts.
    payload = copy.deepcopy(OPEN_PUSH)
    payload["repository"]["html_url"] = "https://evil.example/someone/open"
    payload["head_commit"] = {**payload["head_commit"], "url": f"https://evil.example/someone/open/commit/{SHA}"}
    body = encoded(payload)
    assert info_of(payload, github_headers(body, secret=None)).url is None
    payload["head_commit"]["url"] = f"https://github.com/someone/open/commit/{SHA}"
    body = encoded(payload)
    assert info_of(payload, github_headers(body, secret=None)).url == f"https://github.com/someone/open/commit/{SHA}"


def test_control_characters_bidi_overrides_and_surrogates_are_dropped_but_lines_and_tabs_kept():
    message = "fix\x1b[31m red\r\n\n\tdetail\u202eevil\x00\x7f\x85\ud800 done\n"
    info = info_of(with_head_commit(message=message, author={"name": "Mallory\n\x1b]0;title\x07\u2066"}))
    assert info.message == "fix[31m red\n\n\tdetailevil done"
    assert info.author == "Mallory]0;title"


def test_a_megabyte_message_and_a_long_author_are_cut():
    info = info_of(with_head_commit(message="é" * 1_000_000, author={"name": "n" * 100_000}))
    assert len(info.message.encode()) <= MAX_MESSAGE_BYTES and set(info.message) == {"é"}
    assert len(info.message) == MAX_MESSAGE_BYTES // 2
    assert info.author == "n" * MAX_AUTHOR_CHARS


@pytest.mark.parametrize("value", [None, 7, ["list"], {"x": 1}, "", " \n\x00 "])
def test_a_missing_or_empty_message_is_none(value):
    assert clean_message(value) is None
    assert info_of(with_head_commit(message=value, author=value)).message is None


# --- Kept with the build's record ----------------------------------------------------------------


@pytest.fixture
def forge_cluster(cluster):
    cluster.config = dataclasses.replace(cluster.config, repositories=REPOSITORIES)
    return cluster


@pytest.fixture
async def forge_client(forge_cluster, aiohttp_client):
    return await start_client(aiohttp_client, forge_cluster)


async def test_the_record_and_the_listing_show_the_commit_a_delivery_described(forge_client):
    payload = with_head_commit(message="Fix\x00 the <b>build</b>\n\n" + "x" * 1_000_000,
                               author={"name": "<script>alert(1)</script>"}, url="javascript:alert(1)")
    body = encoded(payload)
    response = await forge_client.post("/webHook", data=body, headers=github_headers(body))
    assert response.status == 202
    build_id = (await response.json())["build_id"]

    record = await settled(forge_client, build_id)
    assert record["commit_message"].startswith("Fix the <b>build</b>\n\nxxx")
    assert len(record["commit_message"].encode()) <= MAX_MESSAGE_BYTES
    assert record["author"] == "<script>alert(1)</script>"  # text, which the page shows as text
    assert record["commit_url"] == f"https://github.com/Codertocat/Hello-World/commit/{SHA}"
    listed = (await (await forge_client.get("/builds")).json())["builds"][0]
    assert {key: listed[key] for key in ("commit_message", "author", "commit_url")} == \
        {key: record[key] for key in ("commit_message", "author", "commit_url")}

    # A re-run builds the same commit, and says so.
    rerun = await (await forge_client.post(f"/builds/{build_id}/rerun")).json()
    again = await settled(forge_client, rerun["build_id"])
    assert (again["commit_message"], again["author"], again["commit_url"]) == \
        (record["commit_message"], record["author"], record["commit_url"])


async def test_a_plain_call_describes_no_commit(client):
    _, verdict = await post(client, {"branch": "main"})
    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert (record["commit_message"], record["author"], record["commit_url"]) == (None, None, None)
