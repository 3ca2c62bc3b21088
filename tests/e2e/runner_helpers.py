"""What the end-to-end tests of the action runner share: a forge repository's git, a build of it
through the client, and one pass of the runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from harness.verdicts import http_json
from tests.e2e.example_network import REPO_ROOT, example_copy


def git(repository: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repository), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def run_runner(config_path: Path) -> str:
    """One pass of the runner over the builds with a verdict; its output."""
    result = subprocess.run([sys.executable, "runner/index.py", "--config", str(config_path), "--once",
                             "--log-file", "-"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def build(base_url: str, branch: str, head: str) -> dict:
    code, answer = http_json("POST", f"{base_url}/webHook", {"repository": "deployed", "branch": branch,
                                                               "commit": head})
    assert code == 200, answer
    return answer


def forge_commit(forge: Path, files: dict[str, str], message: str, branch: str | None = None) -> str:
    """Commit `files` to the forge's repository (made at the first commit, on master), on `branch`
    if given (made from where the repository stands); the commit."""
    if not (forge / ".git").exists():
        forge.mkdir(parents=True, exist_ok=True)
        git(forge, "init", "-q", "-b", "master")
    if branch is not None:
        git(forge, "checkout", "-q", "-B", branch)
    for name, text in files.items():
        (forge / name).write_text(text)
    git(forge, "add", "-A")
    git(forge, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return git(forge, "rev-parse", "HEAD")


def forge_network(scratch: Path, forge: Path, **document) -> Path:
    """The example network's copy in `scratch` that builds the forge's repository as `deployed`,
    with `document`'s settings added to its network document; its configuration file."""
    config_path = example_copy(scratch, allow_byzantine=False, repositories=[{"name": "deployed", "url": str(forge)}])
    if document:
        data = yaml.safe_load(config_path.read_text())
        config_path.write_text(yaml.safe_dump({**data, **document}, sort_keys=False))
    return config_path
