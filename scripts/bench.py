#!/usr/bin/env python3
"""Measure what pbft-ci's choices cost, one scenario at a time.

    python scripts/bench.py durable                  # SQLite synchronous=NORMAL vs FULL
    python scripts/bench.py durable --quick          # a smoke run: few saves, few rounds
    python scripts/bench.py durable --json out.json  # also write the numbers as JSON
    python scripts/bench.py real-project             # a real test suite: pbft-ci vs plain docker run

Scenarios:

  durable  The node's store saves every replica step in one transaction before
           anything of that step is sent. This runs the same sequence of saves
           (each: the replica's state and a Store of a signed PREPARE) against
           a fresh database with synchronous=NORMAL and with synchronous=FULL,
           alternating which goes first, for several rounds, and prints saves
           per second (median, min, max) and how many times slower FULL is.
           The databases live under --dir (default: the repository's data/,
           where the example network keeps its nodes' stores): on tmpfs an
           fsync costs nothing and the comparison says nothing.

  real-project
           What building through pbft-ci costs for a real test suite: the
           end-to-end test's project (tests/real_project.py: more-itertools
           from its PyPI sdist, 660-odd pytest tests in
           pbft-ci/debian-python:bookworm). It starts a network of its own
           (fresh keys and ports, in a temporary folder) with the README's
           scripts, builds master once to warm the nodes' mirrors, then
           times, alternating the order each round: webhook -> verdict for
           master; one plain `git clone && docker run` of the same spec with
           the sandbox's main limits (no network, uid 1000, read-only root,
           tmpfs workspace); and four such plain runs started at once, the
           fair control, since the four nodes build on this one machine. It
           prints seconds (median, min, max) per command. Needs the image
           (scripts/build-debian-image.sh) and, once, PyPI.

  caches   Build caches on a project whose dependency install is simulated:
           no network reaches a build, so "installing" is a busybox shell
           loop writing --files small files into ~/.cache/deps, and hashing
           --compile-mb MB per 100 files as a stand-in for compiling, all
           skipped when the directory is already there. Each round uses a
           fresh node data directory and builds, with the real executor and
           Docker engine: the first commit with caches off, the first commit
           with caches on (a miss: installs, then saves), and a second commit
           with the same lock file (a hit: restores, skips the install, and
           keeps the cache as it is). The times are the builds' own
           duration_ms from their logs: git fetch and export, containers,
           restore, script, save and storing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from node.storage import NodeStore  # noqa: E402
from pbft.crypto import Ed25519Authenticator, generate_private_key  # noqa: E402
from pbft.effects import Store  # noqa: E402
from pbft.messages import Operation, Prepare, Request, batch_digest, signed  # noqa: E402
from pbft.replica import Replica, ReplicaSettings  # noqa: E402

MODES = ("NORMAL", "FULL")


def filesystem_of(path: Path) -> str:
    """The type of the file system holding `path` (Linux /proc/mounts), or "unknown"."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind


def replica_steps(count: int) -> tuple[dict, list[list[Store]]]:
    """A backup's durable state and `count` steps' effects: each stores the PREPARE it signed for one sequence number."""
    node_keys = [generate_private_key() for _ in range(4)]
    client_key = generate_private_key()
    node_auth = Ed25519Authenticator(
        node_keys[1], {i: key.public_key() for i, key in enumerate(node_keys)}, {"client": client_key.public_key()}
    )
    client_auth = Ed25519Authenticator(client_key, {}, {})
    replica = Replica(ReplicaSettings(node_id=1, n=4, f=1), node_auth)
    steps = []
    for seq in range(1, count + 1):
        request = signed(Request("client", seq, Operation("example", "master")), client_auth.sign)
        prepare = signed(Prepare(0, seq, batch_digest((request,)), 1), node_auth.sign)
        steps.append([Store(prepare)])
    return replica.durable_state(), steps


