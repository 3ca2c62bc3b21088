"""Scenarios with real builds: the README's scripts, the Docker engine, a git repository.

`build` and `real-project` time the same three commands, alternating their
order each round: webhook -> verdict through a network of four nodes on this
machine; one plain `git clone && docker run` of the same spec with the
sandbox's main limits; and four such plain runs started at once, the fair
control, since the four nodes build on this one machine. `build` also takes
each node's overhead per build from its log: the build's duration less the
time its own commands ran in the container. `concurrent` sends 20 webhooks
at once (10 master, 10 feature) and 20 one after another.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.stats import alternating, load_average, ratio, summarize
from harness.builds import remove_builds_under
from harness.network import write_network
from harness.real_project import (
    BUILD_IMAGE_SCRIPT, IMAGE, PROJECT, VERSION, ProjectUnavailable, every_node_log, fetch_sdist, image_present,
    make_project_repo, plain_build_command, plain_limits,
)
from harness.scripts import START_TIMEOUT_S, client, describe, run_script
from harness.verdicts import WEBHOOK_TIMEOUT_S, check_certificate, http_json
from shared.config import BuildConfig, NetworkConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "pbft-ci": "webhook -> verdict, master, 4 nodes",
    "plain": "git clone && docker run",
    "plain x4": "4 plain runs at once",
}
EXPECTED = {"master": ("success", 0), "feature": ("failure", 3)}
BUILD_END = re.compile(r"build end id=(\S+) .* duration_ms=(\d+) commands_ms=(\d+)")


@contextmanager
def running_network(config_path: Path, config: NetworkConfig, root: Path):
    """./startNetwork.sh and ./scripts/startClient.sh on `config_path`; yields the client's URL."""
    # The scripts keep this network's pid files under `root`: ./stopNetwork.sh below stops it
    # alone, never the example network or another one running beside the bench.
    outer_run_dir = os.environ.get("PBFT_CI_RUN_DIR")
    os.environ["PBFT_CI_RUN_DIR"] = str(root / "run")
    try:
        started = run_script("./startNetwork.sh", str(config_path), timeout_s=START_TIMEOUT_S)
        if started.returncode != 0:
            # startNetwork.sh leaves the nodes that did start running: a bench stops them all.
            run_script("./stopNetwork.sh")
            remove_builds_under(root)
            raise SystemExit(f"could not start the network:\n{describe(started)}")
        try:
            with client(config, root / "client.out", str(config_path)) as base_url:
                yield base_url
        finally:
            stopped = run_script("./stopNetwork.sh")
            remove_builds_under(root)
            if stopped.returncode != 0:
                print(describe(stopped), file=sys.stderr)
    finally:
        if outer_run_dir is None:
            del os.environ["PBFT_CI_RUN_DIR"]
        else:
            os.environ["PBFT_CI_RUN_DIR"] = outer_run_dir


def webhook(base_url: str, config: NetworkConfig, branch: str, timeout_s: float | None = None) -> dict:
    """The README's webhook call for `branch`; its verdict must be the branch's known one."""
    code, verdict = http_json("POST", f"{base_url}/webHook", {"branch": branch},
                              timeout_s=timeout_s or WEBHOOK_TIMEOUT_S)
    if code != 200 or (verdict.get("status"), verdict.get("exit_code")) != EXPECTED.get(branch, ("success", 0)):
        raise SystemExit(f"{branch} did not get its verdict through pbft-ci: {code} {verdict}")
    return verdict


def all_nodes_done(base_url: str, config: NetworkConfig, verdicts: list[dict],
                   nodes: list[int] | None = None) -> None:
    """Wait, after the clock stopped, until every node (or `nodes`) has finished every build of
    `verdicts`, so that nodes still building do not slow down the next command measured."""
    for verdict in verdicts:
        check_certificate(base_url, config, verdict)
        every_node_log(base_url, config, verdict, nodes)


def timed_webhook(base_url: str, config: NetworkConfig, branch: str = "master",
                  builders: str = "all") -> tuple[float, dict]:
    """Seconds from the webhook to its verdict, and the verdict; then waits for the nodes that
    build (every node, or with `builders: f+1` the ones the order picked, which signed it)."""
    started_s = time.perf_counter()
    verdict = webhook(base_url, config, branch)
    elapsed_s = time.perf_counter() - started_s
    all_nodes_done(base_url, config, [verdict], verdict["agreed_by"] if builders == "f+1" else None)
    return elapsed_s, verdict


