"""A real public Python project as a build target: its PyPI sdist, turned into a git repository.

Shared by the end-to-end test (tests/e2e/test_end_to_end_real_project.py) and the
`real-project` scenario of scripts/bench.py, so both build exactly the same
commits with the same spec.

The project is more-itertools, pinned to one release: pure Python, its sdist
ships its test suite, and the tests need nothing but the standard library and
pytest, so they run as they are in pbft-ci/debian-python:bookworm (Debian's
python3 3.11 and pytest 7) with no network. The sdist is fetched once with
`pip download` and kept under the repository's data/ folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

import yaml

from builder.plan.spec import SPEC_FILE, parse_build_spec
from builder.plan.containerpaths import HOME_DIR
from builder.plan.resources import memory_budget
from shared.config import BuildConfig, NetworkConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

PROJECT = "more-itertools"
VERSION = "10.5.0"
# The digest PyPI publishes for more-itertools-10.5.0.tar.gz: a different file
# under the same name would make the timings and verdicts meaningless.
SDIST_SHA256 = "5482bfef7849c25dc3c6dd53a6173ae4795da2a41a80faea6700d9f5846c5da6"
SDIST_CACHE_DIR = REPO_ROOT / "data" / "sdists"

IMAGE = "pbft-ci/debian-python:bookworm"
BUILD_IMAGE_SCRIPT = "scripts/build-debian-image.sh"
# The cache provider would write .pytest_cache; /workspace is writable, but
# the suite needs no cache and a build should leave no state behind.
TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"
BUILD_TIMEOUT_S = 240

BROKEN_BRANCH = "broken-test"
SANDBOX_BRANCH = "sandbox-home"
# One assertion of tests/test_recipes.py (TakeTests.test_null_take), made false.
BROKEN_FILE = "tests/test_recipes.py"
BROKEN_FROM = "self.assertEqual(t, [])"
BROKEN_TO = "self.assertEqual(t, ['broken on purpose'])"
# What the sandbox-home branch prints when HOME, the passwd entry and /tmp work.
SANDBOX_MARKERS = ("home ok", "user build", "ran from /tmp")
SANDBOX_COMMANDS = [
    "mkdir -p ~/.cache/x && echo ok > ~/.cache/x/f",
    'echo "home $(cat ~/.cache/x/f)"',
    "echo \"user $(python3 -c 'import getpass; print(getpass.getuser())')\"",
    "test \"$(id -un)\" = build",
    "printf '#!/bin/sh\\necho ran from /tmp\\n' > /tmp/hello.sh",
    "chmod +x /tmp/hello.sh",
    "/tmp/hello.sh",
]

# A build log's last line (README: Build output).
STATUS_LINE = re.compile(r"^== status (\w+) exit_code (\S+)", re.MULTILINE)
# Four nodes run the suite at once on a shared machine: the slowest may end
# this long after the verdict, which needs only f+1 of them.
ALL_LOGS_TIMEOUT_S = 180

# Fixed author, committer and dates, and no user configuration (signing,
# hooks, templates), so the commits are the same on every machine.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "pbft-ci real project",
    "GIT_AUTHOR_EMAIL": "real-project@pbft-ci.invalid",
    "GIT_COMMITTER_NAME": "pbft-ci real project",
    "GIT_COMMITTER_EMAIL": "real-project@pbft-ci.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class ProjectUnavailable(RuntimeError):
    """The sdist could not be fetched or is not the pinned file."""


def image_present(image: str = IMAGE) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], check=False, capture_output=True).returncode == 0


def fetch_sdist(
    cache_dir: Path = SDIST_CACHE_DIR, *, project: str = PROJECT, version: str = VERSION, sha256: str = SDIST_SHA256
) -> Path:
    """The pinned sdist of `project`, downloaded from PyPI on first use and kept in `cache_dir`."""
    cached = _sdist_in(cache_dir, project, version, sha256)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Downloaded next to the cache and moved in once checked, so an interrupted
    # download never looks like a cached one.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--no-binary", ":all:", "--no-deps", f"{project}=={version}", "-d", scratch,
        ]
        try:
            result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ProjectUnavailable(f"pip download of {project}=={version} took more than 300 s; is PyPI reachable?")
        if result.returncode != 0:
            raise ProjectUnavailable(
                f"could not download {project}=={version} from PyPI (is it reachable?): "
                f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-2000:]}"
            )
        downloaded = _sdist_in(Path(scratch), project, version, sha256, check=False)
        if downloaded is None:
            raise ProjectUnavailable(f"pip download left no sdist of {project}=={version}:\n{result.stdout[-2000:]}")
        digest = _sha256(downloaded)
        if digest != sha256:
            raise ProjectUnavailable(f"{downloaded.name} has sha256 {digest}, expected {sha256}")
        return Path(shutil.move(downloaded, cache_dir / downloaded.name))


def _sdist_in(directory: Path, project: str, version: str, sha256: str, *, check: bool = True) -> Path | None:
    # pip names the file after the project as the index spells it: with a
    # dash for this release, with an underscore for newer ones.
    for name in (f"{project}-{version}.tar.gz", f"{project.replace('-', '_')}-{version}.tar.gz"):
        path = directory / name
        if path.is_file() and (not check or _sha256(path) == sha256):
            return path
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_project_repo(dest: Path, sdist: Path) -> dict[str, str]:
    """A git repository at `dest` holding the sdist; returns branch name -> commit.

    master runs the project's test suite; BROKEN_BRANCH has one assertion made
    false; SANDBOX_BRANCH runs SANDBOX_COMMANDS instead of the tests.
    """
    unpack_sdist(sdist, dest)
    _write_spec(dest, [TEST_COMMAND])
    git(dest, "init", "--quiet", "--initial-branch=master", "--template=")
    commit_all(dest, f"{PROJECT} {VERSION} from its PyPI sdist, tested by pbft-ci")

    break_one_assertion(dest, BROKEN_BRANCH, BROKEN_FILE, BROKEN_FROM, BROKEN_TO)

    git(dest, "checkout", "--quiet", "-b", SANDBOX_BRANCH, "master")
    _write_spec(dest, SANDBOX_COMMANDS)
    commit_all(dest, "Use HOME, the build user's name and a script in /tmp")
    git(dest, "checkout", "--quiet", "master")

    return {branch: git(dest, "rev-parse", branch) for branch in ("master", BROKEN_BRANCH, SANDBOX_BRANCH)}


def unpack_sdist(sdist: Path, dest: Path) -> None:
    """The sdist's single top-level folder becomes `dest`."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as scratch:
        with tarfile.open(sdist) as archive:
            # The "data" filter refuses links and paths leaving the folder.
            archive.extractall(scratch, filter="data")
        (top,) = Path(scratch).iterdir()
        top.rename(dest)


