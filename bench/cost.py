"""Scenario `cost`: what one verdict costs in CPU and memory, against one plain run.

A verdict nobody can fake is paid for in builds: every node that builds runs the whole
project. This measures that price where it is paid, in the engine's own accounting:
the CPU time of the control group the engine puts every container under (cgroup v1
`cpuacct` or v2 `cpu.stat` of `docker/`, the cgroupfs driver's), whose counter keeps
what exited containers used, and the memory of the containers' own groups under it,
each above what it used before the run, summed and sampled every 0.1 s for its peak:
other containers of the engine that shrink or go meanwhile (a test beside it, say) take
nothing off, though one that grows adds to it. Every build container of every node
counts, the service and holder containers included, and nothing of the nodes' own
processes.

Compared, alternating each round: webhook -> verdict through four nodes (until every
node that builds finished its build, so that each verdict is charged for all the builds it
caused), and one plain run of the same spec (`docker run`, the same limits); once with
every node building (`builders: all`) and once with the f+1 the order picks
(`builders: f+1`, docs/builds.md), each on a network of its own. Projects: the
example project, whose build is mostly the containers' start; a build that only
computes (--quick: the only one, smaller); and pg8000 against a PostgreSQL service (harness/postgres_project.py)
when its images are there, with each one's time to its verdict against its plain run.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

from bench.builds import all_nodes_done, example_repository, running_network, timed_plain_runs, webhook
from bench.stats import alternating, load_average, ratio, summarize
from harness import postgres_project
from harness.builds import slow_repository
from harness.network import write_network
from harness.real_project import STATUS_LINE, ProjectUnavailable, fetch_sdist, image_present
from shared.config import NetworkConfig, load_config

BUILDERS = ("all", "f+1")

SAMPLE_S = 0.1


class EngineCgroup:
    """The control group the engine puts its containers under: its CPU seconds so far, and the
    memory its containers use now."""

    def __init__(self) -> None:
        v1_cpu, v1_memory = Path("/sys/fs/cgroup/cpuacct/docker"), Path("/sys/fs/cgroup/memory/docker")
        v2 = Path("/sys/fs/cgroup/docker")
        if (v1_cpu / "cpuacct.usage").exists() and (v1_memory / "memory.usage_in_bytes").exists():
            self._cpu_ns = lambda: int((v1_cpu / "cpuacct.usage").read_text())
            self._memory = lambda: _children(v1_memory, "memory.usage_in_bytes")
        elif (v2 / "cpu.stat").exists():
            self._cpu_ns = lambda: 1000 * int(_field(v2 / "cpu.stat", "usage_usec"))
            self._memory = lambda: _children(v2, "memory.current")
        else:
            raise SystemExit("cost: no engine control group at /sys/fs/cgroup/{cpuacct,memory}/docker or "
                             "/sys/fs/cgroup/docker (the cost scenario needs the engine's cgroupfs driver)")

    def cpu_s(self) -> float:
        return self._cpu_ns() / 1e9

    def memory(self) -> dict[str, int]:
        """The bytes each container uses now, by its group's name."""
        return self._memory()


def _children(parent: Path, name: str) -> dict[str, int]:
    """`name` of each container's own group: the parent's figure would also hold the page
    cache of containers gone (cgroup v1 hands their charges up)."""
    used = {}
    for child in parent.iterdir():
        try:
            if child.is_dir():
                used[child.name] = int((child / name).read_text())
        except (FileNotFoundError, ValueError):
            pass  # the container went while we read
    return used


def grown_mb(now: dict[str, int], before: dict[str, int]) -> float:
    """What the containers use above what each used before: a new one all it uses."""
    return sum(max(0, used - before.get(name, 0)) for name, used in now.items()) / (1024 * 1024)


def _field(path: Path, name: str) -> str:
    return next(line.split()[1] for line in path.read_text().splitlines() if line.split()[0] == name)