def plain_spec_run(clone: Path, limits: BuildConfig, index: int) -> list[list[str]]:
    """The commands of a plain run of the clone's .pbft-ci.yml: one `docker run`."""
    return [plain_build_command(clone, limits)]


def plain_dockerfile_run(clone: Path, limits: BuildConfig, index: int) -> list[list[str]]:
    """The commands of a plain run of the clone's Dockerfile: `docker build`, then `docker run`
    of the image with the sandbox's main limits (its root file system its own, as a node runs it)."""
    tag = f"pbft-ci-bench/plain-{index}:latest"
    # Each build's image id, for the clean-up: runs at once may each make their own image
    # and move the tag off an earlier one, which the tag's removal would leave behind.
    made = clone.parent.parent / PLAIN_IMAGES / f"{uuid.uuid4().hex}.iid"
    made.parent.mkdir(exist_ok=True)
    return [
        ["docker", "build", "--quiet", "--network", "none", "--iidfile", str(made), "--tag", tag, str(clone)],
        ["docker", "run", "--rm", *plain_limits(limits), tag],
    ]


def timed_plain_runs(repository: Path, config: NetworkConfig, root: Path, count: int, plain=plain_spec_run) -> float:
    """Seconds until `count` plain `git clone` and `plain(clone, limits, index)` builds started at once
    have all passed. Their clones are removed after the clock stops: a CI run's clean-up is not
    what its author waits for, and a large repository's clone takes seconds to delete."""

    def one(index: int, scratch: Path) -> subprocess.CompletedProcess:
        clone = scratch / "clone"
        subprocess.run(["git", "clone", "--quiet", "--branch", "master", str(repository), str(clone)],
                       check=True, capture_output=True)
        for command in plain(clone, config.build, index):
            result = subprocess.run(command, check=False, capture_output=True, text=True)
            if result.returncode != 0:
                break
        return result

    scratches = [Path(tempfile.mkdtemp(dir=root, prefix=f"plain-{index}-")) for index in range(count)]
    try:
        started_s = time.perf_counter()
        with ThreadPoolExecutor(max_workers=count) as pool:
            results = list(pool.map(one, range(count), scratches))
        elapsed_s = time.perf_counter() - started_s
    finally:
        for scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
    for result in results:
        if result.returncode != 0:
            raise SystemExit(f"a plain run exited {result.returncode}:\n{result.stdout[-2000:]}"
                             f"{result.stderr[-2000:]}")
    return elapsed_s


def node_overheads_ms(log_dir: Path, build_id: str) -> list[int]:
    """Each node's overhead for one build: duration_ms less commands_ms, from its `build end` log line."""
    overheads = []
    for path in sorted(log_dir.glob("node-*.log")):
        for match in BUILD_END.finditer(path.read_text(errors="replace")):
            if match.group(1).endswith(f"-{build_id}"):
                overheads.append(int(match.group(2)) - int(match.group(3)))
    return overheads


def example_repository(root: Path) -> Path:
    repository = root / "repo"
    subprocess.run([str(REPO_ROOT / "scripts" / "make-example-repo.sh"), str(repository)],
                   check=True, capture_output=True)
    return repository


