"""End to end: a repository's build secret on four real nodes, the client and Docker
(docs/secrets.md). A plain call's build prints the secret plainly, after a prefix, in two
writes and in base64, and passes only if it has exactly the value: every node's log shows
the mask alone. A fork's pull request is built without it. Then no node's data directory,
no log and none of the client's records, certificates or attestations hold the value in any
form."""

from __future__ import annotations

import base64
import binascii
import hashlib
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import GITHUB_REPOSITORY, GITHUB_SECRET, encoded, github_headers
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, settled, webhook

pytestmark = OWN_NETWORK_MARKS

MASK = "[secret DEPLOY_TOKEN]"
PULL_REQUEST = 7


def git(repository: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repository), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def forge(path: Path, secret: str) -> str:
    """A repository whose master prints DEPLOY_TOKEN four ways and fails unless it is `secret`,
    and whose pull request PULL_REQUEST (under refs/pull, as a forge keeps it) says whether
    its build has the variable at all and fails if it has; master's commit."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    prints_it = {"commands": [
        'printf "%s\\n" "$DEPLOY_TOKEN"',
        'echo "token=$DEPLOY_TOKEN"',
        'printf "%s" "split ${DEPLOY_TOKEN:0:3}"; sleep 0.2; printf "%s\\n" "${DEPLOY_TOKEN:3}"',
        'printf "%s" "$DEPLOY_TOKEN" | base64',
        f'test "$(printf "%s" "$DEPLOY_TOKEN" | sha256sum | cut -d" " -f1)" = {digest}',
    ]}
    says_whether = {"commands": [
        'if [ -n "${DEPLOY_TOKEN+x}" ]; then echo "DEPLOY_TOKEN is set"; else echo "DEPLOY_TOKEN is unset"; fi',
        'test -z "${DEPLOY_TOKEN+x}"',
    ]}
    path.mkdir()
    git(path, "init", "-q", "-b", "master")
    for branch, spec in (("master", prints_it), ("fork-topic", says_whether)):
        if branch != "master":
            git(path, "checkout", "-q", "-b", branch)
        (path / ".pbft-ci.yml").write_text(yaml.safe_dump(spec))
        git(path, "add", ".")
        git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", branch)
    git(path, "update-ref", f"refs/pull/{PULL_REQUEST}/head", "fork-topic")
    git(path, "checkout", "-q", "master")
    git(path, "branch", "-q", "-D", "fork-topic")  # its head lives only under refs/pull, as a fork's does
    return git(path, "rev-parse", "master")


def fork_pull_request(base_url: str, head: str) -> dict:
    """GitHub's delivery of PULL_REQUEST, whose head `head` is in someone's fork; the client's
    answer (202, with the build's status URL)."""
    fork = {**GITHUB_REPOSITORY, "full_name": "someone/Hello-World-fork"}
    body = encoded({"action": "opened", "number": PULL_REQUEST, "repository": GITHUB_REPOSITORY,
                    "pull_request": {"number": PULL_REQUEST,
                                     "head": {"ref": "topic", "sha": head, "repo": fork},
                                     "base": {"ref": "master", "sha": "0" * 40, "repo": GITHUB_REPOSITORY}}})
    code, answer = http_json("POST", f"{base_url}/webHook", body,
                             github_headers(body, event="pull_request", delivery=str(uuid.uuid4())))
    assert code == 202 and "status_url" in answer and not answer.get("awaiting_approval"), answer
    return answer


def secrets_network(tmp_path: Path, secret: str) -> Path:
    """The example network on ports of its own, logging under `tmp_path`, building the forge's
    repository with DEPLOY_TOKEN for the default events (never pull_request), forks' pull
    requests built without an approval."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "deploy-token").write_text(secret + "\n")
    forge(tmp_path / "forge", secret)
    repositories = [{
        "name": "example", "url": str(tmp_path / "forge"), "full_name": GITHUB_REPOSITORY["full_name"],
        "secret": GITHUB_SECRET,
        "build_forks": True,
        "secrets": [{"name": "DEPLOY_TOKEN", "file": str(tmp_path / "secrets" / "deploy-token")}],
    }]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    return config_path


def node_logs(log_dir: Path, build_id: int, n: int) -> dict[int, str]:
    """Each node's build log of client build `build_id`, once each has its status line: the
    verdict may come before the slowest node ends."""
    deadline = time.monotonic() + 60
    logs = {}
    while len(logs) < n:
        for node_id in range(n):
            found = list(log_dir.glob(f"build-node{node_id}-*-{build_id}.log"))
            if found and "\n== status " in found[0].read_text():
                logs[node_id] = found[0].read_text()
        assert time.monotonic() < deadline, f"build logs of {build_id} incomplete: {sorted(logs)}"
        time.sleep(0.3)
    return logs


def forms_of(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw[3:], base64.b64encode(raw), binascii.hexlify(raw)]


def files_holding(roots: list[Path], secret: str) -> list[str]:
    """Every file under `roots` whose bytes hold `secret` plainly, without its first characters,
    in base64 or in hex."""
    holding = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                holding += [f"{path} ({form[:6]!r}...)" for form in forms_of(secret) if form in data]
    return holding


def test_a_secret_reaches_trusted_builds_masked_and_nothing_the_network_keeps(scratch, network):
    secret = f"e2e-secret-{uuid.uuid4().hex}"
    config_path = secrets_network(scratch, secret)
    network(str(config_path))
    config = load_config(config_path)
    log_dir = config.log_dir

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        trusted = webhook(base_url, config, "master")
        assert (trusted["status"], trusted["exit_code"]) == ("success", 0), trusted

        answer = fork_pull_request(base_url, git(scratch / "forge", "rev-parse", f"refs/pull/{PULL_REQUEST}/head"))
        fork = settled(answer["status_url"])
        assert (fork["state"], fork["result"]["status"], fork["pull_request"]) == (
            "accepted", "success", PULL_REQUEST), fork

        served = [http_json("GET", f"{base_url}/builds/{build_id}{suffix}")[1]
                  for build_id in (trusted["build_id"], fork["build_id"])
                  for suffix in ("", "/certificate", "/attestation")]
        served.append(http_json("GET", f"{base_url}/builds")[1])
    for node in config.nodes:  # metric labels live in the nodes' memory only
        with urllib.request.urlopen(node.url("/metrics"), timeout=10) as response:
            served.append(response.read().decode())

    for node_id, text in node_logs(log_dir, trusted["build_id"], config.n).items():
        output = [line for line in text.splitlines() if not line.startswith("==")]
        assert output == [MASK, f"token={MASK}", f"split {MASK}", MASK], (node_id, text)
        assert "; secrets DEPLOY_TOKEN\n" in text, (node_id, text)
    for node_id, text in node_logs(log_dir, fork["build_id"], config.n).items():
        assert "\nDEPLOY_TOKEN is unset\n" in text, (node_id, text)
        assert "; no secrets (DEPLOY_TOKEN not given to pull_request builds)\n" in text, (node_id, text)

    assert not any(form.decode() in repr(body) for body in served for form in forms_of(secret))
    kept = [scratch / "data", log_dir, scratch / "client.out"]
    # The nodes' own output is among them, beside their logs.
    assert (scratch / "data" / "node-3").is_dir() and (log_dir / "node-3.log").is_file()
    assert (log_dir / "node-3.stdout").is_file()
    assert files_holding(kept, secret) == []
    # The grep finds the value where it is: the file it came from.
    assert files_holding([scratch / "secrets"], secret)