def time_saves(directory: Path, synchronous: str, state: dict, steps: list[list[Store]]) -> float:
    """Saves per second of `steps` into a fresh store."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=f"bench-{synchronous.lower()}-") as scratch:
        store = NodeStore(Path(scratch) / "node.sqlite", n=4, f=1, synchronous=synchronous)
        try:
            started_s = time.perf_counter()
            for effects in steps:
                store.save(state, effects)
            elapsed_s = time.perf_counter() - started_s
        finally:
            store.close()
    return len(steps) / elapsed_s


def durable(args: argparse.Namespace) -> dict:
    saves = 50 if args.quick else args.saves
    rounds = 3 if args.quick else args.rounds
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    state, steps = replica_steps(saves)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(rounds):
        # Alternate the order so that neither mode always runs on a warmer cache or disk.
        for mode in MODES if round_ % 2 == 0 else reversed(MODES):
            rates[mode].append(time_saves(directory, mode, state, steps))
    summary = {
        mode: {
            "saves_per_s": [round(rate, 1) for rate in values],
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
        for mode, values in rates.items()
    }
    return {
        "scenario": "durable",
        "saves_per_round": saves,
        "rounds": rounds,
        "dir": str(directory.resolve()),
        "filesystem": filesystem_of(directory),
        "results": summary,
        "full_slowdown": round(summary["NORMAL"]["median"] / summary["FULL"]["median"], 2),
    }


def durable_table(report: dict) -> str:
    rows = [
        f"durable: {report['saves_per_round']} saves x {report['rounds']} rounds per mode, "
        f"in {report['dir']} ({report['filesystem']})",
        "",
        "| synchronous | median saves/s | min | max | median ms/save |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        result = report["results"][mode]
        rows.append(
            f"| {mode} | {result['median']:.0f} | {result['min']:.0f} | {result['max']:.0f} "
            f"| {1000 / result['median']:.2f} |"
        )
    rows += ["", f"FULL is {report['full_slowdown']:.2f}x slower than NORMAL (ratio of medians)."]
    return "\n".join(rows)


def summarize(values: list[float]) -> dict:
    return {
        "seconds": [round(value, 3) for value in values],
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


REAL_PROJECT_COMMANDS = {
    "pbft-ci": "webhook -> verdict, master, 4 nodes",
    "plain": "git clone && docker run",
    "plain x4": "4 plain runs at once",
}


def real_project(args: argparse.Namespace) -> dict:
    # Imported here: only this scenario needs docker, git and the end-to-end helpers.
    from pbft.config import load_config
    from tests.network import write_network
    from tests.real_project import (
        BUILD_IMAGE_SCRIPT,
        IMAGE,
        PROJECT,
        VERSION,
        ProjectUnavailable,
        fetch_sdist,
        image_present,
        make_project_repo,
    )

    rounds = 1 if args.quick else args.rounds
    if not image_present():
        raise SystemExit(f"real-project: {IMAGE} is missing; build it with {BUILD_IMAGE_SCRIPT} (as root)")
    try:
        sdist = fetch_sdist()
    except ProjectUnavailable as error:
        raise SystemExit(f"real-project: {error}") from None
    load_average = os.getloadavg()
    samples: dict[str, list[float]] = {name: [] for name in REAL_PROJECT_COMMANDS}
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-") as scratch:
        root = Path(scratch)
        repository = root / PROJECT
        make_project_repo(repository, sdist)
        config_path = write_network(root, repositories={PROJECT: str(repository)})
        config = load_config(config_path)
        with running_network(config_path, config, root) as base_url:
            measure = {
                "pbft-ci": lambda: timed_webhook(base_url, config),
                "plain": lambda: timed_plain_runs(repository, config, root, 1),
                "plain x4": lambda: timed_plain_runs(repository, config, root, 4),
            }
            # Not counted: the nodes clone their mirrors and make the build
            # user's passwd files on their first build, and the first run of
            # the image reads it from disk.
            measure["pbft-ci"]()
            measure["plain"]()
            names = list(REAL_PROJECT_COMMANDS)
            for round_ in range(rounds):
                for name in names if round_ % 2 == 0 else reversed(names):
                    samples[name].append(measure[name]())
    return {
        "scenario": "real-project",
        "project": f"{PROJECT}=={VERSION}",
        "image": IMAGE,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in load_average],
        "results": {name: summarize(values) for name, values in samples.items()},
    }


@contextmanager
def running_network(config_path: Path, config, root: Path):
    """./startNetwork.sh and ./scripts/startClient.sh on `config_path`; yields the client's URL."""
    from tests.test_end_to_end import START_TIMEOUT_S, client, describe, remove_builds_under, run_script

    started = run_script("./startNetwork.sh", str(config_path), timeout_s=START_TIMEOUT_S)
    if started.returncode != 0:
        # Nothing of ours runs: startNetwork.sh stops what it started when it fails.
        raise SystemExit(f"real-project: could not start the network:\n{describe(started)}")
    try:
        with client(config, root / "client.out", str(config_path)) as base_url:
            yield base_url
    finally:
        stopped = run_script("./stopNetwork.sh")
        remove_builds_under(root)
        if stopped.returncode != 0:
            print(describe(stopped), file=sys.stderr)