def measured(cgroup: EngineCgroup, run: Callable[[], float]) -> dict:
    """`run()`'s own elapsed seconds (what it times), and the containers' CPU seconds and peak
    memory above what they used before it (`grown_mb`), over the whole call."""
    before = cgroup.memory()
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            peak[0] = max(peak[0], grown_mb(cgroup.memory(), before))

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = cgroup.cpu_s()
    sampler.start()
    try:
        elapsed_s = run()
    finally:
        done.set()
        sampler.join()
    return {"elapsed_s": elapsed_s, "cpu_s": cgroup.cpu_s() - cpu_before, "peak_mb": peak[0]}


def with_builders(config_path: Path, builders: str) -> Path:
    """The network file at `config_path` with every repository built by `builders`."""
    data = yaml.safe_load(config_path.read_text())
    for repository in data["repositories"]:
        repository["builders"] = builders
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def nodes_that_built(base_url: str, config: NetworkConfig, answer: dict) -> list[int]:
    """The nodes whose output for the build ends with its status line (read once each)."""
    built = []
    for node in config.nodes:
        try:
            with urllib.request.urlopen(f"{base_url}/builds/{answer['build_id']}/log?node={node.id}",
                                        timeout=30) as response:
                text = response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            if error.code != 404:  # 404: the node never started it
                raise
            continue
        if STATUS_LINE.search(text):
            built.append(node.id)
    return built


def compare(root: Path, config_path: Path, plain: Callable[[], float], rounds: int, branch: str = "master",
            timeout_s: float | None = None) -> dict:
    """Samples of a verdict (until every node that builds built) and of one plain run, alternating."""
    config = load_config(config_path)
    f_plus_1 = all(repository.builders == "f+1" for repository in config.repositories)
    cgroup = EngineCgroup()
    samples: dict[str, list[dict]] = {"pbft-ci": [], "plain": []}
    builds: list[int] = []
    with running_network(config_path, config, root) as base_url:
        def verdict() -> float:
            started_s = time.perf_counter()
            answer = webhook(base_url, config, branch, timeout_s)
            elapsed_s = time.perf_counter() - started_s
            # With f+1 builders, the others build only if those disagree or one is late: the
            # agreeing picked builders are all there is to wait for.
            all_nodes_done(base_url, config, [answer], answer["agreed_by"] if f_plus_1 else None)
            builds.append(len(nodes_that_built(base_url, config, answer)))
            return elapsed_s

        verdict()  # not counted: the nodes' first build clones their mirrors
        del builds[:]
        measure = {"pbft-ci": verdict, "plain": plain}
        for _, name in alternating(list(samples), rounds):
            samples[name].append(measured(cgroup, measure[name]))
    results = {
        name: {figure: summarize([sample[figure] for sample in values], 2)
               for figure in ("elapsed_s", "cpu_s", "peak_mb")}
        for name, values in samples.items()
    }
    return {
        "nodes": len(config.nodes),
        "builds_per_verdict": builds,
        "results": results,
        "cpu_over_plain": ratio(results["pbft-ci"]["cpu_s"]["median"], results["plain"]["cpu_s"]["median"]),
        "time_over_plain": ratio(results["pbft-ci"]["elapsed_s"]["median"], results["plain"]["elapsed_s"]["median"]),
        "peak_over_plain": ratio(results["pbft-ci"]["peak_mb"]["median"], results["plain"]["peak_mb"]["median"]),
    }


def _example(root: Path, rounds: int, builders: str) -> dict:
    repository = example_repository(root)
    config_path = with_builders(write_network(root), builders)
    config = load_config(config_path)
    report = compare(root, config_path, lambda: timed_plain_runs(repository, config, root, 1), rounds)
    return {"project": "the example project (master)", **report}


