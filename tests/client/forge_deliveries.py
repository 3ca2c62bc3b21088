"""Forge deliveries as GitHub, GitLab and Gitea/Forgejo send them: trimmed copies of their push
payloads (the fields the client reads, plus enough of the rest to keep their shape), the
headers each forge signs them with, and the parser's entry point."""

import asyncio
import dataclasses
import json

from client.forges import (
    forge_of,
    github_signature,
    hmac_sha256_hex,
    parse_delivery,
)
from shared.config import RepositoryConfig

GITHUB_SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "glpat-webhook-token"
GITEA_SECRET = "gitea shared secret"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
BEFORE = "9049f1265b7d61be4a8904a9a27120d2064dab3b"
TAG_OBJECT = "4b6aab8ee7a3e8a3a1bbd0bd1f4a3e26a6a9ba0d"
ZERO = "0" * 40
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

REPOSITORIES = (
    RepositoryConfig("hello", "/srv/git/hello", full_name="Codertocat/Hello-World", secret=GITHUB_SECRET),
    # Matched by URL only: GitLab's payload spells it git_http_url.
    RepositoryConfig("diaspora", "http://example.com/mike/diaspora.git", secret=GITLAB_TOKEN),
    RepositoryConfig("webhooks", "/srv/git/webhooks", full_name="gitea/webhooks", secret=GITEA_SECRET),
    # No secret: unsigned deliveries are accepted. Tags are built.
    RepositoryConfig("open", "https://github.com/someone/open.git", build_tags=True),
)
SECRETS = {"github": GITHUB_SECRET, "gitlab": GITLAB_TOKEN, "gitea": GITEA_SECRET}

