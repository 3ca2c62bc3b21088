"""burst: many webhooks at once for one repository bound to a few builds at a time per node
(`repositories[].max_concurrent`): every verdict, how long the builds waited for a slot, and
the time to the last verdict against the same builds one after another."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.builds import running_network, webhook
from bench.stats import ratio, summarize
from harness.builds import slow_repository
from harness.network import write_network
from harness.verdicts import http_json
from shared.config import load_config


def burst(args) -> dict:
    count, build_s, bound = (6, 2, 2) if args.quick else (30, 20, 2)
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-burst-") as scratch:
        root = Path(scratch)
        slow_repository(root / "burst", f"commands:\n  - sleep {build_s}\n")
        config_path = write_network(root, repositories={"burst": str(root / "burst")})
        data = yaml.safe_load(config_path.read_text())
        data["repositories"][0]["max_concurrent"] = bound
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load_config(config_path)
        with running_network(config_path, config, root) as base_url:
            webhook(base_url, config, "master")  # warms the mirrors
            queued: set[str] = set()
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    builds = http_json("GET", f"{base_url}/builds?limit={count}")[1]["builds"]
                    queued.update(build["build_id"] for build in builds if build["progress"] == "queued")
                    time.sleep(0.5)

            watcher = threading.Thread(target=watch)
            watcher.start()
            started_s = time.perf_counter()
            try:
                with ThreadPoolExecutor(max_workers=count) as pool:
                    wait_s = count * build_s + 120  # the last one waits for all the others
                    verdicts = list(pool.map(lambda _: webhook(base_url, config, "master", wait_s), range(count)))
            finally:
                done.set()
                watcher.join()
            burst_s = time.perf_counter() - started_s
            started_s = time.perf_counter()
            for _ in range(count):
                webhook(base_url, config, "master")
            in_a_row_s = time.perf_counter() - started_s
    waited_s = [max(0.0, verdict["elapsed_ms"] / 1000 - build_s) for verdict in verdicts]
    return {
        "scenario": "burst",
        "webhooks": count,
        "build_s": build_s,
        "max_concurrent_per_repository": bound,
        "statuses": dict(Counter(verdict["status"] for verdict in verdicts)),
        "seen_queued": len(queued),
        "waited_beyond_the_build_s": summarize(waited_s),
        "burst_to_last_verdict_s": round(burst_s, 1),
        "in_a_row_s": round(in_a_row_s, 1),
        "burst_over_in_a_row": ratio(burst_s, in_a_row_s),
    }


def burst_table(report: dict) -> str:
    waited = report["waited_beyond_the_build_s"]
    return "\n".join([
        f"burst: {report['webhooks']} webhooks at once, builds of {report['build_s']} s, "
        f"{report['max_concurrent_per_repository']} at a time per node",
        "",
        "| verdicts | seen queued at the client | wait beyond the build, median / max s "
        "| burst to last verdict s | same builds in a row s |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| {', '.join(f'{count} {status}' for status, count in sorted(report['statuses'].items()))} "
        f"| {report['seen_queued']} | {waited['median']:.1f} / {waited['max']:.1f} "
        f"| {report['burst_to_last_verdict_s']} | {report['in_a_row_s']} |",
        "",
        f"The burst takes {report['burst_over_in_a_row']}x the time of the same builds one after another.",
    ])