def timed_webhook(base_url: str, config) -> float:
    """Seconds from the README's webhook call for master to its verdict, which must be success."""
    from tests.real_project import every_node_log
    from tests.test_end_to_end import check_certificate, http_json

    started_s = time.perf_counter()
    code, verdict = http_json("POST", f"{base_url}/webHook", {"branch": "master"})
    elapsed_s = time.perf_counter() - started_s
    if code != 200 or (verdict.get("status"), verdict.get("exit_code")) != ("success", 0):
        raise SystemExit(f"real-project: master did not pass through pbft-ci: {code} {verdict}")
    # After the clock stopped: f+1 signatures, and every node done, so that the
    # nodes still building do not slow down the next command measured.
    check_certificate(base_url, config, verdict)
    every_node_log(base_url, config, verdict)
    return elapsed_s


def timed_plain_runs(repository: Path, config, root: Path, count: int) -> float:
    """Seconds until `count` plain `git clone && docker run` builds started at once have all passed."""
    from tests.real_project import plain_build_command

    def one(index: int) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(dir=root, prefix=f"plain-{index}-") as scratch:
            clone = Path(scratch) / "clone"
            subprocess.run(["git", "clone", "--quiet", "--branch", "master", str(repository), str(clone)],
                           check=True, capture_output=True)
            return subprocess.run(plain_build_command(clone, config.build), check=False,
                                  capture_output=True, text=True)

    started_s = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))
    elapsed_s = time.perf_counter() - started_s
    for result in results:
        if result.returncode != 0:
            raise SystemExit(f"real-project: a plain run exited {result.returncode}:\n{result.stdout[-2000:]}"
                             f"{result.stderr[-2000:]}")
    return elapsed_s


