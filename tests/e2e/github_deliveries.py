"""GitHub deliveries to a client of an own-network copy of the example: its config with a
webhook secret and a full name, and signed `push` and `pull_request` deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml

from tests.e2e.example_network import example_copy

SECRET = "e2e webhook secret"
FULL_NAME = "octo/example"


def forge_config(tmp_path: Path) -> Path:
    path = example_copy(tmp_path, allow_byzantine=False)
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    data = yaml.safe_load(path.read_text())
    data["repositories"][0].update(full_name=FULL_NAME, secret_file=str(tmp_path / "hook.secret"))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deliver(base_url: str, event: str, payload: dict, *, delivery: str, secret: str = SECRET) -> tuple[int, dict]:
    """POST a GitHub delivery of `event`, signed with `secret`."""
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{base_url}/webHook", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def push(base_url: str, commit: str, *, delivery: str, secret: str = SECRET) -> tuple[int, dict]:
    return deliver(base_url, "push", {
        "ref": "refs/heads/master",
        "before": "0" * 40,
        "after": commit,
        "deleted": False,
        "repository": {"full_name": FULL_NAME, "clone_url": f"https://github.com/{FULL_NAME}.git"},
        "head_commit": {"id": commit, "message": "test"},
    }, delivery=delivery, secret=secret)


def pull_request(base_url: str, number: int, head: str, *, source: str = FULL_NAME) -> tuple[int, dict]:
    """A `pull_request` delivery: `head` pushed to pull request `number` from repository `source`."""
    repository = {"full_name": FULL_NAME, "clone_url": f"https://github.com/{FULL_NAME}.git"}
    return deliver(base_url, "pull_request", {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": "topic", "sha": head, "repo": {"full_name": source}},
            "base": {"ref": "master", "sha": "0" * 40, "repo": repository},
        },
        "repository": repository,
    }, delivery=str(uuid.uuid4()))