def _write_spec(repo: Path, commands: list[str]) -> None:
    spec = {"image": IMAGE, "commands": commands, "timeout_s": BUILD_TIMEOUT_S}
    (repo / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False, width=1000))


def commit_all(repo: Path, message: str) -> None:
    """Commit everything in `repo`'s tree, with the fixed identity and dates of _GIT_ENV."""
    # Modes forced, so the commits do not depend on the umask of the unpacking.
    git(repo, "add", "--all", "--chmod=-x")
    git(repo, "commit", "--quiet", "--no-verify", "-m", message)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env={**os.environ, **_GIT_ENV}
    )
    return result.stdout.strip()


def branches_repository(path: Path, spec: str, failing: dict[str, bool]) -> dict[str, str]:
    """A git repository at `path` whose `main` holds the build spec `spec` (which fails where a
    file `fail` exists), and one branch off it per entry of `failing`, with a commit of its own
    that fails or passes as the entry says; returns each branch's commit."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / SPEC_FILE).write_text(spec)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "spec")
    heads = {}
    for branch, fails in failing.items():
        git(path, "checkout", "-q", "-b", branch, "main")
        (path / ("fail" if fails else "pass")).write_text(branch)
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", branch)
        heads[branch] = git(path, "rev-parse", "HEAD")
    return heads


def break_one_assertion(dest: Path, branch: str, path: str, true: str, false: str) -> None:
    """Commit, on a new branch `branch` of the repository at `dest`, its file `path` with its one
    `true` assertion written as `false`; master is checked out again afterwards."""
    git(dest, "checkout", "--quiet", "-b", branch)
    broken = dest / path
    text = broken.read_text()
    assert text.count(true) == 1, f"{path} no longer holds exactly one {true!r}"
    broken.write_text(text.replace(true, false))
    commit_all(dest, "Break one assertion on purpose")
    git(dest, "checkout", "--quiet", "master")


def plain_build_command(clone: Path, limits: BuildConfig) -> list[str]:
    """`docker run` of the clone's own spec without pbft-ci, with the sandbox's main limits.

    The clone is mounted read-only and copied onto a tmpfs /workspace first,
    as a node uploads the checked-out tree onto one: the build user may then
    write there, and the root file system stays read-only.
    """
    spec = parse_build_spec((clone / SPEC_FILE).read_bytes())
    uid, _, gid = limits.user.partition(":")
    owner = f"uid={uid},gid={gid or uid}"
    return [
        "docker", "run", "--rm", *plain_limits(limits, with_workspace=True), "--read-only",
        "--tmpfs", f"/workspace:rw,exec,nosuid,nodev,size={limits.workspace_mb}m,{owner},mode=0755",
        "--workdir", "/workspace", "--mount", f"type=bind,source={clone},target=/src,readonly",
        spec.image or limits.image, "/bin/sh", "-e", "-c", "cp -R /src/. /workspace\n" + spec.script(),
    ]


def plain_limits(limits: BuildConfig, *, with_workspace: bool = False) -> list[str]:
    """The `docker run` options of the sandbox's main limits: no network, the build user without
    capabilities, memory, CPUs and pids, and tmpfs for /tmp and HOME."""
    memory_mb = memory_budget(limits, with_workspace=with_workspace).total_mb
    uid, _, gid = limits.user.partition(":")
    owner = f"uid={uid},gid={gid or uid}"
    return [
        "--network", "none", "--user", limits.user,
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m",
        "--cpus", str(limits.cpus), "--pids-limit", str(limits.pids_limit),
        "--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={limits.tmp_mb}m",
        "--tmpfs", f"{HOME_DIR}:rw,exec,nosuid,nodev,size={limits.home_mb}m,{owner},mode=0700",
        "--env", f"HOME={HOME_DIR}",
    ]


def every_node_log(base_url: str, config: NetworkConfig, verdict: dict,
                   nodes: Iterable[int] | None = None) -> dict[int, str]:
    """Every node's output (or `nodes`' only) for the verdict's build, read through the client
    (README: Build output), once each has its status line: up to f nodes may still be
    building when the verdict comes."""
    logs: dict[int, str] = {}
    deadline = time.monotonic() + ALL_LOGS_TIMEOUT_S
    for node_id in [node.id for node in config.nodes] if nodes is None else nodes:
        url = f"{base_url}/builds/{verdict['build_id']}/log?node={node_id}"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    text = response.read().decode(errors="replace")
            except urllib.error.HTTPError as error:
                if error.code != 404:  # 404: the node has not started the build yet
                    raise
                text = ""
            if STATUS_LINE.search(text):
                logs[node_id] = text
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"node {node_id} has no status line for {verdict}:\n{text[-2000:]}")
            time.sleep(0.5)
    return logs
