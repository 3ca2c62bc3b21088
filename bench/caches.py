"""The `caches` scenario: build caches on a project whose dependency install is simulated.

No network reaches a build, so "installing" is a busybox shell loop writing
small files into ~/.cache/deps, all skipped when the directory is already
there. Each round builds, with the real executor and Docker engine, the
first commit with caches off, with caches on (a miss), and a second commit
with the same lock file (a hit).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

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


def caches(args) -> dict:
    from builder import BuildOrder, Executor, ExecutorSettings
    from shared.config import BuildConfig

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
            executor = Executor(ExecutorSettings(data_dir=root / data, log_dir=root / "log", node_id=0,
                                limits=BuildConfig(cache_mb=cache_mb), max_concurrent=1))
            try:
                times[case] = duration_ms(await executor.run(BuildOrder(
                    build_id=f"bench-{number}-{data}-1", repository_name="bench",
                    repository_url=str(repo), branch="master")))
                if cache_mb:
                    commit(repo, "two")
                    times["warm (hit, kept as is)"] = duration_ms(await executor.run(BuildOrder(
                        build_id=f"bench-{number}-{data}-2", repository_name="bench",
                        repository_url=str(repo), branch="master")))
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