def real_project_table(report: dict) -> str:
    load = ", ".join(f"{value:.1f}" for value in report["load_average_at_start"])
    rows = [
        f"real-project: {report['project']} in {report['image']}, {report['rounds']} rounds, "
        f"{report['cpus']} CPUs, load average at start {load}",
        "",
        "| command | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, label in REAL_PROJECT_COMMANDS.items():
        result = report["results"][name]
        rows.append(f"| {name}: {label} | {result['median']:.2f} | {result['min']:.2f} | {result['max']:.2f} |")
    results = report["results"]
    rows += [
        "",
        f"pbft-ci takes {results['pbft-ci']['median'] / results['plain x4']['median']:.2f}x four plain runs at once "
        f"and {results['pbft-ci']['median'] / results['plain']['median']:.2f}x one (ratios of medians).",
    ]
    return "\n".join(rows)


CACHED_SPEC = """\
commands:
  - sh install-deps.sh
  - 'echo "deps: $(find ~/.cache/deps -type f | wc -l) files; source $(cat version)"'
cache:
  paths: [~/.cache/deps]
  key_files: [deps.lock]
"""
INSTALL_DEPS = """\
if [ -d ~/.cache/deps ]; then echo "deps already installed"; exit 0; fi
i=0
while [ "$i" -lt {files} ]; do
  d=~/.cache/deps/p$((i / 100))
  if [ ! -d "$d" ]; then
    mkdir -p "$d"
    # "compiling" the package: --compile-mb MB of CPU work per 100 files
    dd if=/dev/zero bs=1M count={compile_mb} 2>/dev/null | sha256sum > "$d/BUILD"
  fi
  echo "package $i" > "$d/f$i"
  i=$((i + 1))
done
"""
CACHE_CASES = ("no cache", "cold (miss, save)", "warm (hit, kept as is)")


def caches(args: argparse.Namespace) -> dict:
    import asyncio
    import os
    import re
    import subprocess

    from node.executor import Executor
    from pbft.config import BuildConfig

    files = 500 if args.quick else args.files
    rounds = 1 if args.quick else args.rounds
    git_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@pbft-ci.invalid",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@pbft-ci.invalid"}

    def commit(repo: Path, version: str) -> None:
        (repo / ".pbft-ci.yml").write_text(CACHED_SPEC)
        install = INSTALL_DEPS.replace("{files}", str(files)).replace("{compile_mb}", str(args.compile_mb))
        (repo / "install-deps.sh").write_text(install)
        (repo / "deps.lock").write_text("deps 1.0\n")
        (repo / "version").write_text(version + "\n")
        for command in (["add", "--all"], ["commit", "--quiet", "-m", version]):
            subprocess.run(["git", "-C", str(repo), *command], env=git_env, check=True)

    def duration_ms(result) -> int:
        text = Path(result.log_path).read_text()
        if result.status != "success":
            raise SystemExit(f"bench build failed: {result.to_dict()}\n{text}")
        return int(re.search(r"^== status success exit_code 0 duration_ms (\d+)$", text, re.M).group(1))

    async def one_round(root: Path, number: int) -> dict[str, int]:
        repo = root / "origin"
        repo.mkdir(parents=True)
        subprocess.run(["git", "-C", str(repo), "init", "--quiet", "--initial-branch=master"], env=git_env, check=True)
        commit(repo, "one")
        times = {}
        for case, cache_mb, data in (("no cache", 0, "plain"), ("cold (miss, save)", 512, "cached")):
            executor = Executor(data_dir=root / data, log_dir=root / "log", node_id=0,
                                limits=BuildConfig(cache_mb=cache_mb), max_concurrent=1)
            try:
                times[case] = duration_ms(await executor.run(
                    build_id=f"bench-{number}-{data}-1", repository_name="bench",
                    repository_url=str(repo), branch="master"))
                if cache_mb:
                    commit(repo, "two")
                    times["warm (hit, kept as is)"] = duration_ms(await executor.run(
                        build_id=f"bench-{number}-{data}-2", repository_name="bench",
                        repository_url=str(repo), branch="master"))
            finally:
                executor.close()
        return times

    samples: dict[str, list[int]] = {case: [] for case in CACHE_CASES}
    for number in range(rounds):
        with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-caches-") as root:
            for case, value in asyncio.run(one_round(Path(root), number)).items():
                samples[case].append(value)
    medians = {case: statistics.median(values) for case, values in samples.items()}
    return {
        "scenario": "caches",
        "files": files,
        "compile_mb": args.compile_mb,
        "rounds": rounds,
        "duration_ms": samples,
        "median_ms": medians,
        "warm_speedup": round(medians["cold (miss, save)"] / medians["warm (hit, kept as is)"], 2),
    }


def caches_table(report: dict) -> str:
    rows = [
        f"caches: {report['files']} files installed into ~/.cache/deps, sha256 of {report['compile_mb']} MB "
        f"per 100 files, {report['rounds']} rounds, duration_ms of each build from its log",
        "",
        "| build | median ms | min | max | all |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for case in CACHE_CASES:
        values = report["duration_ms"][case]
        rows.append(f"| {case} | {report['median_ms'][case]:.0f} | {min(values)} | {max(values)} "
                    f"| {', '.join(map(str, values))} |")
    rows += ["", f"A warm build takes 1/{report['warm_speedup']:.2f} of a cold one (ratio of medians)."]
    return "\n".join(rows)


SCENARIOS = {
    "durable": (durable, durable_table),
    "real-project": (real_project, real_project_table),
    "caches": (caches, caches_table),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="what to measure")
    parser.add_argument("--quick", action="store_true", help="a short smoke run; its numbers are noisy")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    parser.add_argument("--saves", type=int, default=1000, help="durable: saves per round and mode (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (durable), command (real-project) or case (caches) (default: %(default)s)")
    parser.add_argument("--files", type=int, default=20000,
                        help="caches: files the simulated dependency install writes (default: %(default)s)")
    parser.add_argument("--compile-mb", type=int, default=0,
                        help="caches: MB hashed per 100 files, the install's CPU work (default: %(default)s)")
    parser.add_argument("--dir", default=str(REPO_ROOT / "data"),
                        help="durable: where the scratch databases go (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.saves < 1 or args.rounds < 1:
        parser.error("--saves and --rounds must be at least 1")
    run, table = SCENARIOS[args.scenario]
    report = run(args)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
