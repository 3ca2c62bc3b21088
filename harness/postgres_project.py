"""A real public project whose tests need a live PostgreSQL, as a pipeline with a database service.

Used by the end-to-end test tests/e2e/test_end_to_end_postgres_project.py and the cost
scenario of scripts/bench.py (bench/cost.py).

The project is pg8000, pinned to one release: a PostgreSQL driver in pure
Python, so its source runs as it is from the sdist with no compiler, and its
sdist ships its test suite, nearly all of which talks to a live server. Its
dependencies are in Debian bookworm but for scramp (one pure-Python wheel,
pinned by hash in scripts/build-debian-image.sh), so every image is made from
Debian packages, and nothing is fetched while a build runs.

The pipeline follows pg8000's own CI job (.github/workflows/test.yml,
"main-test"): a PostgreSQL service with the hstore extension, and pytest over
the tests of pg8000's native interface, `test/native`, but for its
authentication tests (those need a server configured for each method and SSL,
which the project tests in separate jobs) and one test that alone takes
most of the suite's time (SLOW_TEST). Its DB-API and legacy interfaces
(`test/dbapi`, `test/legacy`) make the same round trips to the server through
other layers: with them the suite is 777 tests, which four nodes sharing a
2-core machine take minutes to run. Before the tests, a lint step in another
image compiles every source file.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from builder.plan.spec import SPEC_FILE, parse_build_spec
from builder.plan.containerpaths import HOME_DIR
from builder.plan.resources import memory_budget
from shared.config import BuildConfig
from harness.real_project import break_one_assertion, commit_all, git, unpack_sdist

PROJECT = "pg8000"
VERSION = "1.31.2"
# The digest PyPI publishes for pg8000-1.31.2.tar.gz.
SDIST_SHA256 = "1ea46cf09d8eca07fe7eaadefd7951e37bee7fabe675df164f1a572ffb300876"

BUILD_IMAGE_SCRIPT = "scripts/build-debian-image.sh"
SERVICE_IMAGE = "pbft-ci/debian-postgres:bookworm"
TEST_IMAGE = "pbft-ci/debian-pg8000:bookworm"
LINT_IMAGE = "pbft-ci/debian-python:bookworm"
# Each image and the variant of BUILD_IMAGE_SCRIPT that makes it.
IMAGES = {SERVICE_IMAGE: "postgres", TEST_IMAGE: "pg8000", LINT_IMAGE: "python"}
BUILD_TIMEOUT_S = 300

SERVICE_NAME = "postgres"
READY_COMMAND = "pg_isready -h 127.0.0.1 -U postgres"
# The cluster lives in HOME: a fresh one is about 40 MB and its WAL grows while
# the suite runs, more than the build's 64 MB /tmp holds.
SERVICE_COMMANDS = [
    'initdb -D "$HOME/pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8',
    'exec postgres -D "$HOME/pgdata" -k /tmp -c listen_addresses=127.0.0.1',
]
LINT_COMMANDS = [
    "python3 -m compileall -q src test",
    "echo \"lint: $(find src test -name '*.py' | wc -l) files compile\"",
]
# One test sends a query of 65,535 parameters, the protocol's limit: at the half CPU a step
# beside its service gets, it alone takes 57 of the suite's 65 s, ten runs a test. The other
# 225 tests take 8 s and make the same kinds of round trips to the server.
SLOW_TEST = "test/native/test_query.py::test_max_parameters"
TEST_ENVIRONMENT = {"PGHOST": SERVICE_NAME, "PYTHONPATH": "src"}
TEST_COMMANDS = [
    # pg8000 reads its version from its installed metadata; the sdist's PKG-INFO,
    # where importlib.metadata looks for it, stands in for an installation.
    "mkdir -p src/pg8000.egg-info && cp PKG-INFO src/pg8000.egg-info/",
    # The project's CI creates hstore before its tests, as the superuser.
    "python3 -c 'import pg8000.native; pg8000.native.Connection(\"postgres\").run(\"CREATE EXTENSION hstore\")'",
    "python3 -m pytest -q -p no:cacheprovider --benchmark-disable --ignore=test/native/auth "
    f"--deselect {SLOW_TEST} test/native",
]

BROKEN_BRANCH = "broken-test"
# One assertion of test/native/test_query.py (test_multiple_statements), made false.
BROKEN_FILE = "test/native/test_query.py"
BROKEN_TEST = "test_multiple_statements"
BROKEN_FROM = 'assert con.run(statements) == [[5], ["Erich Fromm"]]'
BROKEN_TO = 'assert con.run(statements) == [[5], ["broken on purpose"]]'

SPEC = {
    "services": [{
        "name": SERVICE_NAME,
        "image": SERVICE_IMAGE,
        "commands": SERVICE_COMMANDS,
        "ready": {"command": READY_COMMAND},
    }],
    "steps": [
        {"name": "lint", "image": LINT_IMAGE, "commands": LINT_COMMANDS},
        {"name": "test", "image": TEST_IMAGE, "environment": TEST_ENVIRONMENT, "commands": TEST_COMMANDS},
    ],
    "timeout_s": BUILD_TIMEOUT_S,
}


def make_project_repo(dest: Path, sdist: Path) -> dict[str, str]:
    """A git repository at `dest` holding the sdist and SPEC; returns branch name -> commit.

    master passes; BROKEN_BRANCH has one assertion made false.
    """
    unpack_sdist(sdist, dest)
    (dest / SPEC_FILE).write_text(yaml.safe_dump(SPEC, sort_keys=False, width=1000))
    git(dest, "init", "--quiet", "--initial-branch=master", "--template=")
    commit_all(dest, f"{PROJECT} {VERSION} from its PyPI sdist, tested by pbft-ci against PostgreSQL")

    break_one_assertion(dest, BROKEN_BRANCH, BROKEN_FILE, BROKEN_FROM, BROKEN_TO)

    return {branch: git(dest, "rev-parse", branch) for branch in ("master", BROKEN_BRANCH)}


def export_commit(repo: Path, commit: str, dest: Path) -> Path:
    """The tree of `commit` at `dest`, without .git, as a node checks it out for a build."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@dataclass(frozen=True)