def _busy(root: Path, rounds: int, builders: str, loops: int) -> dict:
    """A build that only computes (a shell loop of `loops` steps, about a CPU second per
    million here): what the containers' start and the node's checkout cost is small beside."""
    repository = root / "busy"
    script = f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done; echo counted $i"
    slow_repository(repository, f"commands:\n  - '{script}'\n")
    config_path = with_builders(write_network(root, repositories={"example": str(repository)}), builders)
    config = load_config(config_path)
    report = compare(root, config_path, lambda: timed_plain_runs(repository, config, root, 1), rounds)
    return {"project": f"a shell loop of {loops:,} steps", **report}


def _pg8000(root: Path, rounds: int, builders: str) -> dict:
    project = f"{postgres_project.PROJECT}=={postgres_project.VERSION}"
    missing = [image for image in postgres_project.IMAGES if not image_present(image)]
    if missing:
        return {"project": project, "skipped": f"missing images {missing} ({postgres_project.BUILD_IMAGE_SCRIPT})"}
    try:
        sdist = fetch_sdist(project=postgres_project.PROJECT, version=postgres_project.VERSION,
                            sha256=postgres_project.SDIST_SHA256)
    except ProjectUnavailable as error:
        return {"project": project, "skipped": str(error)}
    repository = root / postgres_project.PROJECT
    commits = postgres_project.make_project_repo(repository, sdist)
    config_path = with_builders(write_network(root, repositories={postgres_project.PROJECT: str(repository)}), builders)
    config = load_config(config_path)
    clone = postgres_project.export_commit(repository, commits["master"], root / "plain-master")

    def plain() -> float:
        run = postgres_project.plain_pipeline_run(clone, config.build, root)
        if any(code != 0 for code, _ in run.steps.values()):
            raise SystemExit(f"cost: the plain run of {postgres_project.PROJECT} failed: {run}")
        return run.total_s

    report = compare(root, config_path, plain, rounds, timeout_s=postgres_project.BUILD_TIMEOUT_S + 120)
    return {"project": f"{project} with a PostgreSQL service", **report}


def cost(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    load = load_average()
    projects = []
    chosen = {"busy": lambda *common: _busy(*common, 100_000)} if args.quick else {
        "example": _example, "busy": lambda *common: _busy(*common, 1_000_000), "pg8000": _pg8000}
    for name, one in chosen.items():
        for builders in BUILDERS:
            with tempfile.TemporaryDirectory(prefix=f"pbft-ci-bench-cost-{name}-") as scratch:
                projects.append({**one(Path(scratch), rounds, builders), "builders": builders})
    return {"scenario": "cost", "rounds": rounds, "cpus": os.cpu_count(),
            "load_average_at_start": load, "projects": projects}


def cost_table(report: dict) -> str:
    load = ", ".join(f"{value:.1f}" for value in report["load_average_at_start"])
    rows = [f"cost: one verdict (the build containers of every node that built it) vs one plain run, "
            f"{report['rounds']} round(s), {report['cpus']} CPUs, load average at start {load}"]
    for project in report["projects"]:
        rows += ["", f"{project['project']}, builders: {project['builders']}"]
        if "skipped" in project:
            rows.append(f"skipped: {project['skipped']}")
            continue
        rows += ["", "| command | CPU s | peak MB | elapsed s |", "| --- | ---: | ---: | ---: |"]
        for name, result in project["results"].items():
            rows.append(f"| {name} | {_cell(result['cpu_s'])} | {_cell(result['peak_mb'])} | "
                        f"{_cell(result['elapsed_s'])} |")
        rows += ["", f"A verdict with {project['nodes']} nodes and builders: {project['builders']} "
                     f"({'/'.join(map(str, project['builds_per_verdict']))} builds per verdict) "
                     f"costs {project['cpu_over_plain']}x the CPU seconds, "
                     f"{project['peak_over_plain']}x the peak memory and {project['time_over_plain']}x the time of "
                     f"one plain run (medians; cells: median [min-max])."]
    return "\n".join(rows)


def _cell(summary: dict) -> str:
    return f"{summary['median']:.1f} [{summary['min']:.1f}-{summary['max']:.1f}]"