def compare_with_plain(root: Path, repository: Path, config_path: Path, rounds: int, plain=plain_spec_run,
                       builders: str = "all", push=None) -> dict:
    """Samples of the three commands of COMMANDS, and each node's overhead of every pbft-ci build;
    `plain` gives the commands of a plain run (plain_spec_run, plain_dockerfile_run); `builders`
    is the repository's (`all`, or `f+1`: only the nodes the order picked build). `push`, when
    given, is called before each command, off the clock: a new commit for it to build."""
    config = load_config(config_path)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    overheads: list[int] = []
    with running_network(config_path, config, root) as base_url:
        def through_pbft_ci() -> float:
            elapsed_s, verdict = timed_webhook(base_url, config, builders=builders)
            overheads.extend(node_overheads_ms(config.log_dir, str(verdict["build_id"])))
            return elapsed_s

        measure = {
            "pbft-ci": through_pbft_ci,
            "plain": lambda: timed_plain_runs(repository, config, root, 1, plain),
            "plain x4": lambda: timed_plain_runs(repository, config, root, 4, plain),
        }
        # Not counted: the nodes clone their mirrors and make the build user's
        # passwd files on their first build, and the first run of the image
        # reads it from disk. With `builders: f+1` the order picks other nodes for each
        # request: n requests give every node its first build. A Dockerfile build is warm
        # once a node has built its image twice: only then does it keep a container of the
        # image started for the next build (`builder/engine/host.py`), which is the state of
        # a repository whose image did not change; so it gets twice as many.
        warm_ups = (config.n if builders == "f+1" else 1) * (2 if plain is plain_dockerfile_run else 1)
        for _ in range(warm_ups):
            timed_webhook(base_url, config, builders=builders)
        measure["plain"]()
        for _, name in alternating(list(COMMANDS), rounds):
            if push is not None:
                push()
            samples[name].append(measure[name]())
    results = {name: summarize(values) for name, values in samples.items()}
    return {
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "results": results,
        "over_plain_x4": ratio(results["pbft-ci"]["median"], results["plain x4"]["median"]),
        "over_plain": ratio(results["pbft-ci"]["median"], results["plain"]["median"]),
        "node_overhead_ms": summarize(overheads, 0) if overheads else None,
    }


def dockerfile_repository(root: Path) -> Path:
    """The example project built from a Dockerfile instead of a .pbft-ci.yml: its test suite as
    the image's command, in the same busybox image."""
    repository = root / "dockerfile-repo"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=master", "--template=", str(repository)], check=True)
    for name in ("calc.sh", "test.sh"):
        (repository / name).write_bytes((REPO_ROOT / "example-config" / "project" / name).read_bytes())
    (repository / "Dockerfile").write_text(DOCKERFILE)
    environment = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "-C", str(repository), "add", "--all"], check=True, env=environment)
    subprocess.run(["git", "-C", str(repository), "-c", "user.name=bench", "-c", "user.email=bench@pbft-ci.invalid",
                    "commit", "--quiet", "-m", "The example project, built from its Dockerfile"],
                   check=True, env=environment)
    return repository


# Where plain Dockerfile runs write their images' ids, in the scratch folder of each network.
PLAIN_IMAGES = "plain-images"
DOCKERFILE = """FROM pbft-ci/busybox:latest
COPY calc.sh test.sh /src/
WORKDIR /src
CMD ["sh", "test.sh"]
"""