GITHUB_USER = {"login": "Codertocat", "id": 21031067, "type": "User", "site_admin": False}
GITHUB_REPOSITORY = {
    "id": 186853002,
    "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
    "name": "Hello-World",
    "full_name": "Codertocat/Hello-World",
    "private": False,
    "owner": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", **GITHUB_USER},
    "html_url": "https://github.com/Codertocat/Hello-World",
    "url": "https://github.com/Codertocat/Hello-World",
    "git_url": "git://github.com/Codertocat/Hello-World.git",
    "ssh_url": "git@github.com:Codertocat/Hello-World.git",
    "clone_url": "https://github.com/Codertocat/Hello-World.git",
    "created_at": 1557933565,
    "pushed_at": 1557933657,
    "default_branch": "main",
    "master_branch": "main",
}
GITHUB_COMMIT = {
    "id": SHA,
    "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
    "distinct": True,
    "message": "Update README.md",
    "timestamp": "2019-05-15T15:20:41Z",
    "url": f"https://github.com/Codertocat/Hello-World/commit/{SHA}",
    "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", "username": "Codertocat"},
    "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
    "added": [],
    "removed": [],
    "modified": ["README.md"],
}
GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": BEFORE,
    "after": SHA,
    "repository": GITHUB_REPOSITORY,
    "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
    "sender": GITHUB_USER,
    "created": False,
    "deleted": False,
    "forced": False,
    "base_ref": None,
    "compare": f"https://github.com/Codertocat/Hello-World/compare/{BEFORE[:12]}...{SHA[:12]}",
    "commits": [GITHUB_COMMIT],
    "head_commit": GITHUB_COMMIT,
}
# A branch created at an existing commit: no new commits, no head_commit.
GITHUB_PUSH_WITHOUT_HEAD_COMMIT = {
    **GITHUB_PUSH, "ref": "refs/heads/release/1.0", "before": ZERO, "created": True, "commits": [], "head_commit": None,
}
GITHUB_DELETION = {
    **GITHUB_PUSH, "ref": "refs/heads/feature/old", "before": SHA, "after": ZERO, "deleted": True,
    "commits": [], "head_commit": None,
}
GITHUB_TAG_PUSH = {
    **GITHUB_PUSH, "ref": "refs/tags/v1.0.0", "before": ZERO, "after": TAG_OBJECT, "created": True,
    "base_ref": "refs/heads/main", "commits": [],
}
GITHUB_PING = {
    "zen": "Design for failure.",
    "hook_id": 109948940,
    "hook": {
        "type": "Repository",
        "id": 109948940,
        "name": "web",
        "active": True,
        "events": ["push"],
        "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://ci.example.org/webHook"},
        "updated_at": "2019-05-15T15:20:49Z",
        "created_at": "2019-05-15T15:20:49Z",
    },
    "repository": GITHUB_REPOSITORY,
    "sender": GITHUB_USER,
}
GITLAB_PUSH = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
    },
    "repository": {
        "name": "Diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "homepage": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "visibility_level": 0,
    },
    "commits": [{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme", "added": []}],
    "total_commits_count": 1,
}
GITEA_PUSH = {
    "ref": "refs/heads/develop",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029c...bffeb7422404",
    "commits": [{"id": "bffeb74224043ba2feb48d137756c8a9331c449a", "message": "Webhooks Yay!"}],
    "total_commits": 1,
    "head_commit": {"id": "bffeb74224043ba2feb48d137756c8a9331c449a", "message": "Webhooks Yay!"},
    "repository": {
        "id": 140,
        "owner": {"id": 1, "login": "gitea", "username": "gitea"},
        "name": "webhooks",
        "full_name": "gitea/webhooks",
        "private": False,
        "html_url": "http://localhost:3000/gitea/webhooks",
        "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
        "clone_url": "http://localhost:3000/gitea/webhooks.git",
        "default_branch": "master",
    },
    "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
    "sender": {"id": 1, "login": "gitea", "username": "gitea"},
}
OPEN_REPOSITORY = {
    **GITHUB_REPOSITORY,
    "name": "open",
    "full_name": "someone/open",
    "html_url": "https://github.com/someone/open",
    "url": "https://github.com/someone/open",
    "git_url": "git://github.com/someone/open.git",
    "ssh_url": "git@github.com:someone/open.git",
    "clone_url": "https://github.com/someone/open.git",
}
OPEN_PUSH = {**GITHUB_PUSH, "repository": OPEN_REPOSITORY}


def encoded(payload) -> bytes:
    return json.dumps(payload).encode()


def github_headers(body: bytes, event="push", secret=GITHUB_SECRET, delivery=DELIVERY) -> dict:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "292430182",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = github_signature(secret, body)
    return headers


def gitlab_headers(token=GITLAB_TOKEN, event="Push Hook", delivery=DELIVERY) -> dict:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event, "Idempotency-Key": delivery}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def gitea_headers(body: bytes, secret=GITEA_SECRET, prefix="Gitea", *, event="push", delivery=DELIVERY) -> dict:
    # Gitea sends GitHub's and Gogs's headers too, all with the same values.
    signature = hmac_sha256_hex(secret, body)
    return {
        "Content-Type": "application/json",
        f"X-{prefix}-Delivery": delivery,
        f"X-{prefix}-Event": event,
        f"X-{prefix}-Event-Type": event,
        f"X-{prefix}-Signature": signature,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + signature,
    }


def parse(body: bytes, headers: dict, repositories=REPOSITORIES):
    forge = forge_of(headers)
    assert forge is not None
    return parse_delivery(forge, body, headers, repositories)


async def settled(client, build_id: str, headers: dict | None = None) -> dict:
    async with asyncio.timeout(5):
        while True:
            record = await (await client.get(f"/builds/{build_id}", headers=headers)).json()
            if record["state"] != "pending":
                return record
            await asyncio.sleep(0.02)


async def push(client, branch: str, sha: str, delivery: str) -> str:
    """Deliver GitHub's push of `sha` to `branch` of repository "hello"; the build id it started."""
    body = encoded({**GITHUB_PUSH, "ref": f"refs/heads/{branch}", "after": sha,
                    "head_commit": {**GITHUB_PUSH["head_commit"], "id": sha}})
    response = await client.post("/webHook", data=body, headers=github_headers(body, delivery=delivery))
    assert response.status == 202
    return (await response.json())["build_id"]


def delivered(operation, forge: str):
    """`operation` as the client signs it for a delivery of `DELIVERY` from `forge` (pbft.deliveries)."""
    return dataclasses.replace(operation, delivery=f"{forge}:{DELIVERY}")