class PlainRun:
    """A run of the clone's pipeline with `docker run` alone: the exit code and seconds of each step."""

    ready_s: float  # from starting the service until its readiness command passed
    steps: dict[str, tuple[int, float]]
    total_s: float


def plain_pipeline_run(clone: Path, limits: BuildConfig, scratch: Path) -> PlainRun:
    """Run the clone's spec without pbft-ci: its service, then its steps in its network namespace.

    With the limits a node gives a build with one service (each container half the
    build's processes' memory, CPUs and pids) and the sandbox's main hardening; a
    step that fails ends the run, as it ends a build. Each step gets its own copy of
    the clone on a tmpfs /workspace (a node's steps share one: here no step needs
    what another wrote). The service is removed whatever happens.
    """
    spec = parse_build_spec((clone / SPEC_FILE).read_bytes())
    (service,) = spec.services
    share = BuildConfig(
        memory_mb=limits.memory_mb // 2, cpus=limits.cpus / 2, pids_limit=limits.pids_limit // 2,
        tmp_mb=limits.tmp_mb, home_mb=limits.home_mb, workspace_mb=limits.workspace_mb, user=limits.user,
    )
    passwd = _passwd_file(scratch, service.image, share.user)
    name = f"pbft-ci-plain-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    try:
        subprocess.run(
            [*_hardened_run(share, passwd, with_workspace=False), "--detach", "--name", name,
             "--network", "none", "--add-host", f"{service.name}:127.0.0.1",
             "--tmpfs", f"/run:rw,exec,nosuid,nodev,size={share.tmp_mb}m",
             *_environment(service.environment), service.image, "/bin/sh", "-e", "-c", service.script()],
            check=True, capture_output=True, timeout=60,
        )
        while subprocess.run(["docker", "exec", name, "sh", "-c", service.ready_command],
                             check=False, capture_output=True, timeout=30).returncode != 0:
            if time.monotonic() - started > service.ready_timeout_s:
                raise TimeoutError(f"the plain run's {service.name} was not ready in {service.ready_timeout_s:g} s")
            time.sleep(0.1)
        ready_s = time.monotonic() - started
        steps: dict[str, tuple[int, float]] = {}
        for step in spec.steps:
            step_started = time.monotonic()
            done = subprocess.run(
                [*_hardened_run(share, passwd, with_workspace=True), "--rm", "--network", f"container:{name}",
                 "--mount", f"type=bind,source={clone},target=/src,readonly", *_environment(step.environment),
                 step.image or spec.image or limits.image, "/bin/sh", "-e", "-c", "cp -R /src/. /workspace\n" + step.script()],
                check=False, capture_output=True, timeout=spec.timeout_s,
            )
            steps[step.name] = (done.returncode, time.monotonic() - step_started)
            if done.returncode != 0:
                break
        return PlainRun(ready_s, steps, time.monotonic() - started)
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], check=False, capture_output=True, timeout=60)


def _hardened_run(limits: BuildConfig, passwd: Path, *, with_workspace: bool) -> list[str]:
    memory_mb = memory_budget(limits, with_workspace=with_workspace).total_mb
    uid, _, gid = limits.user.partition(":")
    owner = f"uid={uid},gid={gid or uid}"
    command = [
        "docker", "run", "--user", limits.user, "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m",
        "--cpus", str(limits.cpus), "--pids-limit", str(limits.pids_limit), "--shm-size", f"{limits.tmp_mb}m",
        "--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={limits.tmp_mb}m",
        "--tmpfs", f"{HOME_DIR}:rw,exec,nosuid,nodev,size={limits.home_mb}m,{owner},mode=0700",
        "--env", f"HOME={HOME_DIR}",
        "--mount", f"type=bind,source={passwd},target=/etc/passwd,readonly",
    ]
    if with_workspace:
        command += [
            "--tmpfs", f"/workspace:rw,exec,nosuid,nodev,size={limits.workspace_mb}m,{owner},mode=0755",
            "--workdir", "/workspace",
        ]
    return command


def _environment(variables: tuple[tuple[str, str], ...]) -> list[str]:
    return [argument for name, value in variables for argument in ("--env", f"{name}={value}")]


def _passwd_file(scratch: Path, image: str, user: str) -> Path:
    """The image's passwd file with an entry for the build user: initdb refuses a uid without one."""
    uid, _, gid = user.partition(":")
    own = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "cat", "/etc/passwd"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    with tempfile.NamedTemporaryFile("w", dir=scratch, prefix="passwd-", delete=False) as passwd:
        passwd.write(own + f"build:x:{uid}:{gid or uid}:build:{HOME_DIR}:/bin/sh\n")
    Path(passwd.name).chmod(0o644)
    return Path(passwd.name)