def build(args) -> dict:
    """The example project as a .pbft-ci.yml build, and as a Dockerfile build (`dockerfile`)."""
    rounds = 1 if args.quick else args.rounds
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-build-") as scratch:
        root = Path(scratch)
        repository = example_repository(root)
        report = compare_with_plain(root, repository, write_network(root), rounds)
        dockerfile = dockerfile_repository(root)
        network = root / "dockerfile"
        network.mkdir()
        try:
            dockerfile_report = compare_with_plain(
                network, dockerfile, write_network(network, repositories={"example": str(dockerfile)}), rounds,
                plain_dockerfile_run,
            )
            # The same with `builders: f+1`: two of the four nodes build it, one core each here,
            # where four builds share two cores above; the others stand by (pbft/builders.py).
            network = root / "dockerfile-f1"
            network.mkdir()
            f1_report = compare_with_plain(
                network, dockerfile,
                write_network(network, repositories={"example": {"url": str(dockerfile), "builders": "f+1"}}),
                rounds, plain_dockerfile_run, builders="f+1",
            )
        finally:
            # The plain runs' images, and the one the nodes built (builder/plan/compilebuild.py names it).
            commit = subprocess.run(["git", "-C", str(dockerfile), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip()
            images = [*(f"pbft-ci-bench/plain-{index}:latest" for index in range(4)),
                      *{made.read_text().strip() for made in root.glob(f"*/{PLAIN_IMAGES}/*.iid")},
                      f"pbft-ci-build/example:{commit[:12]}"]
            subprocess.run(["docker", "image", "rm", "--force", *images], check=False, capture_output=True)
    return {"scenario": "build", "project": "the example project (master)", "image": "pbft-ci/busybox",
            "load_average_at_start": load, **report,
            "dockerfile": {"project": "the example project from a Dockerfile", **dockerfile_report},
            "dockerfile_f1": {"project": "the example project from a Dockerfile, `builders: f+1`", **f1_report}}


def real_project(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    if not image_present():
        raise SystemExit(f"real-project: {IMAGE} is missing; build it with {BUILD_IMAGE_SCRIPT} (as root)")
    try:
        sdist = fetch_sdist()
    except ProjectUnavailable as error:
        raise SystemExit(f"real-project: {error}") from None
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-") as scratch:
        root = Path(scratch)
        repository = root / PROJECT
        make_project_repo(repository, sdist)
        config_path = write_network(root, repositories={PROJECT: str(repository)})
        report = compare_with_plain(root, repository, config_path, rounds)
    return {"scenario": "real-project", "project": f"{PROJECT}=={VERSION}", "image": IMAGE,
            "load_average_at_start": load, **report}


def compare_table(report: dict) -> str:
    load = ", ".join(f"{value:.1f}" for value in report["load_average_at_start"])
    rows = [
        f"{report['scenario']}: {report['project']} in {report['image']}, {report['rounds']} round(s), "
        f"{report['cpus']} CPUs, load average at start {load}",
        "",
        *_compare_rows(report),
    ]
    for variant in ("dockerfile", "dockerfile_f1"):
        if variant in report:
            rows += ["", f"{report['scenario']}: {report[variant]['project']}", "", *_compare_rows(report[variant])]
    return "\n".join(rows)


def _compare_rows(report: dict) -> list[str]:
    rows = [
        "| command | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, label in COMMANDS.items():
        result = report["results"][name]
        rows.append(f"| {name}: {label} | {result['median']:.2f} | {result['min']:.2f} | {result['max']:.2f} |")
    rows += ["", f"pbft-ci takes {report['over_plain_x4']}x four plain runs at once "
                 f"and {report['over_plain']}x one (ratios of medians)."]
    overhead = report["node_overhead_ms"]
    if overhead is not None:
        rows.append(f"Node overhead per build (duration less the build's own commands, every node): "
                    f"median {overhead['median']:.0f} ms, min {overhead['min']:.0f}, max {overhead['max']:.0f}.")
    return rows


def concurrent(args) -> dict:
    count = 4 if args.quick else 20
    rounds = 1 if args.quick else args.rounds
    branches = ["master", "feature"] * (count // 2)
    samples: dict[str, list[float]] = {"concurrent": [], "sequential": []}
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-concurrent-") as scratch:
        root = Path(scratch)
        example_repository(root)
        config_path = write_network(root)
        config = load_config(config_path)
        with running_network(config_path, config, root) as base_url:
            def at_once() -> float:
                started_s = time.perf_counter()
                with ThreadPoolExecutor(max_workers=count) as pool:
                    verdicts = list(pool.map(lambda branch: webhook(base_url, config, branch), branches))
                elapsed_s = time.perf_counter() - started_s
                all_nodes_done(base_url, config, verdicts)
                return elapsed_s

            def one_after_another() -> float:
                started_s = time.perf_counter()
                verdicts = [webhook(base_url, config, branch) for branch in branches]
                elapsed_s = time.perf_counter() - started_s
                all_nodes_done(base_url, config, verdicts)
                return elapsed_s

            measure = {"concurrent": at_once, "sequential": one_after_another}
            timed_webhook(base_url, config)  # warms the mirrors, as in compare_with_plain
            for _, name in alternating(list(samples), rounds):
                samples[name].append(measure[name]())
    results = {name: summarize(values) for name, values in samples.items()}
    return {
        "scenario": "concurrent",
        "webhooks": count,
        "max_concurrent_builds_per_node": config.build.max_concurrent,
        "rounds": rounds,
        "results": results,
        "concurrent_over_sequential": ratio(results["concurrent"]["median"], results["sequential"]["median"]),
    }


def concurrent_table(report: dict) -> str:
    rows = [
        f"concurrent: {report['webhooks']} webhooks (half master, half feature) at once vs one after another, "
        f"example project, {report['max_concurrent_builds_per_node']} builds at once per node, "
        f"{report['rounds']} round(s)",
        "",
        "| webhooks | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, result in report["results"].items():
        rows.append(f"| {name} | {result['median']:.2f} | {result['min']:.2f} | {result['max']:.2f} |")
    rows += ["", f"At once takes {report['concurrent_over_sequential']}x the time of one after another."]
    return "\n".join(rows)
